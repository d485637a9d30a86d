package extsort

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// randomLines makes n `<key>\t<value>\n` lines with many repeated keys; the
// value records the line's input position so stability can be checked.
func randomLines(n, keys int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, 2))
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%q\t[%d,%q]\n", fmt.Sprintf("k%d", rng.IntN(keys)), i, strings.Repeat("v", rng.IntN(40)))
	}
	return out
}

func key(l string) string { k, _, _ := strings.Cut(l, "\t"); return k }

// stableSorted is the reference: the standard library's stable sort.
func stableSorted(lines []string) string {
	s := slices.Clone(lines)
	slices.SortStableFunc(s, func(a, b string) int { return strings.Compare(key(a), key(b)) })
	return strings.Join(s, "")
}

func TestSort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		lines    []string
		memory   int
		wantRuns bool
	}{
		{"empty", nil, 0, false},
		{"one", []string{"\"a\"\t1\n"}, 0, false},
		{"in memory", randomLines(5000, 50, 1), 0, false},
		{"spills", randomLines(5000, 50, 2), 4096, true},
		{"spills every line", randomLines(300, 7, 3), 1, true},
		{"all equal keys, spilled", randomLines(2000, 1, 4), 1000, true},
		{"distinct keys, spilled", randomLines(3000, 1<<30, 5), 10000, true},
		{"long value", []string{"\"b\"\t" + strings.Repeat("x", 600<<10) + "\n", "\"a\"\t1\n"}, 1000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var out bytes.Buffer
			in := strings.Join(tt.lines, "")
			st, err := Sort(&out, iotest.HalfReader(strings.NewReader(in)), "mapper output", Options{Dir: dir, Memory: tt.memory})
			if err != nil {
				t.Fatal(err)
			}
			if want := stableSorted(tt.lines); out.String() != want {
				t.Fatalf("output differs from a stable sort (%d vs %d bytes)", out.Len(), len(want))
			}
			if st.Lines != int64(len(tt.lines)) || st.Bytes != int64(len(in)) || (st.Runs > 0) != tt.wantRuns {
				t.Errorf("stats = %+v, want %d lines, %d bytes, spilled=%v", st, len(tt.lines), len(in), tt.wantRuns)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("%d run files left in %s", len(left), dir)
			}
		})
	}
}

func TestSortMissingFinalNewline(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if _, err := Sort(&out, strings.NewReader("\"b\"\t2\n\"a\"\t1"), "x", Options{}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "\"a\"\t1\n\"b\"\t2\n" {
		t.Errorf("got %q", out.String())
	}
}

func TestSortBadLine(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	_, err := Sort(&out, strings.NewReader("\"a\"\t1\n\"b\"\t2\nno tab here\n"), "task X output", Options{Dir: t.TempDir()})
	var le *LineError
	if !errors.As(err, &le) || le.Line != 3 || !strings.Contains(err.Error(), "task X output line 3") || !strings.Contains(err.Error(), "no tab here") {
		t.Fatalf("err = %v, want a LineError for line 3 naming the input", err)
	}
}

func TestSortRunDirMissing(t *testing.T) {
	t.Parallel()
	_, err := Sort(io.Discard, strings.NewReader(strings.Join(randomLines(100, 3, 6), "")), "x", Options{Dir: "/nonexistent/dir", Memory: 10})
	if err == nil || !strings.Contains(err.Error(), "spill sorted run") {
		t.Fatalf("err = %v, want a spill error", err)
	}
}

func TestMerge(t *testing.T) {
	t.Parallel()
	// Split random lines round-robin into sorted inputs; a stable merge of
	// them equals a stable sort of the concatenation in input order.
	for _, k := range []int{0, 1, 2, 5, 17} {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			t.Parallel()
			parts := make([][]string, k)
			var concat []string
			for i := range k {
				parts[i] = randomLines(200*i, 20, uint64(i+10))
			}
			readers := make([]io.Reader, k)
			for i, p := range parts {
				concat = append(concat, p...)
				readers[i] = iotest.OneByteReader(strings.NewReader(stableSorted(p)))
			}
			var out bytes.Buffer
			n, err := NewMerger(readers...).WriteTo(&out)
			if err != nil {
				t.Fatal(err)
			}
			if want := stableSorted(concat); out.String() != want || n != int64(len(want)) {
				t.Fatalf("merge differs from a stable sort of the inputs (%d vs %d bytes)", out.Len(), len(want))
			}
		})
	}
}

func TestMergeNext(t *testing.T) {
	t.Parallel()
	m := NewMerger(strings.NewReader("\"a\"\t1\n\"c\"\t3"), strings.NewReader("\"a\"\t2\n\"b\"\t9\n"))
	var got []string
	for {
		line, kl, err := m.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(line[:kl])+"="+strings.TrimSuffix(string(line[kl+1:]), "\n"))
	}
	if want := `"a"=1 "a"=2 "b"=9 "c"=3`; strings.Join(got, " ") != want {
		t.Errorf("got %q, want %q", strings.Join(got, " "), want)
	}
	if _, _, err := m.Next(); err != io.EOF {
		t.Errorf("after the end: %v", err)
	}
}

func TestMergeErrors(t *testing.T) {
	t.Parallel()
	_, err := NewNamedMerger([]io.Reader{strings.NewReader("\"a\"\t1\n"), strings.NewReader("\"b\"\t1\n\"a\"\t2\n")}, []string{"task A", "task B"}).WriteTo(io.Discard)
	var oe *OrderError
	if !errors.As(err, &oe) || oe.Input != "task B" || oe.Line != 2 {
		t.Errorf("unsorted input: err = %v, want an OrderError for task B line 2", err)
	}
	_, err = NewNamedMerger([]io.Reader{strings.NewReader("\"a\"\t1\nbroken\n")}, []string{"task C"}).WriteTo(io.Discard)
	var le *LineError
	if !errors.As(err, &le) || le.Input != "task C" || le.Line != 2 {
		t.Errorf("bad line: err = %v, want a LineError for task C line 2", err)
	}
	boom := errors.New("network down")
	_, err = NewMerger(io.MultiReader(strings.NewReader("\"a\"\t1\n"), iotest.ErrReader(boom))).WriteTo(io.Discard)
	if !errors.Is(err, boom) {
		t.Errorf("read error: err = %v, want it wrapped", err)
	}
}

func BenchmarkSort(b *testing.B) {
	in := []byte(strings.Join(randomLines(200000, 100000, 7), ""))
	for _, mem := range []int{DefaultMemory, 1 << 20} {
		b.Run(fmt.Sprintf("mem=%d", mem), func(b *testing.B) {
			dir := b.TempDir()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if _, err := Sort(io.Discard, bytes.NewReader(in), "x", Options{Dir: dir, Memory: mem}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMerge(b *testing.B) {
	var parts [][]byte
	total := 0
	for i := range 8 {
		p := []byte(stableSorted(randomLines(50000, 100000, uint64(i))))
		parts = append(parts, p)
		total += len(p)
	}
	b.SetBytes(int64(total))
	for b.Loop() {
		rs := make([]io.Reader, len(parts))
		for i, p := range parts {
			rs[i] = bytes.NewReader(p)
		}
		if _, err := NewMerger(rs...).WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
