package index

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/af-project/af/internal/layout"
)

// synthetic lists n keys in the real layout, in key order, generated as it
// goes: 2 reasons × 2 apps × 5 channels × 5 versions × 5 build ids × 60
// submission dates, and about n/30,000 files in each of those.
type synthetic struct {
	n        int
	next     int
	leaf     []int // current position in each dimension
	inLeaf   int   // files written into the current leaf
	perLeaf  int
	extra    int // the first extra leaves get one more file
	leafNo   int
	mtime    time.Time
	dimsVals [][]string
	dir      string // the current leaf's key up to the uuid
	keyBuf   []byte
}

var synthDims = func() [][]string {
	var builds, dates []string
	for i := range 5 {
		builds = append(builds, fmt.Sprintf("201402%02d030201", 20+i))
	}
	for i := range 60 {
		dates = append(dates, time.Date(2014, 3, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i).Format("20060102"))
	}
	return [][]string{
		{"idle_daily", "saved_session"},
		{"Fennec", "Firefox"},
		{"aurora", "beta", "esr", "nightly", "release"},
		{"27.0", "28.0", "29.0", "30.0a2", "31.0a1"},
		builds,
		dates,
	}
}()

func newSynthetic(n int) *synthetic {
	leaves := 1
	for _, d := range synthDims {
		leaves *= len(d)
	}
	return &synthetic{n: n, leaf: make([]int, len(synthDims)), perLeaf: n / leaves, extra: n % leaves, mtime: t0, dimsVals: synthDims}
}

func (s *synthetic) ListObjectsV2(_ context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	if t := aws.ToString(in.ContinuationToken); t != strconv.Itoa(s.next) && !(t == "" && s.next == 0) {
		return nil, fmt.Errorf("synthetic listing is sequential: token %q at %d", t, s.next)
	}
	out := &s3.ListObjectsV2Output{Contents: make([]types.Object, 0, 1000)}
	for len(out.Contents) < 1000 && s.next < s.n {
		want := s.perLeaf
		if s.leafNo < s.extra {
			want++
		}
		if s.inLeaf >= want {
			s.inLeaf = 0
			s.leafNo++
			for i := len(s.leaf) - 1; i >= 0; i-- {
				s.leaf[i]++
				if s.leaf[i] < len(s.dimsVals[i]) {
					break
				}
				s.leaf[i] = 0
			}
			s.dir = ""
			continue
		}
		if s.dir == "" {
			dims := make([]string, len(s.leaf))
			for i, j := range s.leaf {
				dims[i] = s.dimsVals[i][j]
			}
			// Everything up to the uuid, from the layout's own Key.
			k := layout.Key("telemetry/", dims, 2, "", "")
			s.dir = k[:len(k)-len(".log.")] + ".log."
		}
		// The SDK decodes every key of a page into its own string; so
		// does this, but cheaply, so that the benchmark measures the index.
		b := append(append(s.keyBuf[:0], s.dir...), "00000000000000000000000000000000"...)
		hex := strconv.AppendUint(nil, uint64(s.next), 16)
		copy(b[len(b)-len(hex):], hex)
		b = append(b, ".lzma"...)
		s.keyBuf = b
		key := string(b)
		size := int64(100_000 + s.next%900_000)
		e := []byte(`"00000000000000000000000000000000"`)
		copy(e[len(e)-1-len(hex):], hex)
		etag := string(e)
		out.Contents = append(out.Contents, types.Object{Key: &key, Size: &size, ETag: &etag, LastModified: &s.mtime})
		s.next++
		s.inLeaf++
	}
	if s.next < s.n {
		out.IsTruncated = aws.Bool(true)
		out.NextContinuationToken = aws.String(strconv.Itoa(s.next))
	}
	return out, nil
}

// benchKeys is how many keys the benchmarks index; AF_BENCH_KEYS
// overrides it for a quick run.
func benchKeys() int {
	if n, err := strconv.Atoi(os.Getenv("AF_BENCH_KEYS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

func TestSyntheticIsSortedAndComplete(t *testing.T) {
	t.Parallel()
	s := newSynthetic(70_001)
	var prev string
	n := 0
	p := s3.NewListObjectsV2Paginator(s, &s3.ListObjectsV2Input{})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			if *o.Key <= prev {
				t.Fatalf("%q after %q", *o.Key, prev)
			}
			if _, err := layout.Telemetry().Parse("telemetry", *o.Key); err != nil {
				t.Fatal(err)
			}
			prev = *o.Key
			n++
		}
	}
	if n != 70_001 {
		t.Fatalf("listed %d", n)
	}
}

// BenchmarkBuild indexes benchKeys() synthetic keys into a new file per
// iteration.
func BenchmarkBuild(b *testing.B) {
	n := benchKeys()
	var size int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		db, err := Open(filepath.Join(dir, "index.db"), Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		rep, err := db.Build(context.Background(), newSynthetic(n), "bench", "telemetry", layout.Telemetry(), nil)
		if err != nil || rep.Indexed != n {
			b.Fatalf("%+v %v", rep, err)
		}
		b.StopTimer()
		db.Close()
		fi, err := os.Stat(filepath.Join(dir, "index.db"))
		if err != nil {
			b.Fatal(err)
		}
		size = fi.Size()
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
	b.ReportMetric(float64(size)/float64(n), "dbbytes/key")
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peakRSS-MB") // Maxrss is in KiB on Linux
	}
}

var (
	sharedOnce sync.Once
	sharedDB   *DB
	sharedDir  string
	sharedErr  error
)

// shared builds the benchmarks' query index once per process.
func shared(b *testing.B) *DB {
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "af-index-bench-")
		if sharedErr != nil {
			return
		}
		sharedDB, sharedErr = Open(filepath.Join(sharedDir, "index.db"), Options{})
		if sharedErr != nil {
			return
		}
		_, sharedErr = sharedDB.Build(context.Background(), newSynthetic(benchKeys()), "bench", "telemetry", layout.Telemetry(), nil)
	})
	if sharedErr != nil {
		b.Fatal(sharedErr)
	}
	return sharedDB
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, db := range []*DB{sharedDB, fuzzDB} {
		if db != nil {
			db.Close()
		}
	}
	for _, d := range []string{sharedDir, fuzzDir} {
		if d != "" {
			os.RemoveAll(d)
		}
	}
	os.Exit(code)
}

func benchQuery(b *testing.B, av ...string) {
	db := shared(b)
	f := mustFilter(b, av...)
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	var st QueryStats
	for i := 0; i < b.N; i++ {
		var err error
		st, err = db.Query(context.Background(), f, func(Object) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(st.Files), "files")
	b.ReportMetric(float64(st.Seeks), "seeks")
}

// BenchmarkQuerySelective selects one submission day on one channel.
func BenchmarkQuerySelective(b *testing.B) {
	benchQuery(b, "", "", `["nightly"]`, "", "", `"20140308"`)
}

// BenchmarkQueryAll selects every key.
func BenchmarkQueryAll(b *testing.B) {
	benchQuery(b)
}
