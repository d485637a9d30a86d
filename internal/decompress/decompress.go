// Package decompress opens an input file's byte stream for reading its
// decompressed content, choosing the format by the S3 key's extension as the
// storage layout does: .gz, .xz, .lzma (legacy LZMA-alone), .zst, .bz2, or
// anything else as plain text.
//
// Everything streams: no format buffers a whole file, and the zstd decoder
// is limited to one goroutine and low memory so a worker can decode many
// files at once within a bounded footprint.
//
// Gzip, the common format, has two decoders (an Opener picks one):
// klauspost/compress in pure Go, and Intel's ISA-L, about 3x faster on
// telemetry JSON, in builds with cgo and -tags isal on hosts with
// libisal.so.2. Both read multi-member files and check every member's
// CRC-32 and length; a differential fuzzer holds them to the same output
// and the same verdict on corrupt input.
//
// Errors tell corrupt data apart from a failing source. Corrupt or truncated
// compressed data is a *CorruptError naming the key, the format and about
// where in the compressed stream it was found; an error from the source
// reader (a broken download) is returned wrapped, not as a CorruptError, so
// the worker retries downloads but counts corrupt files against the job's
// threshold.
package decompress

import (
	"bufio"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Format is a compression format.
type Format string

// The formats, named by their usual extension without the dot.
const (
	Plain Format = "plain"
	Gzip  Format = "gz"
	XZ    Format = "xz"
	LZMA  Format = "lzma"
	Zstd  Format = "zst"
	Bzip2 Format = "bz2"
)

// FormatOf returns the format of an object key by its extension.
func FormatOf(key string) Format {
	switch strings.ToLower(path.Ext(key)) {
	case ".gz", ".gzip":
		return Gzip
	case ".xz":
		return XZ
	case ".lzma":
		return LZMA
	case ".zst", ".zstd":
		return Zstd
	case ".bz2":
		return Bzip2
	}
	return Plain
}

// CorruptError reports compressed data that cannot be decoded.
type CorruptError struct {
	Key    string
	Format Format
	// Offset is how many compressed bytes had been read when the error was
	// found; decoders read ahead, so the damage is at or before it.
	Offset int64
	Err    error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s: corrupt %s data at compressed offset %d: %v", e.Key, e.Format, e.Offset, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// zstdMaxWindow bounds the memory one zstd stream may ask for; zstd's own
// command line tool refuses windows above 128 MiB without --long as well.
const zstdMaxWindow = 128 << 20

// Open returns a reader of r's decompressed content for the object key,
// gzip decoded in pure Go. Closing it releases the decoder, not r.
func Open(key string, r io.Reader) (io.ReadCloser, error) {
	return OpenFormat(key, FormatOf(key), r)
}

// OpenFormat is Open with the format given rather than read from the key
// (decompress: none in a job spec opens every file as Plain).
func OpenFormat(key string, f Format, r io.Reader) (io.ReadCloser, error) {
	var o *Opener
	return o.OpenFormat(key, f, r)
}

// OpenFormat is the package's OpenFormat with the opener's gzip decoder.
func (o *Opener) OpenFormat(key string, f Format, r io.Reader) (io.ReadCloser, error) {
	src := &source{r: r}
	d := &reader{key: key, format: f, src: src}
	var err error
	switch f {
	case Plain:
		d.r = src
	case Gzip:
		d.r, d.close, err = o.openGzip(src)
	case XZ:
		var xr *xz.Reader
		xr, err = xz.NewReader(bufio.NewReaderSize(src, 256<<10))
		d.r = xr
	case LZMA:
		var lr *lzma.Reader
		lr, err = lzma.NewReader(bufio.NewReaderSize(src, 256<<10))
		d.r = lr
	case Zstd:
		var zr *zstd.Decoder
		zr, err = zstd.NewReader(src,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err == nil {
			d.r = zr
			d.close = func() error { zr.Close(); return nil }
		}
	case Bzip2:
		d.r = bzip2.NewReader(bufio.NewReaderSize(src, 256<<10))
	default:
		return nil, fmt.Errorf("%s: unknown compression format %q", key, f)
	}
	if err != nil {
		return nil, d.wrap(err)
	}
	return d, nil
}

// source counts the compressed bytes and remembers the source's own error,
// so a decoder error can be told apart from a download error.
type source struct {
	r   io.Reader
	n   int64
	err error
}

func (s *source) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

type reader struct {
	key    string
	format Format
	src    *source
	r      io.Reader
	close  func() error
}

func (d *reader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err == io.EOF && d.format != Plain && d.src.n == 0 {
		// Some decoders (zstd) read an empty file as an empty stream; the
		// system tools call it truncated, and so do we.
		return n, &CorruptError{Key: d.key, Format: d.format, Err: errors.New("empty file")}
	}
	if err != nil && err != io.EOF {
		err = d.wrap(err)
	}
	return n, err
}

// wrap classifies a decoder error: the source's own failure, or corruption.
func (d *reader) wrap(err error) error {
	if d.src.err != nil && (errors.Is(err, d.src.err) || d.format != Plain) {
		return fmt.Errorf("%s: read: %w", d.key, d.src.err)
	}
	if d.format == Plain {
		return fmt.Errorf("%s: read: %w", d.key, err)
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // an empty stream where a header was due
	}
	return &CorruptError{Key: d.key, Format: d.format, Offset: d.src.n, Err: err}
}

func (d *reader) Close() error {
	if d.close != nil {
		return d.close()
	}
	return nil
}
