package index

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/af-project/af/internal/filter"
	"github.com/af-project/af/internal/layout"
)

// era is one storage layout with keys in it, as telemetry-server and Hive
// wrote them (the example keys are theirs: see internal/layout's
// layouts_test.go), and filters over it.
type era struct {
	name   string
	schema layout.Schema
	prefix string
	keys   []string
	// outside are keys under the prefix that must be skipped.
	outside []string
	// filters are allowed_values per dimension ("" is "*").
	filters [][]string
}

func repoSchema(t testing.TB, name string) layout.Schema {
	t.Helper()
	s, err := layout.LoadSchema(filepath.Join("..", "..", "filters", "layouts", name))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// eras builds the four layouts' keys from value grids, so every filter has
// many files to keep and to prune.
func eras(t testing.TB) []era {
	rng := rand.New(rand.NewPCG(14, 14))
	pick := func(vals []string) string { return vals[rng.IntN(len(vals))] }
	tel := layout.Telemetry()
	var v2, noV, t2, hive []string
	for i := range 400 {
		dims := []string{pick([]string{"saved_session", "idle_daily", "main"}), "Firefox", pick([]string{"nightly", "aurora", "beta"}),
			pick([]string{"22", "22.0", "22.0a1", "26.0a1", "28.0a1"}), fmt.Sprintf("201308%02d030205", 1+rng.IntN(30)), fmt.Sprintf("201309%02d", 1+rng.IntN(9))}
		id := fmt.Sprintf("%032x", rng.Uint64())
		v2 = append(v2, layout.Key("", dims, 2, id, "lzma"))
		// telemetry-server's earlier names: no .vN part.
		noV = append(noV, tel.KeyFor("processed", dims, "log."+id+".lzma"))
		t2dims := []string{fmt.Sprintf("201509%02d", 20+rng.IntN(11)), "telemetry", "4", pick([]string{"main", "saved_session", "crash"}),
			"Firefox", pick([]string{"nightly", "release"}), pick([]string{"44.0a1", "41.0", "41.0.1"}), fmt.Sprintf("201509%02d150205", 1+rng.IntN(28))}
		t2 = append(t2, repoSchema(t, "telemetry-2_schema.json").KeyFor("telemetry-2", t2dims, fmt.Sprintf("20150928%06d.%03d_ip-172-31-25-%d", i, i%1000, i%250)))
		hdims := []string{fmt.Sprintf("2024-01-%02d", 1+rng.IntN(12)), fmt.Sprintf("%02d", rng.IntN(24))}
		hive = append(hive, repoSchema(t, "hive_schema.json").KeyFor("events", hdims, fmt.Sprintf("part-%05d-%08x-c000.json.gz", i, rng.Uint32())))
	}
	hive = append(hive, "events/dt=2024-01-05/hour=07/_SUCCESS")
	return []era{
		{name: ".vN", schema: tel, keys: v2,
			outside: []string{"README.md", "saved_session/../nightly/22.0a1/1.2.v2.log.u.lzma", "saved-session/Firefox/nightly/22/1.2.v2.log.u.gz"},
			filters: [][]string{
				{`["saved-session"]`, "", `"nightly"`},
				{"", "", "", `{"max": "22.0"}`},
				{"", "", "", `{"min": "22", "max": "22.0a1"}`, `{"min": "20130810"}`, `["20130903", "20130905"]`},
			}},
		{name: "without .vN", schema: tel, prefix: "processed/", keys: noV,
			outside: []string{"processed/idle_daily/Firefox/nightly/26.0a1/x.txt", "processed/idle_daily/Firefox/nightly/26.0a1/1.2.lgo.u.lzma"},
			filters: [][]string{
				{`["saved-session"]`, "", `"nightly"`},
				{"", "", "", `{"max": "22.0"}`},
				{"", "", "", `{"min": "22", "max": "22.0a1"}`, `{"min": "20130810"}`, `["20130903", "20130905"]`},
			}},
		{name: "telemetry-2", schema: repoSchema(t, "telemetry-2_schema.json"), prefix: "telemetry-2/", keys: t2,
			outside: []string{"telemetry-2/20150928/telemetry/4/main/Firefox/nightly/44.0a1/x", "telemetry-2/20150928/telemetry/4/main/Firefox/nightly/44.0a1/20150927150205/.."},
			filters: [][]string{
				{`"20150928"`, `"telemetry"`, `"4"`, `"saved_session"`, `"Firefox"`, `"nightly"`, `"44.0a1"`},
				{`{"min": "20150925", "max": "20150927"}`, "", "", `["saved-session", "main"]`, "", `"release"`, `{"max": "41.0"}`},
				{"", "", "", "", "", "", "", `{"min": "20150915"}`},
			}},
		{name: "hive", schema: repoSchema(t, "hive_schema.json"), prefix: "events/", keys: hive,
			outside: []string{"events/dt=2024-01-01/dt=2024-01-02/part-0.json", "events/hour=03/dt=2024-01-01/part-0.json", "events/dt=/hour=03/p", "events/dt=2024-01-01/hour=03/hour=04/p", "events/_SUCCESS"},
			filters: [][]string{
				{`["2024-01-01", "2024-01-02"]`, `{"min": "03", "max": "11"}`},
				{`{"min": "2024-01-1", "max": "2024-01-11"}`},
				{`"2024-01-05"`, `"07"`},
				{"", `["00", "23"]`},
				{`{"max": "2024-01-03"}`},
				{`{"min": "2024-01-0", "max": "2024-01-05"}`, `{"min": "1"}`},
			}},
	}
}

// eraFilter parses a filter over the era's schema.
func eraFilter(t testing.TB, s layout.Schema, av []string) *filter.Filter {
	t.Helper()
	parts := make([]string, len(s.Fields))
	for i, f := range s.Fields {
		v := `"*"`
		if i < len(av) && av[i] != "" {
			v = av[i]
		}
		parts[i] = fmt.Sprintf(`{"field_name": %q, "allowed_values": %s}`, f, v)
	}
	f, err := filter.Parse(strings.Join(av, "|"), []byte(`{"version": 1, "dimensions": [`+strings.Join(parts, ",")+`]}`), s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestEveryLayout builds an index of each era and checks that every
// filter selects exactly what parsing and matching each key selects,
// with the right dimensions, reading fewer keys than the index holds;
// that the keys outside the layout are skipped; and that the index
// remembers its layout when reopened.
func TestEveryLayout(t *testing.T) {
	t.Parallel()
	for _, e := range eras(t) {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			m := &memLister{pageSize: 97}
			for i, k := range append(slices.Clone(e.keys), e.outside...) {
				m.put(k, int64(100+i), md5ish(i), t0)
			}
			path := filepath.Join(t.TempDir(), "index.db")
			db, err := Open(path, Options{Clock: fixedClock{t0}})
			if err != nil {
				t.Fatal(err)
			}
			db.batchSize = 150
			rep, err := db.Build(context.Background(), m, "bkt", e.prefix, e.schema, nil)
			if err != nil {
				t.Fatal(err)
			}
			skipped := slices.Sorted(slices.Values(e.outside))
			if rep.Skipped != len(e.outside) || !slices.Equal(rep.SkippedKeys, skipped) || rep.Indexed != len(slices.Compact(slices.Sorted(slices.Values(e.keys)))) {
				t.Fatalf("build: indexed %d, skipped %q; want %d skipped: %q", rep.Indexed, rep.SkippedKeys, len(skipped), skipped)
			}
			check := func(db *DB) {
				t.Helper()
				for _, av := range e.filters {
					f := eraFilter(t, e.schema, av)
					got, st := collect(t, db, f)
					var want []string
					for _, k := range e.keys {
						dims, err := e.schema.Parse(e.prefix, k)
						if err != nil {
							t.Fatalf("generated key %q: %v", k, err)
						}
						if f.Match(dims) {
							want = append(want, k)
						}
					}
					sort.Strings(want)
					want = slices.Compact(want)
					if len(want) == 0 {
						t.Fatalf("filter %s selects nothing: a weak test", f.Name)
					}
					if !slices.Equal(keys(got), want) {
						t.Errorf("filter %s: got %d keys, want %d:\n got %q\nwant %q", f.Name, len(got), len(want), keys(got), want)
					}
					for _, o := range got {
						if dims, _ := e.schema.Parse(e.prefix, o.Key); !slices.Equal(o.Dims, dims) {
							t.Errorf("filter %s: %s has dims %q, want %q", f.Name, o.Key, o.Dims, dims)
						}
					}
					if st.Reads >= rep.Indexed || st.Reads < len(want) {
						t.Errorf("filter %s: read %d keys of %d for %d selected: no pruning", f.Name, st.Reads, rep.Indexed, len(want))
					}
				}
			}
			check(db)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db, err = Open(path, Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			_, prefix, schema, err := db.Source()
			if err != nil || prefix != e.prefix || !schema.Equal(e.schema) {
				t.Fatalf("Source() = %q %v %v; want %q %v", prefix, schema, err, e.prefix, e.schema)
			}
			check(db)
			st, err := db.Stats(context.Background())
			if err != nil || st.Objects != rep.Indexed || len(st.Dims) != len(e.schema.Fields) {
				t.Fatalf("stats %+v %v", st, err)
			}
			for _, v := range st.Dims[0].Values {
				if !e.schema.Storable(0, v.Value) {
					t.Errorf("stats: %s value %q", st.Dims[0].Field, v.Value)
				}
			}
			if w := st.Wire(); w.Schema.Layout != e.schema.Layout() {
				t.Errorf("stats layout %q, want %q", w.Schema.Layout, e.schema.Layout())
			}
		})
	}
}

// TestLayoutIsPartOfTheSource: an index of one layout refuses a build
// with another over the same names, and files of another layout than
// .vN say format 2, so that an af that predates layouts refuses them.
func TestLayoutIsPartOfTheSource(t *testing.T) {
	t.Parallel()
	hive := repoSchema(t, "hive_schema.json")
	m := &memLister{}
	m.put("dt=2024-01-01/hour=03/part-0001.json.gz", 1, md5ish(1), t0)
	db := openTemp(t, Options{})
	if _, err := db.Build(context.Background(), m, "bkt", "", hive, nil); err != nil {
		t.Fatal(err)
	}
	dirs := layout.Schema{Fields: hive.Fields, Places: []layout.Place{layout.InDirectory, layout.InDirectory}}
	_, err := db.Build(context.Background(), m, "bkt", "", dirs, nil)
	if err == nil || !strings.Contains(err.Error(), "was built with the dimensions dt, hour (dt=<dt>/hour=<hour>/<file>), not dt, hour (<dt>/<hour>/<file>)") {
		t.Errorf("build with another layout: %v", err)
	}
	var format string
	if err := db.bolt.View(func(tx *bolt.Tx) error { format = string(tx.Bucket(metaBucket).Get(metaFormat)); return nil }); err != nil || format != "2" {
		t.Errorf("format %q, %v; want 2", format, err)
	}
	tel := openTemp(t, Options{})
	if _, err := tel.Build(context.Background(), &memLister{}, "bkt", "", layout.Telemetry(), nil); err != nil {
		t.Fatal(err)
	}
	if err := tel.bolt.View(func(tx *bolt.Tx) error { format = string(tx.Bucket(metaBucket).Get(metaFormat)); return nil }); err != nil || format != "1" {
		t.Errorf("format of a .vN index %q, %v; want 1", format, err)
	}
}

// TestNamesWithoutVersionAsTelemetryServerReadsThem indexes keys of
// telemetry-server's own schema test (telemetry/test_telemetry_schema.py,
// names without .vN, under "processed/") beside .vN ones, and checks that
// a filter selects what telemetry-server's reader would: it splits the
// path on "/" and takes the first two dot-separated parts of the name.
func TestNamesWithoutVersionAsTelemetryServerReadsThem(t *testing.T) {
	t.Parallel()
	names := []string{
		"processed/idle_daily/Firefox/nightly/26.0a1/20130826074752.20130903.log.e0c7ff434e474c8aa745763eed408b9c.lzma",
		"processed/idle_daily/Firefox/nightly/26.0a1/20130901030218.20130903.log.17ff07fda8994e23baf983550246a94b.lzma",
		"processed/idle_daily/Firefox/nightly/26.0a1/20130819030205.20130907.log.ec6f22acd37349b3b5ef03da1cc150da.lzma",
		"processed/idle_daily/Firefox/nightly/26.0a1/20130814030204.20130906.log.a382f1337d1f47ef8aad08f8fb14a79a.lzma",
		"processed/idle_daily/Firefox/nightly/26.0a1/20130826074752.20130902.log.2349f0434be64c6684f91eccabf9b3e6.lzma",
		"processed/saved_session/Firefox/nightly/26.0a1/20130902030220.20130908.log.7e9556a5e32b4990a9d378eea65f57a9.lzma",
		"processed/saved_session/Firefox/nightly/26.0a1/20130829030201.20130909.log.c227775e57e24854b1aac7c21c59f85c.lzma",
		"processed/saved_session/Firefox/nightly/26.0a1/20130826030203.20130906.log.88620da62e77482285f28d5ea69beb1e.lzma",
		// .vN names of the same era, side by side.
		"processed/idle_daily/Firefox/nightly/26.0a1/20130826074752.20130904.v2.log.0bf2c1edf2634ca5bdc865a54957a690.lzma",
		"processed/saved_session/Firefox/nightly/26.0a1/20130830030205.20130906.v2.log.77905bb7503a4a98aa7231b10073f47e.lzma",
	}
	m := &memLister{}
	for i, k := range names {
		m.put(k, int64(i+1), md5ish(i), t0)
	}
	db := openTemp(t, Options{})
	rep, err := db.Build(context.Background(), m, "telemetry", "processed", layout.Telemetry(), nil)
	if err != nil || rep.Indexed != len(names) || rep.Skipped != 0 {
		t.Fatalf("build %+v %v: every key of telemetry-server's test should fit", rep, err)
	}
	// telemetry-server's reader, TelemetrySchema.get_dimensions.
	dimsOf := func(key string) []string {
		parts := strings.Split(strings.TrimPrefix(key, "processed/"), "/")
		name := strings.Split(parts[len(parts)-1], ".")
		return append(parts[:len(parts)-1], name[0], name[1])
	}
	for _, av := range [][]string{
		{`["idle-daily"]`, "", "", "", "", `{"min": "20130903", "max": "20130906"}`},
		{`["saved-session", "idle-daily"]`, `["Firefox"]`, `["nightly"]`, "", `{"min": "20130826"}`, `{"min": "20130904"}`},
		{"", "", "", "", `{"max": "20130826999999"}`},
	} {
		f := eraFilter(t, layout.Telemetry(), av)
		var want []string
		for _, k := range names {
			if f.Match(dimsOf(k)) {
				want = append(want, k)
			}
		}
		sort.Strings(want)
		got, _ := collect(t, db, f)
		if len(want) == 0 || !slices.Equal(keys(got), want) {
			t.Errorf("filter %s: got %q, want %q", f.Name, keys(got), want)
		}
	}
}
