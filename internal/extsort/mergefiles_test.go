package extsort

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// writeInputs deals lines to n
// inputs, sorts each input stably and writes it to dir. It returns the
// paths, names and the reference merge: equal keys in input order, then in
// each input's order.
func writeInputs(t *testing.T, dir string, lines []string, n int) (paths, names []string, want string) {
	t.Helper()
	per := make([][]string, n)
	for i, l := range lines {
		per[(i*7/3)%max(n, 1)] = append(per[(i*7/3)%max(n, 1)], l)
	}
	var all []string
	for i := range n {
		in := slices.Clone(per[i])
		slices.SortStableFunc(in, func(a, b string) int { return strings.Compare(key(a), key(b)) })
		all = append(all, in...)
		p := filepath.Join(dir, fmt.Sprintf("in-%05d", i))
		if err := os.WriteFile(p, []byte(strings.Join(in, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		paths, names = append(paths, p), append(names, fmt.Sprintf("task-%d", i))
	}
	return paths, names, stableSorted(all)
}

func TestMergeFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		lines      []string
		inputs     int
		fanIn      int
		wantPasses bool
	}{
		{"no inputs", nil, 0, 4, false},
		{"one input", randomLines(100, 5, 10), 1, 4, false},
		{"fewer than fan-in", randomLines(500, 20, 11), 3, 4, false},
		{"exactly fan-in", randomLines(500, 20, 12), 4, 4, false},
		{"fan-in plus one (lone tail)", randomLines(500, 20, 13), 5, 4, true},
		{"two passes", randomLines(3000, 30, 14), 70, 4, true},
		{"all equal keys, many passes", randomLines(2000, 1, 15), 100, 2, true},
		{"empty inputs among many", randomLines(20, 3, 16), 50, 3, true},
		{"default fan-in", randomLines(2000, 40, 17), 300, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir, tmp := t.TempDir(), t.TempDir()
			paths, names, want := writeInputs(t, dir, tt.lines, tt.inputs)
			fm, err := MergeFiles(paths, names, MergeOptions{Dir: tmp, FanIn: tt.fanIn})
			if err != nil {
				t.Fatal(err)
			}
			temps, _ := os.ReadDir(tmp)
			if got := len(temps) > 0; got != tt.wantPasses {
				t.Errorf("intermediate files: %d, want some: %v", len(temps), tt.wantPasses)
			}
			var out bytes.Buffer
			if _, err := fm.WriteTo(&out); err != nil {
				t.Fatal(err)
			}
			if err := fm.Close(); err != nil {
				t.Fatal(err)
			}
			if out.String() != want {
				t.Errorf("merge differs from the stable reference (%d vs %d bytes)", out.Len(), len(want))
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("Close left %d intermediate files", len(left))
			}
		})
	}
}

func TestMergeFilesErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		bad     string // content of input 5 of 9
		wantErr any
		wantIn  string
	}{
		{"unsorted input", "\"b\"\t1\n\"a\"\t2\n", new(*OrderError), "task-5"},
		{"no tab", "\"a\"\t1\nnotab\n", new(*LineError), "task-5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir, tmp := t.TempDir(), t.TempDir()
			paths, names, _ := writeInputs(t, dir, randomLines(200, 10, 20), 9)
			if err := os.WriteFile(paths[5], []byte(tt.bad), 0o600); err != nil {
				t.Fatal(err)
			}
			fm, err := MergeFiles(paths, names, MergeOptions{Dir: tmp, FanIn: 3})
			if err == nil {
				_, err = fm.WriteTo(new(bytes.Buffer))
				fm.Close()
			}
			if !errors.As(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantIn) {
				t.Fatalf("err = %v, want %T naming %s", err, tt.wantErr, tt.wantIn)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("a failed merge left %d intermediate files", len(left))
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		_, err := MergeFiles([]string{filepath.Join(t.TempDir(), "nope")}, []string{"x"}, MergeOptions{})
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v, want not-exist", err)
		}
	})
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("count open files: %v", err)
	}
	return len(ents)
}

// TestMergeFilesOpenFiles merges 3,000 inputs (a reducer of a 3,000-mapper
// graph) and checks it never holds more than fan-in + a few files open:
// sampled during the passes, and exactly once the final merge is open. Not
// parallel, so no other test's files are counted.
func TestMergeFilesOpenFiles(t *testing.T) {
	const inputs, fan, slack = 3000, 64, 4
	dir, tmp := t.TempDir(), t.TempDir()
	paths, names, want := writeInputs(t, dir, randomLines(9000, 500, 30), inputs)
	base := openFDs(t)
	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := int64(openFDs(t)); n > peak.Load() {
				peak.Store(n)
			}
		}
	}()
	fm, err := MergeFiles(paths, names, MergeOptions{Dir: tmp, FanIn: fan})
	if err != nil {
		t.Fatal(err)
	}
	if got := openFDs(t) - base; got > fan+slack {
		t.Errorf("final merge holds %d files open, want at most %d", got, fan+slack)
	}
	var out bytes.Buffer
	_, err = fm.WriteTo(&out)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	fm.Close()
	if got := int(peak.Load()) - base; got > fan+slack {
		t.Errorf("peak open files during the merge: %d above the start, want at most %d", got, fan+slack)
	}
	if out.String() != want {
		t.Error("merge of 3,000 inputs differs from the stable reference")
	}
	t.Logf("3,000 inputs, fan-in %d: peak %d open files above the start", fan, peak.Load()-int64(base))
}

// BenchmarkMerge3000 merges 3,000 small sorted files (a 3,000-mapper
// reducer's inputs) as main's reducer did (every file open, one
// NewNamedMerger with its 256 KiB buffer per input) and with MergeFiles
// (fan-in 256), reporting the open files and live heap once the merge has
// started (after a GC) and the peak open files over the whole merge.
func BenchmarkMerge3000(b *testing.B) {
	const inputs = 3000
	dir := b.TempDir()
	lines := randomLines(9000, 500, 40)
	per := make([][]string, inputs)
	for i, l := range lines {
		per[i%inputs] = append(per[i%inputs], l)
	}
	var paths, names []string
	for i := range inputs {
		in := per[i]
		slices.SortStableFunc(in, func(a, b string) int { return strings.Compare(key(a), key(b)) })
		p := filepath.Join(dir, fmt.Sprintf("in-%05d", i))
		if err := os.WriteFile(p, []byte(strings.Join(in, "")), 0o600); err != nil {
			b.Fatal(err)
		}
		paths, names = append(paths, p), append(names, fmt.Sprintf("task-%d", i))
	}
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	heap := func() float64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return float64(m.HeapAlloc) / (1 << 20)
	}
	measure := func(b *testing.B, open func() (*Merger, func())) {
		for b.Loop() {
			base, h0 := fds(), heap()
			var peak atomic.Int64
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					select {
					case <-stop:
						return
					default:
					}
					if n := int64(fds()); n > peak.Load() {
						peak.Store(n)
					}
				}
			}()
			m, closeAll := open()
			if _, _, err := m.Next(); err != nil {
				b.Fatal(err)
			}
			openNow, h := fds()-base, heap()-h0
			if _, err := m.WriteTo(io.Discard); err != nil {
				b.Fatal(err)
			}
			close(stop)
			<-done
			closeAll()
			b.ReportMetric(float64(openNow), "open-files")
			b.ReportMetric(float64(peak.Load())-float64(base), "peak-open-files")
			b.ReportMetric(h, "heap-MiB")
		}
	}
	b.Run("OnePass", func(b *testing.B) {
		measure(b, func() (*Merger, func()) {
			var files []*os.File
			readers := make([]io.Reader, len(paths))
			for i, p := range paths {
				f, err := os.Open(p)
				if err != nil {
					b.Fatal(err)
				}
				files = append(files, f)
				readers[i] = f
			}
			return NewNamedMerger(readers, names), func() {
				for _, f := range files {
					f.Close()
				}
			}
		})
	})
	b.Run("FanIn256", func(b *testing.B) {
		tmp := b.TempDir()
		measure(b, func() (*Merger, func()) {
			fm, err := MergeFiles(paths, names, MergeOptions{Dir: tmp})
			if err != nil {
				b.Fatal(err)
			}
			return fm.Merger, func() { fm.Close() }
		})
	})
}
