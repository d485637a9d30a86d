//go:build cgo && isal

package decompress

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <isa-l/igzip_lib.h>

// ISA-L is loaded with dlopen rather than linked, so a worker built with it
// still starts on a host without libisal2 and falls back to Go's decoder.
static void (*af_isal_init)(struct inflate_state *);
static void (*af_isal_reset)(struct inflate_state *);
static int (*af_isal_inflate)(struct inflate_state *);

static const char *af_isal_load(void) {
	void *h = dlopen("libisal.so.2", RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		return dlerror();
	}
	af_isal_init = (void (*)(struct inflate_state *))dlsym(h, "isal_inflate_init");
	af_isal_reset = (void (*)(struct inflate_state *))dlsym(h, "isal_inflate_reset");
	af_isal_inflate = (int (*)(struct inflate_state *))dlsym(h, "isal_inflate");
	if (!af_isal_init || !af_isal_reset || !af_isal_inflate) {
		return "libisal.so.2 lacks isal_inflate_init, isal_inflate_reset or isal_inflate";
	}
	return NULL;
}

static struct inflate_state *af_isal_new(void) {
	struct inflate_state *s = malloc(sizeof(struct inflate_state));
	if (s != NULL) {
		af_isal_init(s);
	}
	return s;
}

// af_isal_member readies the state for a member's deflate data: the Go side
// has parsed the gzip header (ISA-L 2.30 miscomputes the header's CRC-16
// when a header reaches it over several calls), ISA-L checks the trailer.
static void af_isal_member(struct inflate_state *s) {
	af_isal_reset(s);
	s->crc_flag = ISAL_GZIP_NO_HDR_VER;
}

// af_isal_step runs one isal_inflate over the given buffers. The state
// keeps no pointer to them afterwards: they are Go memory.
static int af_isal_step(struct inflate_state *s, unsigned char *in, unsigned int inlen,
		unsigned char *out, unsigned int outlen,
		unsigned int *consumed, unsigned int *produced, int *finished) {
	s->next_in = in;
	s->avail_in = inlen;
	s->next_out = out;
	s->avail_out = outlen;
	int r = af_isal_inflate(s);
	*consumed = inlen - s->avail_in;
	*produced = outlen - s->avail_out;
	*finished = s->block_state == ISAL_BLOCK_FINISH;
	s->next_in = NULL;
	s->next_out = NULL;
	return r;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"unsafe"
)

// BuiltWithISAL reports whether this binary can use ISA-L (built with cgo
// and -tags isal). Tests use it to build the commands they start the same
// way.
const BuiltWithISAL = true

func loadISAL() (bool, string) {
	if msg := C.af_isal_load(); msg != nil {
		return false, C.GoString(msg) + " (install Debian's libisal2)"
	}
	return true, ""
}

// isalInBuf is the compressed read-ahead per stream, as for klauspost's
// bufio.Reader.
const isalInBuf = 256 << 10

// isalBufs keeps the input buffers across files: a worker opens hundreds
// per task. (The inflate state is C memory, freed at Close, never pooled:
// sync.Pool drops what it holds without telling anyone.)
var isalBufs = sync.Pool{New: func() any { b := make([]byte, isalInBuf); return &b }}

// isalReader decodes gzip (any number of members, as gzip(1) and the
// standard library read them) with ISA-L. It checks each member's CRC-32
// and length like the Go decoders do, and the header's CRC-16 when present.
type isalReader struct {
	src     io.Reader
	st      *C.struct_inflate_state
	in      []byte
	off, n  int
	srcEOF  bool
	header  bool // the next input byte starts a member's header
	members int
	err     error
}

func newISALReader(src io.Reader) (*isalReader, error) {
	if ok, why := ISAL(); !ok {
		return nil, errors.New("isa-l: " + why)
	}
	st := C.af_isal_new()
	if st == nil {
		return nil, errors.New("isa-l: out of memory for the inflate state")
	}
	return &isalReader{src: src, st: st, in: *isalBufs.Get().(*[]byte), header: true}, nil
}

// fill moves the unread input to the front and reads from src until at
// least want bytes are unread (want <= len(z.in)) or src ends.
func (z *isalReader) fill(want int) error {
	if z.off > 0 {
		z.n = copy(z.in, z.in[z.off:z.n])
		z.off = 0
	}
	for empty := 0; z.n < want && !z.srcEOF; {
		m, err := z.src.Read(z.in[z.n:])
		z.n += m
		if err == io.EOF {
			z.srcEOF = true
		} else if err != nil {
			return err
		}
		// A source that keeps returning nothing would spin here forever;
		// bufio.Reader gives up the same way.
		if m == 0 {
			if empty++; empty >= 100 {
				return io.ErrNoProgress
			}
		}
	}
	return nil
}

// take consumes k header bytes (k <= len(z.in)), adding them to crc.
func (z *isalReader) take(k int, crc *uint32) ([]byte, error) {
	if z.n-z.off < k {
		if err := z.fill(k); err != nil {
			return nil, err
		}
		if z.n-z.off < k {
			return nil, io.ErrUnexpectedEOF
		}
	}
	b := z.in[z.off : z.off+k]
	z.off += k
	*crc = crc32.Update(*crc, crc32.IEEETable, b)
	return b, nil
}

// skipString consumes a zero-terminated header field of any length.
func (z *isalReader) skipString(crc *uint32) error {
	for {
		if z.off == z.n {
			if err := z.fill(1); err != nil {
				return err
			}
			if z.off == z.n {
				return io.ErrUnexpectedEOF
			}
		}
		i := z.off
		for i < z.n && z.in[i] != 0 {
			i++
		}
		done := i < z.n
		if done {
			i++
		}
		*crc = crc32.Update(*crc, crc32.IEEETable, z.in[z.off:i])
		z.off = i
		if done {
			return nil
		}
	}
}

var errGzipHeader = errors.New("invalid gzip header")

// readHeader parses a member's header (RFC 1952) as the standard library
// does: magic, deflate method, then the optional fields the flags name.
func (z *isalReader) readHeader() error {
	var crc uint32
	h, err := z.take(10, &crc)
	if err != nil {
		return err
	}
	if h[0] != 0x1f || h[1] != 0x8b || h[2] != 8 {
		return errGzipHeader
	}
	flags := h[3]
	if flags&0x04 != 0 { // FEXTRA
		l, err := z.take(2, &crc)
		if err != nil {
			return err
		}
		for left := int(l[0]) | int(l[1])<<8; left > 0; {
			k := min(left, len(z.in))
			if _, err := z.take(k, &crc); err != nil {
				return err
			}
			left -= k
		}
	}
	for _, f := range []byte{0x08, 0x10} { // FNAME, FCOMMENT
		if flags&f != 0 {
			if err := z.skipString(&crc); err != nil {
				return err
			}
		}
	}
	if flags&0x02 != 0 { // FHCRC
		sum := crc
		b, err := z.take(2, &crc)
		if err != nil {
			return err
		}
		if uint16(b[0])|uint16(b[1])<<8 != uint16(sum) {
			return errors.New("gzip header checksum error")
		}
	}
	return nil
}

func (z *isalReader) Read(p []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if z.st == nil {
		return 0, errors.New("isa-l: read after close")
	}
	for {
		if z.header {
			if err := z.fill(1); err != nil {
				z.err = err
				return 0, err
			}
			if z.off == z.n && z.members > 0 {
				z.err = io.EOF
				return 0, io.EOF
			}
			if err := z.readHeader(); err != nil {
				z.err = err
				return 0, err
			}
			C.af_isal_member(z.st)
			z.header = false
		}
		if z.off == z.n && !z.srcEOF {
			if err := z.fill(1); err != nil {
				z.err = err
				return 0, err
			}
			continue
		}
		var consumed, produced C.uint
		var finished C.int
		var in *C.uchar
		if z.off < z.n {
			in = (*C.uchar)(unsafe.Pointer(&z.in[z.off]))
		}
		out := p[:min(len(p), 1<<30)]
		r := C.af_isal_step(z.st, in, C.uint(z.n-z.off), (*C.uchar)(unsafe.Pointer(&out[0])), C.uint(len(out)), &consumed, &produced, &finished)
		z.off += int(consumed)
		if r < 0 {
			z.err = isalError(int(r))
			return int(produced), z.err
		}
		if finished != 0 {
			z.header = true
			z.members++
		}
		if produced > 0 {
			return int(produced), nil
		}
		if consumed == 0 && !z.header {
			if z.srcEOF && z.off == z.n {
				z.err = io.ErrUnexpectedEOF
				return 0, z.err
			}
			if z.n-z.off == len(z.in) {
				z.err = errors.New("isa-l: no progress with a full input buffer")
				return 0, z.err
			}
			if err := z.fill(z.n - z.off + 1); err != nil {
				z.err = err
				return 0, err
			}
		}
	}
}

func (z *isalReader) Close() error {
	if z.st != nil {
		C.free(unsafe.Pointer(z.st))
		z.st = nil
		in := z.in
		z.in, z.off, z.n = nil, 0, 0
		isalBufs.Put(&in)
	}
	return nil
}

// isalError names isal_inflate's error codes as the Go decoders would.
func isalError(code int) error {
	switch code {
	case C.ISAL_INVALID_BLOCK:
		return errors.New("isa-l: invalid deflate block")
	case C.ISAL_INVALID_SYMBOL:
		return errors.New("isa-l: invalid deflate symbol")
	case C.ISAL_INVALID_LOOKBACK:
		return errors.New("isa-l: invalid back-reference distance")
	case C.ISAL_INVALID_WRAPPER:
		return errors.New("isa-l: invalid gzip header")
	case C.ISAL_UNSUPPORTED_METHOD:
		return errors.New("isa-l: unsupported compression method")
	case C.ISAL_INCORRECT_CHECKSUM:
		return errors.New("isa-l: checksum error (CRC-32 or length)")
	}
	return fmt.Errorf("isa-l: inflate error %d", code)
}
