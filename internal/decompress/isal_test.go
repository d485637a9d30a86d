//go:build cgo && isal

package decompress

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"testing"
	"testing/iotest"

	kgzip "github.com/klauspost/compress/gzip"
)

func init() {
	// A build with the isal tag must have the library: a silent fallback
	// would leave the ISA-L path untested.
	if ok, why := ISAL(); !ok {
		panic("built with -tags isal but ISA-L cannot be loaded: " + why)
	}
	openers = append(openers, &Opener{gzip: GzipISAL})
}

func TestNewOpener(t *testing.T) {
	t.Parallel()
	tests := []struct {
		want, got GzipDecoder
	}{
		{GzipAuto, GzipISAL},
		{"", GzipISAL},
		{GzipISAL, GzipISAL},
		{GzipGo, GzipGo},
	}
	for _, tt := range tests {
		o, err := NewOpener(tt.want)
		if err != nil || o.Gzip() != tt.got {
			t.Errorf("NewOpener(%q) = %v, %v; want %s", tt.want, o.Gzip(), err, tt.got)
		}
	}
	if _, err := NewOpener("zlib"); err == nil {
		t.Error("NewOpener(zlib) succeeded; want an error naming the choices")
	}
}

// gzipHeaderFlags builds a member with every optional header field (FEXTRA,
// FNAME, FCOMMENT and FHCRC, which Go's writer never sets) around data.
func gzipHeaderFlags(t testing.TB, data []byte) []byte {
	t.Helper()
	var deflated bytes.Buffer
	zw, _ := kgzip.NewWriterLevel(&deflated, 6)
	zw.Write(data)
	zw.Close()
	body := deflated.Bytes()[10 : deflated.Len()-8] // raw deflate of data
	hdr := []byte{0x1f, 0x8b, 8, 0x02 | 0x04 | 0x08 | 0x10, 0, 0, 0, 0, 0, 3}
	hdr = append(hdr, 5, 0, 'x', 'y', 2, 0, 'z')
	hdr = append(hdr, "name.log\x00"...)
	hdr = append(hdr, "a comment\x00"...)
	hdr = binary.LittleEndian.AppendUint16(hdr, uint16(crc32.ChecksumIEEE(hdr)))
	out := append(hdr, body...)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(data))
	return binary.LittleEndian.AppendUint32(out, uint32(len(data)))
}

// readAllWith reads everything through reads of size n.
func readAllWith(r io.Reader, n int) ([]byte, error) {
	var out []byte
	buf := make([]byte, n)
	for {
		m, err := r.Read(buf)
		out = append(out, buf[:m]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// decodeBoth decodes in with klauspost and ISA-L through the package's
// opener, and fails t unless they agree: the same bytes when both succeed,
// a CorruptError from both otherwise.
func decodeBoth(t *testing.T, in []byte, src func([]byte) io.Reader, readSize int) (out []byte, corrupt bool) {
	t.Helper()
	dec := func(o *Opener) ([]byte, error) {
		r, err := o.OpenFormat("k.gz", Gzip, src(in))
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return readAllWith(r, readSize)
	}
	want, werr := dec(&Opener{gzip: GzipGo})
	got, gerr := dec(&Opener{gzip: GzipISAL})
	var ce *CorruptError
	switch {
	case werr == nil && gerr == nil:
		if !bytes.Equal(got, want) {
			t.Fatalf("isa-l decoded %d bytes, klauspost %d; they differ", len(got), len(want))
		}
		return got, false
	case werr != nil && gerr != nil:
		if !errors.As(gerr, &ce) || !errors.As(werr, &ce) {
			t.Fatalf("errors are not both CorruptErrors: isa-l %v; klauspost %v", gerr, werr)
		}
		return nil, true
	}
	t.Fatalf("decoders disagree: isa-l %d bytes, %v; klauspost %d bytes, %v", len(got), gerr, len(want), werr)
	return nil, false
}

func TestISALMatchesGo(t *testing.T) {
	t.Parallel()
	data := sample(4000, 11)
	sys := compress(t, Gzip, data)
	var fast bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&fast, gzip.BestSpeed)
	zw.Write(data)
	zw.Close()
	var stored bytes.Buffer
	zw, _ = gzip.NewWriterLevel(&stored, gzip.NoCompression)
	zw.Write(data[:70000])
	zw.Close()
	var empty bytes.Buffer
	zw = gzip.NewWriter(&empty)
	zw.Close()
	badCRC := bytes.Clone(sys)
	badCRC[len(badCRC)-6] ^= 1
	badSize := bytes.Clone(sys)
	badSize[len(badSize)-2] ^= 1
	three := append(append(bytes.Clone(sys), empty.Bytes()...), fast.Bytes()...)

	inputs := []struct {
		name    string
		in      []byte
		corrupt bool
	}{
		{"gzip(1)", sys, false},
		{"best speed", fast.Bytes(), false},
		{"stored blocks", stored.Bytes(), false},
		{"empty member", empty.Bytes(), false},
		{"three members, one empty", three, false},
		{"all header fields", gzipHeaderFlags(t, data[:50000]), false},
		{"crc mismatch", badCRC, true},
		{"length mismatch", badSize, true},
		{"flipped", flip(sys), true},
		{"truncated in the trailer", sys[:len(sys)-3], true},
		{"truncated in the header", sys[:5], true},
		{"empty file", nil, true},
		{"trailing garbage", append(bytes.Clone(sys), "junk"...), true},
		{"trailing zeros", append(bytes.Clone(sys), 0, 0, 0, 0), true},
		{"not gzip", []byte("plain text\n"), true},
		{"deflate method 7", []byte{0x1f, 0x8b, 7, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3}, true},
	}
	sources := map[string]func([]byte) io.Reader{
		"whole":    func(b []byte) io.Reader { return bytes.NewReader(b) },
		"one byte": func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
		"halves":   func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
	}
	for _, in := range inputs {
		for sname, src := range sources {
			for _, size := range []int{1, 4093, 1 << 20} {
				if size == 1 && len(in.in) > 100000 && sname != "whole" {
					continue // a byte at a time both ways is slow under -race
				}
				t.Run(in.name+"/"+sname, func(t *testing.T) {
					t.Parallel()
					_, corrupt := decodeBoth(t, in.in, src, size)
					if corrupt != in.corrupt {
						t.Errorf("corrupt = %v, want %v", corrupt, in.corrupt)
					}
				})
			}
		}
	}
}

// TestISALTruncatedEverywhere cuts a two-member stream at every offset of
// its headers and trailers and at strides through the data: each cut is
// corrupt for both decoders, or (at the member boundary) the first member.
func TestISALTruncatedEverywhere(t *testing.T) {
	t.Parallel()
	a, b := compress(t, Gzip, sample(300, 12)), compress(t, Gzip, sample(200, 13))
	in := append(bytes.Clone(a), b...)
	for cut := 0; cut < len(in); cut++ {
		near := cut < 32 || (cut > len(a)-32 && cut < len(a)+32) || cut > len(in)-32
		if !near && cut%97 != 0 {
			continue
		}
		_, corrupt := decodeBoth(t, in[:cut], func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }, 1<<16)
		if corrupt != (cut != len(a)) && cut != 0 {
			t.Fatalf("cut at %d of %d (member boundary %d): corrupt = %v", cut, len(in), len(a), corrupt)
		}
	}
}

func TestISALReadAfterClose(t *testing.T) {
	t.Parallel()
	r, err := newISALReader(bytes.NewReader(compress(t, Gzip, []byte("x\n"))))
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := r.Read(make([]byte, 8)); err == nil {
		t.Fatal("read after close succeeded")
	}
}

// FuzzISALMatchesGo: on any input, ISA-L and klauspost agree on the bytes
// or both report corruption.
func FuzzISALMatchesGo(f *testing.F) {
	f.Add(compress(f, Gzip, sample(5, 1)))
	f.Add(gzipHeaderFlags(f, sample(3, 2)))
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		decodeBoth(t, in, func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }, 1<<12)
	})
}

// stall returns some bytes, then nothing and no error forever.
type stall struct{ b []byte }

func (s *stall) Read(p []byte) (int, error) {
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

func TestISALSourceWithoutProgress(t *testing.T) {
	t.Parallel()
	comp := compress(t, Gzip, sample(2000, 14))
	_, corrupt := decodeBoth(t, comp[:len(comp)/2], func(b []byte) io.Reader { return &stall{b: b} }, 1<<16)
	if !corrupt {
		t.Fatal("a stalled source decoded without error")
	}
}
