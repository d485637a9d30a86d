package partition

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/af-project/af/internal/taskdef"
)

func f(key string, size int64) taskdef.InputFile { return taskdef.InputFile{Key: key, Size: size} }

func TestBalanceTable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		files    []taskdef.InputFile
		maxBytes int64
		maxFiles int
		want     [][]taskdef.InputFile
	}{
		{name: "empty", files: nil, maxBytes: 10, maxFiles: 10, want: nil},
		{
			name:     "one file",
			files:    []taskdef.InputFile{f("a", 5)},
			maxBytes: 10, maxFiles: 10,
			want: [][]taskdef.InputFile{{f("a", 5)}},
		},
		{
			name:     "all fit in one load, largest first",
			files:    []taskdef.InputFile{f("a", 1), f("b", 3), f("c", 2)},
			maxBytes: 10, maxFiles: 10,
			want: [][]taskdef.InputFile{{f("b", 3), f("c", 2), f("a", 1)}},
		},
		{
			name: "LPT over two loads",
			// total 20 with maxBytes 10 needs two loads; LPT balances 10/10.
			files:    []taskdef.InputFile{f("a", 5), f("b", 4), f("c", 3), f("d", 3), f("e", 3), f("g", 2)},
			maxBytes: 10, maxFiles: 10,
			want: [][]taskdef.InputFile{
				{f("a", 5), f("d", 3), f("g", 2)},
				{f("b", 4), f("c", 3), f("e", 3)},
			},
		},
		{
			name:     "file count bound",
			files:    []taskdef.InputFile{f("a", 1), f("b", 1), f("c", 1), f("d", 1), f("e", 1)},
			maxBytes: 100, maxFiles: 2,
			want: [][]taskdef.InputFile{
				{f("a", 1), f("d", 1)},
				{f("b", 1), f("e", 1)},
				{f("c", 1)},
			},
		},
		{
			name:     "oversized file gets its own load",
			files:    []taskdef.InputFile{f("small", 2), f("huge", 50), f("mid", 5)},
			maxBytes: 10, maxFiles: 10,
			want: [][]taskdef.InputFile{
				{f("huge", 50)},
				{f("mid", 5), f("small", 2)},
			},
		},
		{
			name: "bytes bound opens a load when LPT cannot fit",
			// lower bound is ceil(18/10)=2, but 6,6,6 cannot share 10-byte loads.
			files:    []taskdef.InputFile{f("a", 6), f("b", 6), f("c", 6)},
			maxBytes: 10, maxFiles: 10,
			want: [][]taskdef.InputFile{{f("a", 6)}, {f("b", 6)}, {f("c", 6)}},
		},
		{
			name:     "ties broken by key regardless of input order",
			files:    []taskdef.InputFile{f("d", 1), f("c", 1), f("b", 1), f("a", 1)},
			maxBytes: 2, maxFiles: 0,
			want: [][]taskdef.InputFile{{f("a", 1), f("c", 1)}, {f("b", 1), f("d", 1)}},
		},
		{
			name:     "no bounds: one load",
			files:    []taskdef.InputFile{f("a", 1<<40), f("b", 7)},
			maxBytes: 0, maxFiles: 0,
			want: [][]taskdef.InputFile{{f("a", 1<<40), f("b", 7)}},
		},
		{
			name:     "zero-size files still counted",
			files:    []taskdef.InputFile{f("a", 0), f("b", 0), f("c", 0)},
			maxBytes: 10, maxFiles: 1,
			want: [][]taskdef.InputFile{{f("a", 0)}, {f("b", 0)}, {f("c", 0)}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := slices.Clone(tc.files)
			got := Balance(tc.files, tc.maxBytes, tc.maxFiles)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Balance(%v, %d, %d)\n got %v\nwant %v", tc.files, tc.maxBytes, tc.maxFiles, got, tc.want)
			}
			if !reflect.DeepEqual(in, tc.files) {
				t.Fatalf("Balance modified its input: %v, was %v", tc.files, in)
			}
		})
	}
}

func TestMinLoads(t *testing.T) {
	t.Parallel()
	cases := []struct {
		n        int
		total    int64
		maxBytes int64
		maxFiles int
		want     int
	}{
		{0, 0, 10, 10, 0},
		{1, 0, 10, 10, 1},
		{3, 30, 10, 10, 3},
		{3, 31, 10, 10, 4},
		{25, 1, 10, 10, 3},
		{25, 1000, 0, 0, 1},
		{25, 1000, -1, 5, 5},
	}
	for _, tc := range cases {
		if got := MinLoads(tc.n, tc.total, tc.maxBytes, tc.maxFiles); got != tc.want {
			t.Errorf("MinLoads(%d, %d, %d, %d) = %d, want %d", tc.n, tc.total, tc.maxBytes, tc.maxFiles, got, tc.want)
		}
	}
}

// randomFiles draws file sizes the way telemetry partitions look: many
// small files and a long tail of big ones.
func randomFiles(r *rand.Rand, n int, maxSize int64) []taskdef.InputFile {
	files := make([]taskdef.InputFile, n)
	for i := range files {
		var size int64
		switch r.IntN(10) {
		case 0:
			size = r.Int64N(maxSize + 1)
		case 1, 2:
			size = r.Int64N(maxSize/10 + 1)
		default:
			size = r.Int64N(maxSize/100 + 1)
		}
		files[i] = taskdef.InputFile{Key: fmt.Sprintf("saved_session/Firefox/release/%d/2014%04d.v2.log.%08x.lzma", r.IntN(50), i, r.Uint32()), Size: size}
	}
	return files
}

// checkInvariants asserts what every Balance result must satisfy: each
// file exactly once, bounds respected, loads non-empty and largest first.
func checkInvariants(t *testing.T, files []taskdef.InputFile, maxBytes int64, maxFiles int, loads [][]taskdef.InputFile) {
	t.Helper()
	seen := make(map[taskdef.InputFile]int, len(files))
	for _, fl := range files {
		seen[fl]++
	}
	for i, l := range loads {
		if len(l) == 0 {
			t.Fatalf("load %d is empty", i)
		}
		var b int64
		for j, fl := range l {
			if seen[fl] == 0 {
				t.Fatalf("load %d holds %v which is not an input or appears twice", i, fl)
			}
			seen[fl]--
			b += fl.Size
			if j > 0 && compareFiles(l[j-1], fl) > 0 {
				t.Fatalf("load %d is not largest first: %v before %v", i, l[j-1], fl)
			}
		}
		if maxFiles > 0 && len(l) > maxFiles {
			t.Fatalf("load %d has %d files, bound %d", i, len(l), maxFiles)
		}
		if maxBytes > 0 && b > maxBytes && len(l) != 1 {
			t.Fatalf("load %d has %d bytes in %d files, bound %d", i, b, len(l), maxBytes)
		}
	}
	for fl, c := range seen {
		if c != 0 {
			t.Fatalf("%v missing from the loads", fl)
		}
	}
}

func TestBalanceProperties(t *testing.T) {
	t.Parallel()
	for seed := uint64(1); seed <= 60; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(seed, seed*7919))
			n := r.IntN(3000) + 1
			maxBytes := int64(r.IntN(1<<20) + 1)
			maxFiles := r.IntN(200) - 20 // sometimes unbounded
			files := randomFiles(r, n, maxBytes*2)
			loads := Balance(files, maxBytes, maxFiles)
			checkInvariants(t, files, maxBytes, maxFiles, loads)

			// Quality against the lower bound for the files that fit.
			oversized := 0
			var fitting []taskdef.InputFile
			var total, largest int64
			for _, fl := range files {
				if fl.Size > maxBytes {
					oversized++
					continue
				}
				fitting = append(fitting, fl)
				total += fl.Size
				largest = max(largest, fl.Size)
			}
			lb := MinLoads(len(fitting), total, maxBytes, maxFiles)
			got := len(loads) - oversized
			if got < lb {
				t.Fatalf("%d loads for the fitting files, below the lower bound %d: the bound or the count is wrong", got, lb)
			}
			if got > 2*lb {
				t.Fatalf("%d loads for the fitting files, lower bound %d: more than twice the minimum", got, lb)
			}
			if maxFiles <= 0 && len(fitting) > 0 {
				// Graham's bound for list scheduling on at least lb loads:
				// the heaviest load is at most the average plus one file.
				heaviest := int64(0)
				for _, l := range loads[oversized:] {
					var b int64
					for _, fl := range l {
						b += fl.Size
					}
					heaviest = max(heaviest, b)
				}
				if bound := total/int64(lb) + largest; heaviest > bound {
					t.Fatalf("heaviest load %d bytes exceeds average+largest %d", heaviest, bound)
				}
			}
			// Deterministic whatever the input order.
			shuffled := slices.Clone(files)
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if again := Balance(shuffled, maxBytes, maxFiles); !reflect.DeepEqual(again, loads) {
				t.Fatalf("Balance depends on input order")
			}
		})
	}
}

// TestBalanceNearMinimal checks the common case: plenty of small files and
// generous bounds give exactly the lower bound of loads, evenly filled.
func TestBalanceNearMinimal(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(42, 43))
	files := make([]taskdef.InputFile, 150_000)
	var total int64
	for i := range files {
		files[i] = taskdef.InputFile{Key: fmt.Sprintf("k%06d", i), Size: r.Int64N(20<<20) + 1}
		total += files[i].Size
	}
	const maxBytes, maxFiles = 2 << 30, 100
	loads := Balance(files, maxBytes, maxFiles)
	checkInvariants(t, files, maxBytes, maxFiles, loads)
	lb := MinLoads(len(files), total, maxBytes, maxFiles)
	if len(loads) != lb {
		t.Fatalf("%d loads, lower bound %d", len(loads), lb)
	}
	lo, hi := loadBytes(loads[0]), loadBytes(loads[0])
	for _, l := range loads {
		lo, hi = min(lo, loadBytes(l)), max(hi, loadBytes(l))
	}
	t.Logf("%d files, %d loads (lower bound %d), load bytes %d..%d", len(files), len(loads), lb, lo, hi)
}

func loadBytes(l []taskdef.InputFile) int64 {
	var b int64
	for _, fl := range l {
		b += fl.Size
	}
	return b
}

func FuzzBalance(f *testing.F) {
	f.Add([]byte{5, 4, 3, 3, 3, 2}, int64(10), 10)
	f.Add([]byte{6, 6, 6}, int64(10), 2)
	f.Add([]byte{0, 0, 0, 200}, int64(1), 1)
	f.Add([]byte{}, int64(0), 0)
	f.Fuzz(func(t *testing.T, sizes []byte, maxBytes int64, maxFiles int) {
		maxFiles %= 1000
		files := make([]taskdef.InputFile, len(sizes))
		for i, s := range sizes {
			files[i] = taskdef.InputFile{Key: fmt.Sprintf("f%d", i%7), Size: int64(s)}
		}
		loads := Balance(files, maxBytes, maxFiles)
		checkInvariants(t, files, maxBytes, maxFiles, loads)
	})
}

// BenchmarkBalance150k is the submit-time cost for 150,000 files into loads
// of at most 2 GiB and 300 files. It also reports the load count against
// the lower bound and the heaviest load against the average, so the
// benchmark records quality along with speed.
func BenchmarkBalance150k(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	files := make([]taskdef.InputFile, 150_000)
	var total int64
	for i := range files {
		files[i] = taskdef.InputFile{Key: fmt.Sprintf("saved_session/Firefox/release/%d/20140%03d.v2.log.%08x.lzma", i%40, i%1000, r.Uint32()), Size: r.Int64N(40<<20) + 1}
		total += files[i].Size
	}
	const maxBytes, maxFiles = 2 << 30, 300
	b.ReportAllocs()
	b.ResetTimer()
	var loads [][]taskdef.InputFile
	for b.Loop() {
		loads = Balance(files, maxBytes, maxFiles)
	}
	b.StopTimer()
	var heaviest int64
	for _, l := range loads {
		heaviest = max(heaviest, loadBytes(l))
	}
	b.ReportMetric(float64(len(loads)), "loads")
	b.ReportMetric(float64(MinLoads(len(files), total, maxBytes, maxFiles)), "lowerbound")
	b.ReportMetric(float64(heaviest)/(float64(total)/float64(len(loads))), "max/avg")
}
