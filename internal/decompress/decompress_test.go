package decompress

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	dbzip2 "github.com/dsnet/compress/bzip2"
	kgzip "github.com/klauspost/compress/gzip"
)

// sample returns telemetry-like lines: an id, a tab, a JSON document.
func sample(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	oses := []string{"WINNT", "Darwin", "Linux", "Android"}
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "%016x%016x\t{\"ver\":2,\"info\":{\"OS\":%q,\"appName\":\"Firefox\",\"reason\":\"saved-session\",\"revision\":%d},\"simpleMeasurements\":{\"uptime\":%d,\"main\":%d,\"firstPaint\":%d},\"histograms\":{\"A\":[%d,%d,%d,0,0,1]}}\n",
			rng.Uint64(), uint64(i), oses[rng.IntN(len(oses))], rng.IntN(1e6), rng.IntN(1e5), rng.IntN(1e4), rng.IntN(1e4), rng.IntN(9), rng.IntN(99), rng.IntN(999))
	}
	return b.Bytes()
}

// compress runs the system tool that makes files of format f.
func compress(t testing.TB, f Format, data []byte) []byte {
	t.Helper()
	var cmd *exec.Cmd
	switch f {
	case Plain:
		return data
	case Gzip:
		cmd = exec.Command("gzip", "-c")
	case XZ:
		cmd = exec.Command("xz", "-c", "-T1")
	case LZMA:
		cmd = exec.Command("xz", "--format=lzma", "-c")
	case Zstd:
		cmd = exec.Command("zstd", "-q", "-c")
	case Bzip2:
		cmd = exec.Command("bzip2", "-c")
	}
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v (the system compression tools are required)", cmd.Args, err)
	}
	return out
}

var allFormats = []Format{Plain, Gzip, XZ, LZMA, Zstd, Bzip2}

// openers are the gzip decoders this build has; every format-level test
// runs once per opener (the other formats read the same under each).
var openers = []*Opener{{gzip: GzipGo}}

// eachOpener runs f as a parallel subtest per opener for gzip, and once for
// the other formats.
func eachOpener(t *testing.T, format Format, f func(t *testing.T, o *Opener)) {
	for _, o := range openers {
		if format != Gzip && o != openers[0] {
			continue
		}
		t.Run(string(o.Gzip()), func(t *testing.T) {
			t.Parallel()
			f(t, o)
		})
	}
}

func TestFormatOf(t *testing.T) {
	t.Parallel()
	tests := map[string]Format{
		"a/b.log.x.gz": Gzip, "a.XZ": XZ, "b.lzma": LZMA, "c.zst": Zstd, "d.bz2": Bzip2,
		"e.log": Plain, "f": Plain, "g.gz.txt": Plain, "dir.gz/file": Plain,
	}
	for key, want := range tests {
		if got := FormatOf(key); got != want {
			t.Errorf("FormatOf(%q) = %s, want %s", key, got, want)
		}
	}
}

func TestRoundTripSystemTools(t *testing.T) {
	t.Parallel()
	data := sample(3000, 1)
	for _, f := range allFormats {
		t.Run(string(f), func(t *testing.T) {
			t.Parallel()
			comp := compress(t, f, data)
			eachOpener(t, f, func(t *testing.T, o *Opener) {
				r, err := o.OpenFormat("k."+string(f), f, iotest.OneByteReader(bytes.NewReader(comp)))
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				got, err := io.ReadAll(r)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("decoded %d bytes, want %d identical bytes", len(got), len(data))
				}
			})
		})
	}
}

func TestConcatenatedGzipMembers(t *testing.T) {
	t.Parallel()
	a, b := sample(10, 2), sample(10, 3)
	comp := append(compress(t, Gzip, a), compress(t, Gzip, b)...)
	eachOpener(t, Gzip, func(t *testing.T, o *Opener) {
		r, err := o.OpenFormat("x.gz", Gzip, bytes.NewReader(comp))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, append(a, b...)) {
			t.Fatalf("got %d bytes, err %v; want both members", len(got), err)
		}
	})
}

func TestCorrupt(t *testing.T) {
	t.Parallel()
	data := sample(2000, 4)
	for _, f := range allFormats[1:] {
		comp := compress(t, f, data)
		cases := map[string][]byte{
			"truncated": comp[:len(comp)*2/3],
			"flipped":   flip(comp),
			"empty":     {},
			"garbage":   []byte("this is not compressed at all, just text\n"),
		}
		for name, in := range cases {
			t.Run(string(f)+"/"+name, func(t *testing.T) {
				t.Parallel()
				eachOpener(t, f, func(t *testing.T, o *Opener) {
					key := "s/k.log." + string(f)
					r, err := o.OpenFormat(key, f, bytes.NewReader(in))
					if err == nil {
						_, err = io.Copy(io.Discard, r)
						r.Close()
					}
					var ce *CorruptError
					if !errors.As(err, &ce) {
						t.Fatalf("err = %v, want a CorruptError", err)
					}
					if ce.Key != key || ce.Format != f || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "corrupt "+string(f)+" data") {
						t.Errorf("error %q does not name the key and format", err)
					}
					if ce.Offset < 0 || ce.Offset > int64(len(in)) {
						t.Errorf("offset %d outside the %d-byte input", ce.Offset, len(in))
					}
				})
			})
		}
	}
}

// flip damages bytes in the middle of the compressed data.
func flip(b []byte) []byte {
	c := bytes.Clone(b)
	for i := len(c) / 2; i < len(c)/2+16 && i < len(c); i++ {
		c[i] ^= 0x5a
	}
	return c
}

func TestSourceErrorIsNotCorruption(t *testing.T) {
	t.Parallel()
	boom := errors.New("connection reset by peer")
	data := sample(3000, 5)
	for _, f := range allFormats {
		t.Run(string(f), func(t *testing.T) {
			t.Parallel()
			comp := compress(t, f, data)
			eachOpener(t, f, func(t *testing.T, o *Opener) {
				src := io.MultiReader(bytes.NewReader(comp[:len(comp)/2]), iotest.ErrReader(boom))
				r, err := o.OpenFormat("k."+string(f), f, src)
				if err == nil {
					_, err = io.Copy(io.Discard, r)
				}
				var ce *CorruptError
				if !errors.Is(err, boom) || errors.As(err, &ce) {
					t.Fatalf("err = %v, want the source's error and no CorruptError", err)
				}
			})
		})
	}
}

func TestRealTelemetryFiles(t *testing.T) {
	t.Parallel()
	want := map[string]int{"ss-ff-n-22.lzma": 1, "ss-ff-n-28.lzma": 4}
	for name, docs := range want {
		f, err := os.Open(filepath.Join("../../testdata/telemetry-pings", name))
		if err != nil {
			t.Fatal(err)
		}
		r, err := Open(name, f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
		if len(lines) != docs {
			t.Errorf("%s: %d lines, want %d", name, len(lines), docs)
		}
		for i, l := range lines {
			if id, doc, ok := strings.Cut(l, "\t"); !ok || len(id) < 32 || !strings.HasPrefix(doc, "{") {
				t.Errorf("%s line %d is not <id>\\t<json>: %.60q", name, i+1, l)
			}
		}
	}
}

// netBody hides bytes.Reader's extra methods, so every decoder reads the
// compressed data as it would an S3 response body: plain Read calls.
func netBody(c []byte) io.Reader { return struct{ io.Reader }{bytes.NewReader(c)} }

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDecompress measures each format's decoder in MB/s of
// uncompressed output, plus the standard library's gzip and dsnet's bzip2
// for comparison (bench/30-decompress.sh reports them).
func BenchmarkDecompress(b *testing.B) {
	data := sample(60000, 9)    // ~16 MB
	small := data[:len(data)/4] // the slow formats (xz, lzma, bzip2) get ~4 MB
	type dec func([]byte) (io.Reader, error)
	ours := func(f Format) dec {
		return func(c []byte) (io.Reader, error) { return OpenFormat("k", f, netBody(c)) }
	}
	cases := []struct {
		name string
		f    Format
		open dec
	}{
		{"plain", Plain, ours(Plain)},
		{"gz-klauspost", Gzip, ours(Gzip)},
		{"gz-isal", Gzip, func(c []byte) (io.Reader, error) {
			o, err := NewOpener(GzipISAL)
			if err != nil {
				return nil, err
			}
			return o.OpenFormat("k", Gzip, netBody(c))
		}},
		{"gz-klauspost-raw", Gzip, func(c []byte) (io.Reader, error) { return kgzip.NewReader(netBody(c)) }},
		{"gz-stdlib", Gzip, func(c []byte) (io.Reader, error) { return gzip.NewReader(netBody(c)) }},
		{"xz", XZ, ours(XZ)},
		{"lzma", LZMA, ours(LZMA)},
		{"zst", Zstd, ours(Zstd)},
		{"bz2-stdlib", Bzip2, ours(Bzip2)},
		{"bz2-dsnet", Bzip2, func(c []byte) (io.Reader, error) { return dbzip2.NewReader(netBody(c), nil) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if c.name == "gz-isal" && !BuiltWithISAL {
				b.Skip("built without ISA-L: run with -tags isal (make bench does)")
			}
			data := data
			if c.f == XZ || c.f == LZMA || c.f == Bzip2 {
				data = small
			}
			comp := compress(b, c.f, data)
			b.SetBytes(int64(len(data)))
			// Wall-clock MB/s suffers on a shared machine; MB per CPU
			// second (cpu-MB/s) is what the decoder costs.
			buf := make([]byte, 1<<20)
			c0, n := cpuTime(), 0
			for b.Loop() {
				n++
				r, err := c.open(comp)
				if err != nil {
					b.Fatal(err)
				}
				// Read as the worker does: large Read calls (records.CopyLines
				// reads through a 1 MiB buffer), no WriteTo shortcuts.
				got, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{r}, buf)
				if err != nil || got != int64(len(data)) {
					b.Fatalf("%d bytes, %v", got, err)
				}
			}
			if d := cpuTime() - c0; d > 0 {
				b.ReportMetric(float64(n*len(data))/d.Seconds()/1e6, "cpu-MB/s")
			}
		})
	}
}

// FuzzOpen feeds arbitrary bytes to every decoder: no panic, no hang, and
// any failure is a CorruptError naming the key.
func FuzzOpen(f *testing.F) {
	for i, fm := range allFormats {
		f.Add(uint8(i), compress(f, fm, sample(3, uint64(i))))
	}
	f.Add(uint8(1), []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		fm := allFormats[int(which)%len(allFormats)]
		key := "fuzz." + string(fm)
		r, err := OpenFormat(key, fm, bytes.NewReader(data))
		if err == nil {
			// Bound the output: decompression bombs are the worker's limit to enforce.
			_, err = io.Copy(io.Discard, io.LimitReader(r, 64<<20))
			r.Close()
		}
		if err == nil {
			return
		}
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Key != key {
			t.Fatalf("%s: err = %v, want a CorruptError for %s", fm, err, key)
		}
	})
}
