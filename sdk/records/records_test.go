package records

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

type badLine struct {
	no     int64
	reason string
}

func TestCopyLines(t *testing.T) {
	t.Parallel()
	long := "id\t" + strings.Repeat("x", 3*bufSize) // longer than the read buffer
	tests := []struct {
		name      string
		in        string
		maxLine   int
		wantOut   string
		wantLines int64
		wantBad   []badLine
	}{
		{name: "plain", in: "a\t{}\nb\t{\"x\":1}\n", wantOut: "a\t{}\nb\t{\"x\":1}\n", wantLines: 2},
		{name: "no final newline", in: "a\t{}\nb\t{}", wantOut: "a\t{}\nb\t{}\n", wantLines: 2},
		{name: "empty input", in: "", wantOut: "", wantLines: 0},
		{name: "empty line is bad", in: "a\t1\n\nb\t2\n", wantOut: "a\t1\nb\t2\n", wantLines: 3, wantBad: []badLine{{2, ReasonNoTab}}},
		{name: "no tab", in: "nodoc\na\t1\n", wantOut: "a\t1\n", wantLines: 2, wantBad: []badLine{{1, ReasonNoTab}}},
		{name: "marker byte", in: "a\t1\n\x1e{\"key\":\"evil\"}\t\n", wantOut: "a\t1\n", wantLines: 2, wantBad: []badLine{{2, ReasonMarker}}},
		{name: "crlf kept verbatim", in: "a\t1\r\n", wantOut: "a\t1\r\n", wantLines: 1},
		{name: "long line passes", in: long + "\nb\t2\n", wantOut: long + "\nb\t2\n", wantLines: 2},
		{name: "long line without newline", in: "b\t2\n" + long, wantOut: "b\t2\n" + long + "\n", wantLines: 2},
		{name: "too long in buffer", in: "a\t12345\nb\t1\n", maxLine: 4, wantOut: "b\t1\n", wantLines: 2, wantBad: []badLine{{1, ReasonTooLong}}},
		{name: "exactly max", in: "a\t12\n", maxLine: 4, wantOut: "a\t12\n", wantLines: 1},
		{name: "too long beyond buffer", in: long + "\nb\t2\n", maxLine: bufSize + 10, wantOut: "b\t2\n", wantLines: 2, wantBad: []badLine{{1, ReasonTooLong}}},
		{name: "too long at eof", in: "b\t2\n" + long, maxLine: bufSize + 10, wantOut: "b\t2\n", wantLines: 2, wantBad: []badLine{{2, ReasonTooLong}}},
		{name: "long line without tab", in: strings.Repeat("y", 2*bufSize) + "\n", wantOut: "", wantLines: 1, wantBad: []badLine{{1, ReasonNoTab}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			w := NewWriter(&out)
			if tt.maxLine > 0 {
				w.SetMaxLine(tt.maxLine)
			}
			var bad []badLine
			lines, nbad, n, err := w.CopyLines(iotest.HalfReader(strings.NewReader(tt.in)), func(no int64, reason string) {
				bad = append(bad, badLine{no, reason})
			})
			if err != nil {
				t.Fatalf("CopyLines: %v", err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.wantOut {
				t.Errorf("output = %.80q, want %.80q", out.String(), tt.wantOut)
			}
			if lines != tt.wantLines || nbad != int64(len(tt.wantBad)) || n != int64(len(tt.in)) {
				t.Errorf("lines, bad, bytes = %d, %d, %d; want %d, %d, %d", lines, nbad, n, tt.wantLines, len(tt.wantBad), len(tt.in))
			}
			if len(bad) != len(tt.wantBad) {
				t.Fatalf("bad lines = %v, want %v", bad, tt.wantBad)
			}
			for i := range bad {
				if bad[i] != tt.wantBad[i] {
					t.Errorf("bad line %d = %v, want %v", i, bad[i], tt.wantBad[i])
				}
			}
		})
	}
}

func TestCopyLinesReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("corrupt gzip data at offset 7")
	w := NewWriter(io.Discard)
	r := io.MultiReader(strings.NewReader("a\t1\nb\t"), iotest.ErrReader(boom))
	lines, _, _, err := w.CopyLines(r, nil)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the reader's error", err)
	}
	if lines != 1 {
		t.Errorf("lines = %d, want 1 complete line before the error", lines)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	files := []struct {
		key  string
		dims []string
		body string
	}{
		{"saved_session/Firefox/nightly/22.0a1/1.2.v2.log.x.gz", []string{"saved_session", "Firefox", "nightly", "22.0a1", "1", "2"}, "d1\t{\"a\":1}\nd2\t{\"b\":\"\\t\"}\n"},
		{"weird \"key\"\n", nil, ""},
		{"k3", []string{"é"}, "d3\t[1,2]"},
	}
	for _, f := range files {
		if err := w.BeginFile(f.key, f.dims); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := w.CopyLines(strings.NewReader(f.body), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&buf)
	var got []string
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.File != nil {
			got = append(got, "F "+rec.File.Key+" "+strings.Join(rec.File.Dims, ","))
		} else {
			got = append(got, "D "+string(rec.ID)+" "+string(rec.JSON))
		}
	}
	want := []string{
		"F saved_session/Firefox/nightly/22.0a1/1.2.v2.log.x.gz saved_session,Firefox,nightly,22.0a1,1,2",
		"D d1 {\"a\":1}", "D d2 {\"b\":\"\\t\"}",
		"F weird \"key\"\n ",
		"F k3 é", "D d3 [1,2]",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("decoded\n%q\nwant\n%q", got, want)
	}
}

func TestWriterReset(t *testing.T) {
	t.Parallel()
	var a, b, c bytes.Buffer
	w := NewWriter(&a)
	// The first file ends with a line longer than the read buffer, so the
	// writer grows its long-line accumulator; Reset must not keep it.
	long := "big\t{\"x\":\"" + strings.Repeat("y", bufSize+bufSize/2) + "\"}\n"
	for i, dst := range []*bytes.Buffer{&a, &b} {
		w.Reset(dst)
		if err := w.BeginFile(fmt.Sprint("k", i), nil); err != nil {
			t.Fatal(err)
		}
		in := fmt.Sprintf("d%d\t{}\n", i)
		if i == 0 {
			in += long
		}
		if _, _, _, err := w.CopyLines(strings.NewReader(in), nil); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if i == 0 && cap(w.long) <= bufSize {
			t.Fatalf("the long line did not use the accumulator (cap %d)", cap(w.long))
		}
	}
	if w.long != nil {
		t.Errorf("Reset kept a %d-byte long-line buffer", cap(w.long))
	}
	if a.String() != "\x1e{\"key\":\"k0\",\"dims\":[]}\nd0\t{}\n"+long || b.String() != "\x1e{\"key\":\"k1\",\"dims\":[]}\nd1\t{}\n" {
		t.Errorf("after Reset: a=%.80q b=%q", a.String(), b.String())
	}
	// Unflushed data does not survive a Reset.
	if err := w.BeginFile("lost", nil); err != nil {
		t.Fatal(err)
	}
	w.Reset(&c)
	if err := w.Flush(); err != nil || c.Len() != 0 || strings.Contains(b.String(), "lost") {
		t.Errorf("unflushed data survived Reset: c=%q b=%q err=%v", c.String(), b.String(), err)
	}
}

func TestReaderErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"bad marker", "\x1e{nope\n", "records line 1: bad file marker"},
		{"no tab", "a\t1\nxyz\n", "records line 2: no tab"},
		{"empty", "\n", "records line 1: empty line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := NewReader(strings.NewReader(tt.in))
			var err error
			for err == nil {
				_, err = r.Next()
			}
			if err == io.EOF || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// FuzzReader checks the decoder never panics and reports every line either
// as a record or as an error.
func FuzzReader(f *testing.F) {
	f.Add([]byte("\x1e{\"key\":\"k\",\"dims\":[\"a\"]}\nid\t{}\n"))
	f.Add([]byte("a\tb\n\n\x1e\n"))
	f.Add([]byte("\x1e{\"key\":1}\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in))
		for i := 0; i <= len(in)+1; i++ {
			rec, err := r.Next()
			if err != nil {
				return
			}
			if rec.File == nil && bytes.IndexByte(rec.ID, '\t') >= 0 {
				t.Fatalf("id %q contains a tab", rec.ID)
			}
		}
		t.Fatalf("more records than lines in %q", in)
	})
}

// FuzzRoundTrip encodes arbitrary input and checks the decoder gets back
// exactly the valid lines, in order, and that lines+bad add up.
func FuzzRoundTrip(f *testing.F) {
	f.Add("key", []byte("a\t1\nb\t2"), 0)
	f.Add("k\n\x1e", []byte("\x1ex\t\n\nno tab\nok\t{}\n"), 3)
	f.Add("", []byte("a\tbbbbbbbb\nc\td\n"), 4)
	f.Fuzz(func(t *testing.T, key string, body []byte, maxLine int) {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		if maxLine > 0 {
			w.SetMaxLine(maxLine % 64)
		}
		if err := w.BeginFile(key, []string{key}); err != nil {
			t.Fatal(err)
		}
		var badNos []int64
		lines, nbad, n, err := w.CopyLines(bytes.NewReader(body), func(no int64, _ string) { badNos = append(badNos, no) })
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if n != int64(len(body)) || nbad != int64(len(badNos)) {
			t.Fatalf("bytes %d (want %d), bad %d vs callbacks %d", n, len(body), nbad, len(badNos))
		}
		// The expected valid lines, computed the slow way.
		var want [][]byte
		all := bytes.SplitAfter(body, []byte("\n"))
		if len(all) > 0 && len(all[len(all)-1]) == 0 {
			all = all[:len(all)-1]
		}
		if int64(len(all)) != lines {
			t.Fatalf("lines = %d, want %d", lines, len(all))
		}
		max := DefaultMaxLine
		if maxLine > 0 {
			max = maxLine % 64
			if max < 1 {
				max = 1
			}
		}
		for _, l := range all {
			l = bytes.TrimSuffix(l, []byte("\n"))
			if len(l) == 0 || l[0] == Marker || bytes.IndexByte(l, '\t') < 0 || len(l) > max {
				continue
			}
			want = append(want, l)
		}
		if int64(len(want)) != lines-nbad {
			t.Fatalf("good lines = %d, want %d", lines-nbad, len(want))
		}
		r := NewReader(&buf)
		rec, err := r.Next()
		// S3 keys are UTF-8; invalid bytes come back as JSON encodes them (U+FFFD).
		kj, _ := json.Marshal(key)
		var wantKey string
		json.Unmarshal(kj, &wantKey)
		if err != nil || rec.File == nil || rec.File.Key != wantKey {
			t.Fatalf("marker = %+v, %v; want key %q", rec.File, err, key)
		}
		for i, l := range want {
			rec, err := r.Next()
			if err != nil {
				t.Fatalf("line %d: %v", i, err)
			}
			got := append(append(append([]byte{}, rec.ID...), '\t'), rec.JSON...)
			if rec.File != nil || !bytes.Equal(got, l) {
				t.Fatalf("line %d = %q, want %q", i, got, l)
			}
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("after last line: %v, want EOF", err)
		}
	})
}

func BenchmarkCopyLines(b *testing.B) {
	line := "0123456789abcdef0123456789abcdef\t{\"info\":{\"OS\":\"WINNT\",\"appName\":\"Firefox\"},\"simpleMeasurements\":{\"uptime\":123,\"main\":45}," + strings.Repeat("\"h\":[1,2,3,4,5,6,7,8],", 40) + "\"end\":1}\n"
	body := []byte(strings.Repeat(line, 20000))
	b.SetBytes(int64(len(body)))
	w := NewWriter(io.Discard)
	for b.Loop() {
		if _, _, _, err := w.CopyLines(bytes.NewReader(body), nil); err != nil {
			b.Fatal(err)
		}
	}
}
