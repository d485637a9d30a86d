// Package records is the framed format in which the worker streams a mapper
// task's input records into the job container, with its Go encoder and
// decoder. Job helpers in other languages (the Python af_helper) implement
// the decoder from this description.
//
// # Format
//
// The stream is a sequence of newline-terminated lines of two kinds:
//
//   - A file marker starts each input file. It is the byte 0x1E (ASCII
//     record separator, RS) followed by a JSON object and '\n':
//
//     \x1e{"key":"saved_session/Firefox/.../x.log.<uuid>.gz","dims":["saved_session","Firefox",...]}\n
//
//     "key" is the S3 key of the file; "dims" are the file's dimension
//     values in the order of the telemetry schema (telemetry-server's
//     `dims` argument). Unknown fields may be added later; decoders ignore
//     them.
//
//   - A data line is one line of the decompressed file, verbatim:
//     `<document id>\t<json>\n`. The helper splits it at the first tab.
//
// A data line never starts with 0x1E and always contains a tab: the encoder
// drops (and counts, with its line number) any input line that would break
// either rule, so a decoder tells the two kinds apart by the first byte
// alone. JSON text cannot start with 0x1E either, which is why RS was chosen.
// That keeps a Python decoder at full speed with plain iteration:
//
//	with open(path, "rb", buffering=1 << 20) as f:
//	    for line in f:
//	        if line[0] == 0x1E:
//	            marker = json.loads(line[1:])
//	        else:
//	            doc_id, _, doc = line.rstrip(b"\n").partition(b"\t")
//
// The last line of a file that lacks its newline gets one from the encoder.
// Lines longer than the writer's maximum (64 MiB by default) are bad lines,
// skipped up to the next newline. An empty line is a bad line (no tab).
//
// Reducer tasks do not use the markers: their input is the merged, sorted
// `<json key>\t<json value>\n` lines of the mappers' outputs (see
// internal/extsort).
package records

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Marker is the first byte of a file marker line.
const Marker = 0x1E

// DefaultMaxLine is the longest input line, in bytes without the newline,
// that the encoder passes through.
const DefaultMaxLine = 64 << 20

// bufSize is the read and write buffer size: large enough that nearly every
// line is handled inside the buffer without copying.
const bufSize = 1 << 20

// Bad line reasons reported to CopyLines's onBad callback.
const (
	ReasonNoTab   = "no tab between document id and JSON"
	ReasonMarker  = "line starts with the 0x1E marker byte"
	ReasonTooLong = "line longer than the maximum line length"
)

// FileHeader is the JSON body of a file marker.
type FileHeader struct {
	Key  string   `json:"key"`
	Dims []string `json:"dims"`
}

// Writer encodes the framed stream. It buffers; call Flush when done.
type Writer struct {
	w       *bufio.Writer
	br      *bufio.Reader
	maxLine int
	long    []byte // reused accumulator for lines longer than the read buffer
}

// NewWriter returns a Writer with the default maximum line length.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, bufSize), maxLine: DefaultMaxLine}
}

// Reset discards unflushed data and makes w write to dst, keeping its
// buffers: a worker streaming many files can reuse one Writer per input slot
// instead of allocating 2 MiB of buffers per file.
func (w *Writer) Reset(dst io.Writer) {
	w.w.Reset(dst)
	if w.br != nil {
		w.br.Reset(nil) // let the previous file's reader go
	}
	if cap(w.long) > bufSize {
		w.long = nil // one huge line should not pin its buffer forever
	}
}

// SetMaxLine changes the maximum line length (bytes, without the newline).
func (w *Writer) SetMaxLine(n int) {
	if n < 1 {
		n = 1
	}
	w.maxLine = n
}

// BeginFile writes the marker that starts the file with this S3 key and
// dimension values.
func (w *Writer) BeginFile(key string, dims []string) error {
	if dims == nil {
		dims = []string{}
	}
	b, err := json.Marshal(FileHeader{Key: key, Dims: dims})
	if err != nil {
		return fmt.Errorf("encode file marker for %s: %w", key, err)
	}
	if err := w.w.WriteByte(Marker); err != nil {
		return fmt.Errorf("write file marker: %w", err)
	}
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("write file marker: %w", err)
	}
	if err := w.w.WriteByte('\n'); err != nil {
		return fmt.Errorf("write file marker: %w", err)
	}
	return nil
}

// CopyLines copies the lines of r (a decompressed input file) as data lines.
// Bad lines are skipped and reported to onBad (which may be nil) with their
// 1-based line number. It returns the number of lines read (good and bad),
// the number of bad lines and the number of bytes read from r. An error
// reading r is returned wrapped as is, so callers can tell corrupt input
// (the reader's error) from a failed write (wrapped with "write records").
func (w *Writer) CopyLines(r io.Reader, onBad func(lineNo int64, reason string)) (lines, badLines, nbytes int64, err error) {
	if w.br == nil {
		w.br = bufio.NewReaderSize(r, bufSize)
	} else {
		w.br.Reset(r)
	}
	br := w.br
	bad := func(reason string) {
		badLines++
		if onBad != nil {
			onBad(lines, reason)
		}
	}
	for {
		line, rerr := br.ReadSlice('\n')
		if rerr == bufio.ErrBufferFull {
			lines++
			l, n, lerr := w.longLine(line)
			nbytes += n
			switch {
			case lerr == errTooLong:
				bad(ReasonTooLong)
			case lerr != nil:
				return lines, badLines, nbytes, lerr
			default:
				if reason := check(l); reason != "" {
					bad(reason)
				} else if werr := w.writeLine(l); werr != nil {
					return lines, badLines, nbytes, werr
				}
			}
			continue
		}
		if rerr != nil && rerr != io.EOF {
			// A partial line before a read error (corrupt input) is not
			// passed on: it may be cut anywhere.
			return lines, badLines, nbytes + int64(len(line)), rerr
		}
		if len(line) > 0 {
			lines++
			nbytes += int64(len(line))
			if len(line)-1 > w.maxLine || (line[len(line)-1] != '\n' && len(line) > w.maxLine) {
				bad(ReasonTooLong)
			} else if reason := check(line); reason != "" {
				bad(reason)
			} else if werr := w.writeLine(line); werr != nil {
				return lines, badLines, nbytes, werr
			}
		}
		if rerr == io.EOF {
			return lines, badLines, nbytes, nil
		}
	}
}

var errTooLong = errors.New("line too long")

// longLine gathers a line that did not fit the read buffer into w.long. If
// it passes maxLine it discards the rest up to the next newline and returns
// errTooLong. n counts the bytes consumed.
func (w *Writer) longLine(first []byte) (line []byte, n int64, err error) {
	w.long = append(w.long[:0], first...)
	n = int64(len(first))
	tooLong := false
	for {
		chunk, rerr := w.br.ReadSlice('\n')
		n += int64(len(chunk))
		if !tooLong {
			content := len(w.long) + len(chunk)
			if rerr == nil {
				content-- // the newline
			}
			if content > w.maxLine {
				tooLong = true
				w.long = w.long[:0]
			} else {
				w.long = append(w.long, chunk...)
			}
		}
		switch rerr {
		case nil, io.EOF:
			if tooLong {
				return nil, n, errTooLong
			}
			return w.long, n, nil
		case bufio.ErrBufferFull:
			continue
		default:
			return nil, n, rerr
		}
	}
}

// check returns why line is not a valid data line, or "".
func check(line []byte) string {
	if line[0] == Marker {
		return ReasonMarker
	}
	if bytes.IndexByte(line, '\t') < 0 {
		return ReasonNoTab
	}
	return ""
}

func (w *Writer) writeLine(line []byte) error {
	if _, err := w.w.Write(line); err != nil {
		return fmt.Errorf("write records: %w", err)
	}
	if line[len(line)-1] != '\n' {
		if err := w.w.WriteByte('\n'); err != nil {
			return fmt.Errorf("write records: %w", err)
		}
	}
	return nil
}

// Flush writes any buffered data to the underlying writer.
func (w *Writer) Flush() error {
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("write records: %w", err)
	}
	return nil
}

// Record is one decoded element of the stream. For a file marker File is
// set; for a data line ID and JSON are set. Slices are only valid until the
// next call to Next.
type Record struct {
	File *FileHeader
	ID   []byte
	JSON []byte
	// Line is the 1-based line number in the framed stream, for messages.
	Line int64
}

// Reader decodes the framed stream.
type Reader struct {
	br   *bufio.Reader
	long []byte
	line int64
	max  int
}

// NewReader returns a Reader accepting lines up to DefaultMaxLine bytes.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, bufSize), max: DefaultMaxLine}
}

// Next returns the next record, or io.EOF at the end of the stream. A
// malformed line (which a conforming encoder never writes) is an error
// naming its line number.
func (r *Reader) Next() (Record, error) {
	line, err := r.readLine()
	if err != nil {
		return Record{}, err
	}
	r.line++
	if len(line) == 0 {
		return Record{}, fmt.Errorf("records line %d: empty line", r.line)
	}
	if line[0] == Marker {
		var h FileHeader
		if err := json.Unmarshal(line[1:], &h); err != nil {
			return Record{}, fmt.Errorf("records line %d: bad file marker: %w", r.line, err)
		}
		return Record{File: &h, Line: r.line}, nil
	}
	i := bytes.IndexByte(line, '\t')
	if i < 0 {
		return Record{}, fmt.Errorf("records line %d: no tab between document id and JSON", r.line)
	}
	return Record{ID: line[:i], JSON: line[i+1:], Line: r.line}, nil
}

// readLine returns the next line without its newline.
func (r *Reader) readLine() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		r.long = append(r.long[:0], line...)
		for err == bufio.ErrBufferFull {
			if len(r.long) > r.max+1 {
				return nil, fmt.Errorf("records line %d: longer than %d bytes", r.line+1, r.max)
			}
			line, err = r.br.ReadSlice('\n')
			r.long = append(r.long, line...)
		}
		line = r.long
	}
	switch {
	case err == io.EOF && len(line) == 0:
		return nil, io.EOF
	case err != nil && err != io.EOF:
		return nil, fmt.Errorf("read records: %w", err)
	}
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	return line, nil
}
