package runner

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

type write struct {
	stream int
	data   string
}

func TestLogLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		head, tail int64
		writes     []write
		out, err   string
		elided     int64
	}{
		{"under the head", 10, 5, []write{{0, "abc"}, {1, "de"}}, "abc", "de", 0},
		{"exactly head+tail", 3, 3, []write{{0, "abcdef"}}, "abcdef", "", 0},
		{"one big write", 3, 2, []write{{0, "abcdefghij"}}, "abcij", "\n[… 5 bytes elided …]\n", 5},
		{"small writes", 2, 3, []write{{0, "ab"}, {0, "cd"}, {0, "ef"}, {0, "gh"}, {0, "ij"}}, "abhij", "\n[… 5 bytes elided …]\n", 5},
		{"streams keep their tail", 1, 4, []write{{0, "a"}, {0, "xxxx"}, {1, "EE"}, {0, "oo"}}, "aoo", "\n[… 4 bytes elided …]\nEE", 4},
		{"no tail", 2, 0, []write{{0, "abcd"}, {1, "ef"}}, "ab", "\n[… 4 bytes elided …]\n", 4},
		{"unbounded", -1, -1, []write{{0, strings.Repeat("a", 100)}, {1, "b"}}, strings.Repeat("a", 100), "b", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			l := newLogLimit(&out, &errb, tc.head, tc.tail)
			var total int64
			for _, w := range tc.writes {
				n, err := l.writer(w.stream).Write([]byte(w.data))
				if n != len(w.data) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
				total += int64(len(w.data))
			}
			l.finish()
			if out.String() != tc.out || errb.String() != tc.err {
				t.Errorf("stdout %q stderr %q, want %q %q", out.String(), errb.String(), tc.out, tc.err)
			}
			gotTotal, elided, err := l.stats()
			if gotTotal != total || elided != tc.elided || err != nil {
				t.Errorf("stats %d %d %v, want %d %d nil", gotTotal, elided, err, total, tc.elided)
			}
		})
	}
}

type brokenWriter struct{ n int }

func (w *brokenWriter) Write(p []byte) (int, error) {
	w.n++
	return 0, errors.New("disk full")
}

// A broken log destination must not block or fail the container's output.
func TestLogLimitBrokenWriter(t *testing.T) {
	t.Parallel()
	w := &brokenWriter{}
	l := newLogLimit(w, w, 4, 4)
	for i := 0; i < 10; i++ {
		if n, err := l.writer(i % 2).Write([]byte("abc")); n != 3 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	l.finish()
	_, _, err := l.stats()
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("err %v", err)
	}
	if w.n != 1 {
		t.Errorf("the broken writer was called %d times, want once", w.n)
	}
}

// FuzzLogLimit checks, for one stream, that the log is exactly the head,
// a marker counting what is missing, and the tail of what was written.
func FuzzLogLimit(f *testing.F) {
	f.Add([]byte("hello world, this is a log"), uint8(3), uint8(4), uint8(5))
	f.Add([]byte("abc"), uint8(0), uint8(0), uint8(1))
	f.Add(bytes.Repeat([]byte("0123456789"), 50), uint8(17), uint8(33), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, head, tail, chunk uint8) {
		var out bytes.Buffer
		l := newLogLimit(&out, &out, int64(head), int64(tail))
		step := int(chunk) + 1
		for i := 0; i < len(data); i += step {
			l.writer(streamStdout).Write(data[i:min(i+step, len(data))])
		}
		l.finish()
		want := data
		if n := len(data); n > int(head)+int(tail) {
			elided := n - int(head) - int(tail)
			want = append(append(append([]byte{}, data[:head]...), fmt.Sprintf("\n[… %d bytes elided …]\n", elided)...), data[n-int(tail):]...)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Errorf("log %q, want %q", out.Bytes(), want)
		}
		if total, _, _ := l.stats(); total != int64(len(data)) {
			t.Errorf("total %d, want %d", total, len(data))
		}
	})
}
