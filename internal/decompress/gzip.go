package decompress

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"sync"

	kgzip "github.com/klauspost/compress/gzip"
)

// GzipDecoder names an implementation of gzip decoding. Gzip is most of a
// mapper's CPU (BENCHMARKS.md), so the worker lets the operator choose.
type GzipDecoder string

// The gzip decoders.
const (
	// GzipAuto is ISA-L when this binary was built with it and the host has
	// libisal.so.2, else GzipGo.
	GzipAuto GzipDecoder = "auto"
	// GzipGo is klauspost/compress/gzip: pure Go, about 1.2x the standard
	// library.
	GzipGo GzipDecoder = "go"
	// GzipISAL is Intel's ISA-L (igzip), loaded from libisal.so.2 at run
	// time: about 2x klauspost on telemetry JSON. It needs a build with cgo
	// and `-tags isal` (and libisal-dev to build), and Debian's libisal2 on
	// the host.
	GzipISAL GzipDecoder = "isal"
)

// ParseGzipDecoder reads a decoder name as given on a command line.
func ParseGzipDecoder(s string) (GzipDecoder, error) {
	switch d := GzipDecoder(strings.ToLower(strings.TrimSpace(s))); d {
	case GzipAuto, GzipGo, GzipISAL:
		return d, nil
	case "":
		return GzipAuto, nil
	}
	return "", errUnknownGzip(s)
}

func errUnknownGzip(name string) error {
	return fmt.Errorf("gzip decoder %q: want auto, isal or go", name)
}

// ISAL reports whether ISA-L can be used in this process and, when not,
// why (for a log line that says how to get it).
func ISAL() (ok bool, why string) {
	isalOnce.Do(func() { isalOK, isalWhy = loadISAL() })
	return isalOK, isalWhy
}

var (
	isalOnce sync.Once
	isalOK   bool
	isalWhy  string
)

// Opener opens compressed streams with a chosen gzip decoder; the other
// formats have one implementation each. The zero Opener uses GzipGo.
type Opener struct {
	gzip GzipDecoder
}

// NewOpener resolves want (GzipAuto picks ISA-L when it can be loaded).
// Asking for GzipISAL where it cannot be loaded is an error saying why.
func NewOpener(want GzipDecoder) (*Opener, error) {
	switch want {
	case GzipGo:
		return &Opener{gzip: GzipGo}, nil
	case GzipAuto, "":
		if ok, _ := ISAL(); ok {
			return &Opener{gzip: GzipISAL}, nil
		}
		return &Opener{gzip: GzipGo}, nil
	case GzipISAL:
		if ok, why := ISAL(); !ok {
			return nil, fmt.Errorf("gzip decoder isal is not available: %s; use --gzip go or auto", why)
		}
		return &Opener{gzip: GzipISAL}, nil
	}
	return nil, errUnknownGzip(string(want))
}

// Gzip is the decoder the opener uses for gzip.
func (o *Opener) Gzip() GzipDecoder {
	if o == nil || o.gzip == "" {
		return GzipGo
	}
	return o.gzip
}

// openGzip returns the gzip stage of a reader: the decoder and its Close.
func (o *Opener) openGzip(src io.Reader) (io.Reader, func() error, error) {
	if o.Gzip() == GzipISAL {
		zr, err := newISALReader(src)
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	// klauspost's gzip is a drop-in for the standard library's at about
	// 1.2x its speed (see BenchmarkDecompress). A reader that is also a
	// ByteReader avoids a second buffer inside flate.
	zr, err := kgzip.NewReader(bufio.NewReaderSize(src, 256<<10))
	if err != nil {
		return nil, nil, err
	}
	return zr, zr.Close, nil
}
