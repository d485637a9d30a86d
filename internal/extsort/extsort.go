// Package extsort sorts and merges the key/value lines that job helpers
// write: `<json key>\t<json value>\n`, ordered by the bytes of the key (up
// to the first tab). A mapper's output is sorted with Sort, which holds at
// most a memory bound of lines and spills sorted runs to temporary files past
// it; the reducer's inputs, each already sorted, are merged with MergeFiles,
// which opens at most a fan-in of them at once (in passes past it), or in
// one pass with NewMerger. All are stable: lines with equal keys keep their
// input order (and, across merged inputs, the order of the inputs), so a
// reducer sees a key's values in a deterministic order.
//
// Keys compare as raw bytes. The JSON encoding of a key is deterministic for
// the helpers (json.dumps, encoding/json), so equal keys have equal bytes and
// group together; the order is not the JSON value's natural order (numbers
// sort as text), which grouping does not need.
package extsort

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// DefaultMemory is the default bound on the bytes of lines Sort holds in
// memory before it spills a run to disk.
const DefaultMemory = 64 << 20

// entryOverhead approximates the memory of one line's index entry, so that
// many tiny lines also count against the bound.
const entryOverhead = 32

const bufSize = 256 << 10

// Options configure Sort.
type Options struct {
	// Dir holds the spilled runs (a dir of the worker's own, never the
	// job's scratch dir); "" means os.TempDir().
	Dir string
	// Memory bounds the bytes of lines held in memory; 0 means
	// DefaultMemory.
	Memory int
}

// Stats describe a finished sort.
type Stats struct {
	Lines int64 // lines sorted
	Bytes int64 // bytes written
	Runs  int   // runs spilled to disk (0: sorted in memory)
}

// LineError reports a line that is not `<key>\t<value>`.
type LineError struct {
	Input string // which input, for messages
	Line  int64  // 1-based
	Text  []byte // the start of the line
}

func (e *LineError) Error() string {
	return fmt.Sprintf("%s line %d: no tab between key and value: %.60q", e.Input, e.Line, e.Text)
}

// OrderError reports a merge input that is not sorted.
type OrderError struct {
	Input string
	Line  int64
}

func (e *OrderError) Error() string {
	return fmt.Sprintf("%s line %d: key sorts before the previous line's; the input is not sorted", e.Input, e.Line)
}

// span locates a line in the arena: its start, the end of its key and the
// end of the line (with '\n'). pfx holds the key's first 8 bytes, big-endian
// and zero-padded, which orders the same way as the bytes and settles most
// comparisons without touching the arena.
type span struct {
	start, key, end int
	pfx             uint64
}

func prefix(key []byte) uint64 {
	var b [8]byte
	copy(b[:], key)
	return binary.BigEndian.Uint64(b[:])
}

// Sort reads the lines of r, named name in errors, and writes them sorted by
// key to w. A last line without a newline gets one.
func Sort(w io.Writer, r io.Reader, name string, opt Options) (Stats, error) {
	mem := opt.Memory
	if mem <= 0 {
		mem = DefaultMemory
	}
	var (
		st    Stats
		arena []byte
		spans []span
		runs  []string
	)
	defer func() {
		for _, p := range runs {
			os.Remove(p)
		}
	}()
	sortSpans := func() {
		// Spans are appended in input order, so ordering equal keys by
		// offset makes the (faster) unstable sort stable.
		slices.SortFunc(spans, func(a, b span) int {
			if a.pfx != b.pfx {
				if a.pfx < b.pfx {
					return -1
				}
				return 1
			}
			if c := bytes.Compare(arena[a.start:a.key], arena[b.start:b.key]); c != 0 {
				return c
			}
			return a.start - b.start
		})
	}
	spill := func() error {
		sortSpans()
		f, err := os.CreateTemp(opt.Dir, "af-sort-run-*")
		if err != nil {
			return fmt.Errorf("spill sorted run: %w", err)
		}
		runs = append(runs, f.Name())
		bw := bufio.NewWriterSize(f, bufSize)
		for _, s := range spans {
			bw.Write(arena[s.start:s.end])
		}
		err = bw.Flush()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("spill sorted run: %w", err)
		}
		arena, spans = arena[:0], spans[:0]
		return nil
	}

	lr := newLineReader(r, name)
	for {
		line, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, err
		}
		st.Lines++
		start := len(arena)
		arena = append(arena, line...)
		if arena[len(arena)-1] != '\n' {
			arena = append(arena, '\n')
		}
		spans = append(spans, span{start, start + lr.keyLen, len(arena), prefix(line[:lr.keyLen])})
		if len(arena)+entryOverhead*len(spans) >= mem && len(spans) > 0 {
			if err := spill(); err != nil {
				return st, err
			}
		}
	}
	bw := bufio.NewWriterSize(w, bufSize)
	cw := &countWriter{w: bw}
	if len(runs) == 0 {
		sortSpans()
		for _, s := range spans {
			cw.Write(arena[s.start:s.end])
		}
	} else {
		if len(spans) > 0 {
			if err := spill(); err != nil {
				return st, err
			}
		}
		arena, spans = nil, nil
		files := make([]io.Reader, len(runs))
		for i, p := range runs {
			f, err := os.Open(p)
			if err != nil {
				return st, fmt.Errorf("read sorted run: %w", err)
			}
			defer f.Close()
			files[i] = f
		}
		if _, err := NewMerger(files...).WriteTo(cw); err != nil {
			return st, err
		}
	}
	st.Runs = len(runs)
	if err := bw.Flush(); err != nil {
		return st, fmt.Errorf("write sorted output: %w", err)
	}
	if cw.err != nil {
		return st, fmt.Errorf("write sorted output: %w", cw.err)
	}
	st.Bytes = cw.n
	return st, nil
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

// lineReader yields lines (with their newline, if any) and the length of
// their key. Slices are valid until the next call.
type lineReader struct {
	br     *bufio.Reader
	name   string
	line   int64
	keyLen int
	long   []byte
}

func newLineReader(r io.Reader, name string) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, bufSize), name: name}
}

func (l *lineReader) next() ([]byte, error) {
	line, err := l.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		l.long = append(l.long[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = l.br.ReadSlice('\n')
			l.long = append(l.long, line...)
		}
		line = l.long
	}
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("read %s: %w", l.name, err)
	}
	if len(line) == 0 {
		return nil, io.EOF
	}
	l.line++
	i := bytes.IndexByte(line, '\t')
	if i < 0 {
		return nil, &LineError{Input: l.name, Line: l.line, Text: bytes.TrimSuffix(line, []byte("\n"))}
	}
	l.keyLen = i
	return line, nil
}

// Merger merges sorted inputs into one sorted stream of lines.
type Merger struct {
	h       mergeHeap
	started bool
	err     error
}

type source struct {
	lr   *lineReader
	idx  int
	line []byte
	prev []byte
}

func (s *source) key() []byte { return s.line[:s.lr.keyLen] }

// mergeHeap is a min-heap of sources by (key, input index), kept by hand:
// container/heap's interface calls were a fifth of a merge's time.
type mergeHeap []*source

func lessSource(a, b *source) bool {
	if c := bytes.Compare(a.key(), b.key()); c != 0 {
		return c < 0
	}
	return a.idx < b.idx
}

// down restores the heap below i after h[i] grew.
func (h mergeHeap) down(i int) {
	n := len(h)
	for {
		j := 2*i + 1
		if j >= n {
			return
		}
		if r := j + 1; r < n && lessSource(h[r], h[j]) {
			j = r
		}
		if !lessSource(h[j], h[i]) {
			return
		}
		h[i], h[j] = h[j], h[i]
		i = j
	}
}

func (h mergeHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

// popTop removes the smallest source.
func (h *mergeHeap) popTop() {
	old := *h
	n := len(old) - 1
	old[0] = old[n]
	old[n] = nil
	*h = old[:n]
	h.down(0)
}

// NewMerger returns a merge of the sorted inputs. Inputs are named "input
// N" (0-based) in errors; use NewNamedMerger for better names.
func NewMerger(inputs ...io.Reader) *Merger {
	names := make([]string, len(inputs))
	for i := range inputs {
		names[i] = fmt.Sprintf("input %d", i)
	}
	return NewNamedMerger(inputs, names)
}

// NewNamedMerger is NewMerger with a name per input for error messages.
// It holds every input open with a 256 KiB buffer each; MergeFiles bounds
// both for many inputs.
func NewNamedMerger(inputs []io.Reader, names []string) *Merger {
	return newMerger(inputs, names, bufSize)
}

func newMerger(inputs []io.Reader, names []string, buf int) *Merger {
	m := &Merger{}
	for i, r := range inputs {
		m.h = append(m.h, &source{lr: &lineReader{br: bufio.NewReaderSize(r, buf), name: names[i]}, idx: i})
	}
	return m
}

// advance reads s's next line, checking the input stays sorted. It returns
// false at the end of s.
func (m *Merger) advance(s *source) (bool, error) {
	if s.line != nil {
		s.prev = append(s.prev[:0], s.key()...)
	}
	line, err := s.lr.next()
	if err == io.EOF {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	s.line = line
	if s.prev != nil && bytes.Compare(s.key(), s.prev) < 0 {
		return false, &OrderError{Input: s.lr.name, Line: s.lr.line}
	}
	return true, nil
}

func (m *Merger) start() error {
	live := m.h[:0]
	for _, s := range m.h {
		ok, err := m.advance(s)
		if err != nil {
			return err
		}
		if ok {
			live = append(live, s)
		}
	}
	m.h = live
	m.h.init()
	return nil
}

// Next returns the next line in key order (with its newline if the input
// had one) and the length of its key, or io.EOF. The line is valid until
// the following call.
func (m *Merger) Next() (line []byte, keyLen int, err error) {
	if m.err != nil {
		return nil, 0, m.err
	}
	if !m.started {
		m.started = true
		if m.err = m.start(); m.err != nil {
			return nil, 0, m.err
		}
	} else if len(m.h) > 0 {
		// Advance the source whose line was returned last time.
		s := m.h[0]
		ok, err := m.advance(s)
		if err != nil {
			m.err = err
			return nil, 0, err
		}
		if ok {
			m.h.down(0)
		} else {
			m.h.popTop()
		}
	}
	if len(m.h) == 0 {
		m.err = io.EOF
		return nil, 0, io.EOF
	}
	s := m.h[0]
	return s.line, s.lr.keyLen, nil
}

// WriteTo writes the merged lines to w, each ending in a newline.
func (m *Merger) WriteTo(w io.Writer) (int64, error) {
	var n int64
	nl := []byte{'\n'}
	for {
		line, _, err := m.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		k, err := w.Write(line)
		n += int64(k)
		if err == nil && line[len(line)-1] != '\n' {
			k, err = w.Write(nl)
			n += int64(k)
		}
		if err != nil {
			return n, fmt.Errorf("write merged output: %w", err)
		}
	}
}

// DefaultFanIn is the most inputs MergeFiles opens at once: with a 64 KiB
// read buffer per input a pass holds 16 MiB of buffers and 257 files.
const DefaultFanIn = 256

// mergeBufSize is the read buffer per input of MergeFiles; smaller than
// Sort's because a merge holds FanIn of them.
const mergeBufSize = 64 << 10

// MergeOptions configure MergeFiles.
type MergeOptions struct {
	// Dir holds the intermediate files of a multi-pass merge (a dir of the
	// worker's own); "" means os.TempDir().
	Dir string
	// FanIn bounds the inputs open at once; 0 means DefaultFanIn. Values
	// below 2 are raised to 2.
	FanIn int
}

// FileMerger is a merge of sorted files that holds at most FanIn of them
// open. Close it to close the files and remove its intermediate files.
type FileMerger struct {
	*Merger
	files []*os.File
	temps []string
}

// Close closes the open inputs and removes the intermediate files.
func (f *FileMerger) Close() error {
	var first error
	for _, fl := range f.files {
		if err := fl.Close(); err != nil && first == nil {
			first = err
		}
	}
	for _, p := range f.temps {
		os.Remove(p)
	}
	f.files, f.temps = nil, nil
	return first
}

// MergeFiles merges the sorted files at paths (named by names in errors)
// with bounded memory and open files: while more than FanIn inputs remain,
// it merges runs of FanIn consecutive inputs into intermediate files in
// opt.Dir, then returns the merge of what is left. Merging consecutive
// inputs keeps NewNamedMerger's contract: lines with equal keys come out in
// the order of their inputs. Every line is checked (LineError, OrderError
// name the original input) in the first pass that reads it.
func MergeFiles(paths, names []string, opt MergeOptions) (*FileMerger, error) {
	if len(names) != len(paths) {
		return nil, fmt.Errorf("merge files: %d names for %d paths", len(names), len(paths))
	}
	fan := opt.FanIn
	if fan <= 0 {
		fan = DefaultFanIn
	}
	fan = max(fan, 2)
	fm := &FileMerger{}
	cur, curNames := paths, names
	for pass := 1; len(cur) > fan; pass++ {
		var next, nextNames, made []string
		for lo := 0; lo < len(cur); lo += fan {
			hi := min(lo+fan, len(cur))
			if hi-lo == 1 {
				// A lone tail needs no pass of its own.
				next, nextNames = append(next, cur[lo]), append(nextNames, curNames[lo])
				continue
			}
			p, err := mergeRun(cur[lo:hi], curNames[lo:hi], opt.Dir)
			if p != "" {
				made = append(made, p)
			}
			if err != nil {
				fm.temps = append(fm.temps, made...)
				fm.Close()
				return nil, err
			}
			next = append(next, p)
			nextNames = append(nextNames, fmt.Sprintf("merge pass %d of %s..%s", pass, curNames[lo], curNames[hi-1]))
		}
		// The previous pass's intermediates are merged into this one's,
		// but for a lone tail carried over as it is.
		for _, p := range fm.temps {
			if len(next) > 0 && next[len(next)-1] == p {
				made = append(made, p)
				continue
			}
			os.Remove(p)
		}
		fm.temps = made
		cur, curNames = next, nextNames
	}
	readers, err := fm.open(cur)
	if err != nil {
		fm.Close()
		return nil, err
	}
	fm.Merger = newMerger(readers, curNames, mergeBufSize)
	return fm, nil
}

func (fm *FileMerger) open(paths []string) ([]io.Reader, error) {
	readers := make([]io.Reader, len(paths))
	for i, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("open merge input: %w", err)
		}
		fm.files = append(fm.files, f)
		readers[i] = f
	}
	return readers, nil
}

// mergeRun merges paths into a new file in dir and returns its path (also
// on error, when the file was created, so the caller removes it).
func mergeRun(paths, names []string, dir string) (string, error) {
	in := &FileMerger{}
	defer in.Close()
	readers, err := in.open(paths)
	if err != nil {
		return "", err
	}
	out, err := os.CreateTemp(dir, "af-merge-pass-*")
	if err != nil {
		return "", fmt.Errorf("merge pass: %w", err)
	}
	bw := bufio.NewWriterSize(out, bufSize)
	_, err = newMerger(readers, names, mergeBufSize).WriteTo(bw)
	if err == nil {
		if err = bw.Flush(); err != nil {
			err = fmt.Errorf("merge pass: %w", err)
		}
	}
	if cerr := out.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("merge pass: %w", cerr)
	}
	return out.Name(), err
}
