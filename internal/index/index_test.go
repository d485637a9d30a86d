package index

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	bolt "go.etcd.io/bbolt"

	"github.com/af-project/af/internal/layout"
)

func TestValueRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		size int64
		etag string
		want string
		max  int
	}{
		{0, `"d41d8cd98f00b204e9800998ecf8427e"`, "d41d8cd98f00b204e9800998ecf8427e", 1 + 1 + 6 + 16},
		{123456789, "9b2cf535f27731c974343645a3985328-12", "9b2cf535f27731c974343645a3985328-12", 48},
		{5, "D41D8CD98F00B204E9800998ECF8427E", "D41D8CD98F00B204E9800998ECF8427E", 42},
		{7, "", "", 10},
	} {
		mt := time.Date(2014, 3, 8, 1, 2, 3, 456e6, time.UTC)
		v := encodeValue(nil, tc.size, tc.etag, mt)
		size, etag, got, err := decodeValue(v)
		if err != nil || size != tc.size || etag != tc.want || !got.Equal(mt) || sizeOf(v) != tc.size {
			t.Errorf("round trip (%d, %q) = (%d, %q, %v, %v)", tc.size, tc.etag, size, etag, got, err)
		}
		if len(v) > tc.max {
			t.Errorf("value for %q is %d bytes, want at most %d", tc.etag, len(v), tc.max)
		}
		for n := range len(v) {
			if _, _, _, err := decodeValue(v[:n]); err == nil {
				t.Errorf("truncated value %x decoded", v[:n])
			}
		}
	}
}

// tricky holds keys whose values are prefixes of each other around ".",
// where value order and key order differ ("22" < "22.0" but "22.0/" <
// "22/"), plus keys outside the layout.
func tricky() *memLister {
	m := &memLister{pageSize: 7}
	n := 0
	for _, reason := range []string{"idle_daily", "saved_session", "saved_session2", "saved"} {
		for _, app := range []string{"Firefox", "Fennec"} {
			for _, ch := range []string{"nightly", "beta", "nightly.x"} {
				for _, ver := range []string{"22", "22.0", "22.0a1", "220", "22.", "3"} {
					for _, bid := range []string{"20140227", "20140228", "2014022", "201402280"} {
						for _, date := range []string{"20140307", "20140308", "20140309", "2014030"} {
							if n%3 == 1 { // not every combination exists
								n++
								continue
							}
							dims := []string{reason, app, ch, ver, bid, date}
							m.put(layout.Key("", dims, 2, fmt.Sprintf("u%05d", n), []string{"", "gz", "lzma"}[n%3]), int64(n), md5ish(n), t0)
							n++
						}
					}
				}
			}
		}
	}
	for _, k := range []string{"README.md", "saved_session/Firefox/nightly/22/x.txt", "saved-session/Firefox/nightly/22/1.2.v2.log.u.gz", "idle_daily/Fennec/beta/3/20140227.20140307.v2.log.u.tar"} {
		m.put(k, 1, md5ish(1), t0)
	}
	return m
}

func TestQueryMatchesBruteForce(t *testing.T) {
	t.Parallel()
	m := tricky()
	db := openTemp(t, Options{Clock: fixedClock{t0}})
	rep, err := db.Build(context.Background(), m, "b", "", layout.Telemetry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Skipped != 4 || rep.Indexed != len(m.objs)-4 || rep.Added != rep.Indexed {
		t.Fatalf("report %+v", rep)
	}
	filters := [][]string{
		{},
		{`"saved_session"`},
		{`["saved-session", "idle-daily"]`, `"Firefox"`, `["nightly"]`, "", `{"min": "20140228"}`, `["20140308", "20140309"]`},
		{"", "", "", `{"min": "22", "max": "22.0"}`},
		{"", "", "", `{"min": "22.0", "max": "220"}`},
		{"", "", "", `{"min": "22.", "max": "22.0a1"}`},
		{"", "", "", `{"max": "22"}`},
		{"", "", "", `{"min": "22.0a1"}`},
		{"", "", "", `["22", "22.0", "3", "4"]`},
		{"", "", "", `["22"]`},
		{"", "", `["nightly", "nightly.x"]`, `["22."]`},
		{"", "", `{"min": "nightly", "max": "nightly.x"}`},
		{"", "", "", "", `{"min": "2014022", "max": "20140228"}`, `{"max": "20140307"}`},
		{"", "", "", "", `["2014022", "201402280"]`, `"2014030"`},
		{`["zzz"]`},
		{"", "", "", "", "", `{"min": "20140310"}`},
		{`{"min": "saved"}`, "", "", `"22.0"`},
		// Values no stored key can hold, and bounds with bytes below the
		// separators.
		{`["saved_session/Firefox", "idle_daily"]`},
		{"", "", "", "", `"2014022.20140307"`},
		{"", "", `{"min": "0", "max": "nightly "}`},
		{"", "", "", `{"max": "22-"}`},
		{"", "", "", "", "", `{"min": "2014030 ", "max": "20140308-"}`},
	}
	// And random ones over the values that exist and some that do not.
	rng := rand.New(rand.NewPCG(1, 2))
	pools := [][]string{
		{"idle_daily", "saved_session", "saved_session2", "saved", "sav", "z"},
		{"Firefox", "Fennec", "F"},
		{"nightly", "beta", "nightly.x", "nightly."},
		{"22", "22.0", "22.0a1", "220", "22.", "3", "21", "22.1"},
		{"20140227", "20140228", "2014022", "201402280", "2015"},
		{"20140307", "20140308", "20140309", "2014030", "2"},
	}
	for range 200 {
		av := make([]string, 6)
		for i, pool := range pools {
			switch rng.IntN(4) {
			case 1:
				av[i] = fmt.Sprintf("%q", pool[rng.IntN(len(pool))])
			case 2:
				var vs []string
				for range 1 + rng.IntN(3) {
					vs = append(vs, fmt.Sprintf("%q", pool[rng.IntN(len(pool))]))
				}
				av[i] = "[" + strings.Join(vs, ",") + "]"
			case 3:
				a, b := pool[rng.IntN(len(pool))], pool[rng.IntN(len(pool))]
				if a > b {
					a, b = b, a
				}
				av[i] = []string{fmt.Sprintf(`{"min": %q, "max": %q}`, a, b), fmt.Sprintf(`{"min": %q}`, a), fmt.Sprintf(`{"max": %q}`, b)}[rng.IntN(3)]
			}
		}
		filters = append(filters, av)
	}
	for _, av := range filters {
		f := mustFilter(t, av...)
		got, st := collect(t, db, f)
		want := brute(t, m.objs, "", f)
		if !slices.Equal(keys(got), want) {
			t.Errorf("filter %v: got %d keys, want %d\n got %q\nwant %q", av, len(got), len(want), keys(got), want)
			continue
		}
		var bytes int64
		for _, o := range got {
			bytes += o.Size
			dims, err := layout.Telemetry().Parse("", o.Key)
			if err != nil || !slices.Equal(dims, o.Dims) || o.ETag != md5ish(int(o.Size)) || !o.LastModified.Equal(t0) {
				t.Errorf("object %+v (dims %q, %v)", o, dims, err)
			}
		}
		if st.Files != len(want) || st.Bytes != bytes {
			t.Errorf("filter %v: stats %+v, want %d files %d bytes", av, st, len(want), bytes)
		}
	}
}

func TestQueryPrunes(t *testing.T) {
	t.Parallel()
	m := &memLister{}
	dates := 60
	for r, reason := range []string{"idle_daily", "saved_session"} {
		for c, ch := range []string{"aurora", "beta", "nightly", "release"} {
			for d := range dates {
				for i := range 20 {
					dims := []string{reason, "Firefox", ch, "30.0", "20140301000000", fmt.Sprintf("201403%02d", d+1)}
					m.put(layout.Key("", dims, 2, fmt.Sprintf("%d%d%04d", r, c, i), "gz"), 10, md5ish(i), t0)
				}
			}
		}
	}
	db := openTemp(t, Options{})
	if _, err := db.Build(context.Background(), m, "b", "", layout.Telemetry(), nil); err != nil {
		t.Fatal(err)
	}
	total := len(m.objs)
	f := mustFilter(t, "", "", `"beta"`, "", "", `"20140305"`)
	got, st := collect(t, db, f)
	if len(got) != 40 {
		t.Fatalf("selected %d, want 40", len(got))
	}
	if st.Reads != 40 || st.Seeks > 25 {
		t.Errorf("one day, one channel read %d keys with %d seeks of %d; want only the 40 selected and a few seeks", st.Reads, st.Seeks, total)
	}
	// A range on the last dimension stops at its max instead of reading on.
	f = mustFilter(t, `"idle_daily"`, "", `"aurora"`, "", "", `{"min": "20140301", "max": "20140302"}`)
	got, st = collect(t, db, f)
	if len(got) != 40 || st.Reads != 40 || st.Seeks > 15 {
		t.Errorf("range: %d selected with %d seeks", len(got), st.Seeks)
	}
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	m := &memLister{pageSize: 3}
	var ks []string
	for i := range 30 {
		k := layout.Key("pre", []string{"saved_session", "Firefox", "nightly", fmt.Sprintf("%d.0", 20+i%3), "20140301000000", fmt.Sprintf("201403%02d", 1+i%5)}, 2, fmt.Sprintf("u%02d", i), "lzma")
		ks = append(ks, k)
		m.put(k, int64(i), md5ish(i), t0)
	}
	m.put("pre/notes.txt", 1, md5ish(1), t0)
	m.put("other/saved_session/Firefox/nightly/20.0/1.2.v2.log.u", 1, md5ish(1), t0) // outside the prefix: never listed
	db := openTemp(t, Options{Clock: fixedClock{t0}})
	db.batchSize = 4 // cross many batch boundaries
	ctx := context.Background()
	var prog []BuildProgress
	rep, err := db.Build(ctx, m, "bkt", "pre", layout.Telemetry(), func(p BuildProgress) { prog = append(prog, p) })
	if err != nil {
		t.Fatal(err)
	}
	want := BuildReport{Bucket: "bkt", Prefix: "pre/", Listed: 31, Indexed: 30, Skipped: 1, Added: 30, SkippedKeys: []string{"pre/notes.txt"}}
	if fmt.Sprint(rep) != fmt.Sprint(want) {
		t.Fatalf("first build:\n got %+v\nwant %+v", rep, want)
	}
	if len(prog) != 11 || prog[len(prog)-1].Listed != 31 || prog[len(prog)-1].Skipped != 1 {
		t.Errorf("progress %+v", prog)
	}

	// Again, unchanged.
	rep, err = db.Build(ctx, m, "bkt", "pre/", layout.Telemetry(), nil)
	if err != nil || rep.Unchanged != 30 || rep.Added+rep.Removed+rep.Updated != 0 {
		t.Fatalf("second build %+v %v", rep, err)
	}

	// Delete some (first, middle, last, a run across a batch boundary),
	// add some, change size of one and ETag of another.
	for _, i := range []int{0, 7, 8, 9, 10, 29} {
		m.remove(ks[i])
	}
	added := []string{
		layout.Key("pre", []string{"saved_session", "Firefox", "aurora", "20.0", "20140301000000", "20140301"}, 2, "new1", ""),
		layout.Key("pre", []string{"saved_session", "Firefox", "nightly", "21.0", "20140301000000", "20140303"}, 2, "u00b", "gz"),
		layout.Key("pre", []string{"saved_session", "Firefox", "nightly", "99.0", "20140301000000", "20140303"}, 2, "zzz", "gz"),
	}
	for _, k := range added {
		m.put(k, 1000, md5ish(1000), t0)
	}
	m.put(ks[3], 3333, md5ish(3), t0)
	m.put(ks[4], 4, md5ish(44), t0)
	rep, err = db.Build(ctx, m, "bkt", "pre", layout.Telemetry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Added != 3 || rep.Removed != 6 || rep.Updated != 2 || rep.Unchanged != 22 || rep.Indexed != 27 || rep.Listed != 28 {
		t.Fatalf("refresh %+v", rep)
	}
	got, _ := collect(t, db, mustFilter(t))
	if want := brute(t, m.objs, "pre/", mustFilter(t)); !slices.Equal(keys(got), want) {
		t.Fatalf("after refresh:\n got %q\nwant %q", keys(got), want)
	}
	for _, o := range got {
		if o.Key == ks[3] && o.Size != 3333 || o.Key == ks[4] && o.ETag != md5ish(44) {
			t.Errorf("not updated: %+v", o)
		}
	}

	// Everything gone.
	m.objs = nil
	rep, err = db.Build(ctx, m, "bkt", "pre", layout.Telemetry(), nil)
	if err != nil || rep.Removed != 27 || rep.Indexed != 0 {
		t.Fatalf("empty listing %+v %v", rep, err)
	}
	st, err := db.Stats(ctx)
	if err != nil || st.Objects != 0 {
		t.Fatalf("stats after emptying %+v %v", st, err)
	}
}

func TestBuildRefusesUnsortedListing(t *testing.T) {
	t.Parallel()
	db := openTemp(t, Options{})
	m := &memLister{}
	k1 := layout.Key("", []string{"a", "b", "c", "d", "1", "2"}, 2, "u1", "")
	k2 := layout.Key("", []string{"a", "b", "c", "d", "1", "3"}, 2, "u1", "")
	m.put(k1, 1, md5ish(1), t0)
	m.put(k2, 1, md5ish(1), t0)
	if _, err := db.Build(context.Background(), m, "b", "", layout.Telemetry(), nil); err != nil {
		t.Fatal(err)
	}
	m.objs[0], m.objs[1] = m.objs[1], m.objs[0]
	_, err := db.Build(context.Background(), m, "b", "", layout.Telemetry(), nil)
	if err == nil || !strings.Contains(err.Error(), "out of order") {
		t.Fatalf("unsorted listing: %v", err)
	}
	got, _ := collect(t, db, mustFilter(t))
	if len(got) != 2 {
		t.Errorf("a refused build changed the index: %q", keys(got))
	}
}

func TestBuildRefusesAnotherSource(t *testing.T) {
	t.Parallel()
	db := openTemp(t, Options{})
	m := &memLister{}
	ctx := context.Background()
	if _, err := db.Build(ctx, m, "b", "p", layout.Telemetry(), nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		bucket, prefix string
		schema         layout.Schema
		want           string
	}{
		{"b2", "p", layout.Telemetry(), "the index holds s3://b/p/ and cannot also hold s3://b2/p/"},
		{"b", "q", layout.Telemetry(), "the index holds s3://b/p/"},
		{"b", "p", layout.Schema{Fields: []string{"x", "y", "z"}}, "was built with the dimensions reason"},
		{"", "p", layout.Telemetry(), "no bucket"},
	} {
		if _, err := db.Build(ctx, m, tc.bucket, tc.prefix, tc.schema, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("build %s/%s %v: %v, want %q", tc.bucket, tc.prefix, tc.schema, err, tc.want)
		}
	}
	b, p, s, err := db.Source()
	if err != nil || b != "b" || p != "p/" || !s.Equal(layout.Telemetry()) {
		t.Errorf("source %q %q %v %v", b, p, s, err)
	}
	// A filter over other dimensions is refused.
	other := mustFilter(t)
	other.Dims[1].Field = "application"
	if _, err := db.Query(ctx, other, func(Object) error { return nil }); err == nil || !strings.Contains(err.Error(), `dimension 2 is "application"`) {
		t.Errorf("filter over other dimensions: %v", err)
	}
}

func TestQueryStopsOnCallbackError(t *testing.T) {
	t.Parallel()
	db := openTemp(t, Options{})
	m := tricky()
	ctx := context.Background()
	if _, err := db.Build(ctx, m, "b", "", layout.Telemetry(), nil); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("enough")
	n := 0
	_, err := db.Query(ctx, mustFilter(t), func(Object) error {
		n++
		if n == 5 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 5 {
		t.Errorf("err %v after %d", err, n)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := db.Query(cctx, mustFilter(t), func(Object) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled query: %v", err)
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	m := tricky()
	db := openTemp(t, Options{Clock: fixedClock{t0}})
	ctx := context.Background()
	if _, err := db.Stats(ctx); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("stats before build: %v", err)
	}
	if _, err := db.Build(ctx, m, "b", "", layout.Telemetry(), nil); err != nil {
		t.Fatal(err)
	}
	st, err := db.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Count by brute force.
	want := make([]map[string][2]int64, 6)
	for i := range want {
		want[i] = map[string][2]int64{}
	}
	objects, bytes := 0, int64(0)
	for _, o := range m.objs {
		dims, err := layout.Telemetry().Parse("", *o.Key)
		if err != nil {
			continue
		}
		objects++
		bytes += *o.Size
		for i, d := range dims {
			c := want[i][d]
			want[i][d] = [2]int64{c[0] + 1, c[1] + *o.Size}
		}
	}
	if st.Objects != objects || st.Bytes != bytes || st.Bucket != "b" || !st.Built.Equal(t0) || len(st.Dims) != 6 {
		t.Fatalf("stats %d objects %d bytes bucket %q built %v; want %d %d", st.Objects, st.Bytes, st.Bucket, st.Built, objects, bytes)
	}
	for i, ds := range st.Dims {
		if ds.Field != layout.Telemetry().Fields[i] || len(ds.Values) != len(want[i]) {
			t.Errorf("dim %d %q: %d values, want %d", i, ds.Field, len(ds.Values), len(want[i]))
		}
		if !slices.IsSortedFunc(ds.Values, func(a, b ValueCount) int { return strings.Compare(a.Value, b.Value) }) {
			t.Errorf("dim %d not sorted", i)
		}
		for _, vc := range ds.Values {
			if w := want[i][vc.Value]; int64(vc.Objects) != w[0] || vc.Bytes != w[1] {
				t.Errorf("dim %d value %q: %d objects %d bytes, want %v", i, vc.Value, vc.Objects, vc.Bytes, w)
			}
		}
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "index.db")

	if _, err := Open(path, Options{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "af index build") {
		t.Errorf("read-only open of a missing file: %v", err)
	}
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := db.Source(); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("source of a new index: %v", err)
	}
	// A second opener gets a clear error instead of waiting for ever.
	start := time.Now()
	_, err = Open(path, Options{Timeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "the index at "+path+" is in use (is `af serve` running?") {
		t.Errorf("second open: %v", err)
	}
	if _, err := Open(path, Options{Timeout: 50 * time.Millisecond, ReadOnly: true}); !errors.Is(err, ErrInUse) {
		t.Errorf("read-only open while a writer holds it: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second opens took %v", d)
	}
	db.Close()
	// Two readers at once are fine; an unbuilt index says so on use.
	r1, err := Open(path, Options{ReadOnly: true, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	r2, err := Open(path, Options{ReadOnly: true, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("second reader: %v", err)
	}
	defer r2.Close()
	if _, err := r2.Stats(context.Background()); !errors.Is(err, ErrNotBuilt) || !strings.Contains(err.Error(), "af index build") {
		t.Errorf("stats of an unbuilt index: %v", err)
	}
	if _, err := r2.Query(context.Background(), mustFilter(t), func(Object) error { return nil }); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("query of an unbuilt index: %v", err)
	}

	// A newer format is refused.
	newer := filepath.Join(dir, "newer.db")
	b, err := bolt.Open(newer, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Update(func(tx *bolt.Tx) error {
		m, _ := tx.CreateBucket(metaBucket)
		_, _ = tx.CreateBucket(objectsBucket)
		return m.Put(metaFormat, []byte(strconv.Itoa(FormatVersion+1)))
	}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := Open(newer, Options{}); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("format version %d, newer than this af understands (%d)", FormatVersion+1, FormatVersion)) {
		t.Errorf("newer format: %v", err)
	}

	// Some other bbolt file.
	other := filepath.Join(dir, "other.db")
	b, err = bolt.Open(other, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("tasks")); return err }); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := Open(other, Options{}); err == nil || !strings.Contains(err.Error(), "not an af index") {
		t.Errorf("other bbolt file: %v", err)
	}

	// Not a database at all.
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, bytes.Repeat([]byte("not a database "), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(junk, Options{}); err == nil || !strings.Contains(err.Error(), "not an af index or it is damaged") {
		t.Errorf("junk file: %v", err)
	}
}

// failingLister fails its first call, as S3 does for a bucket that does
// not exist.
type failingLister struct{}

func (failingLister) ListObjectsV2(context.Context, *s3.ListObjectsV2Input, ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	return nil, errors.New("NoSuchBucket: The specified bucket does not exist")
}

func TestFailedFirstBuildClaimsNothing(t *testing.T) {
	t.Parallel()
	db := openTemp(t, Options{})
	ctx := context.Background()
	if _, err := db.Build(ctx, failingLister{}, "mistyped", "", layout.Telemetry(), nil); err == nil || !strings.Contains(err.Error(), "list s3://mistyped/: ") {
		t.Fatalf("failed listing: %v", err)
	}
	if _, _, _, err := db.Source(); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("source after a failed first build: %v", err)
	}
	if rep, err := db.Build(ctx, tricky(), "right", "", layout.Telemetry(), nil); err != nil || rep.Indexed == 0 {
		t.Errorf("build of the right bucket after a failed one: %+v %v", rep, err)
	}
}
