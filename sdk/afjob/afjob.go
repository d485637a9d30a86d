// Package afjob is the Go SDK for af MapReduce jobs. An analyst writes a
// main package that calls Main with the job's functions, builds it as a
// static binary (CGO_ENABLED=0 go build) and ships it in a FROM scratch
// image with an /etc/analysis-tools.yml saying `language: go` and
// `mapper: /job/<binary>`:
//
//	func main() {
//		afjob.Main(afjob.Job{
//			Map: func(id string, dims []string, doc []byte, ctx *afjob.Context) error {
//				os, ok := afjob.Field(doc, "info", "OS")
//				if !ok {
//					return ctx.Write("UNKNOWN", 1)
//				}
//				return ctx.Write(afjob.String(os), 1)
//			},
//			Reduce: func(key []byte, values [][]byte, ctx *afjob.Context) error {
//				var n int64
//				for _, v := range values {
//					i, err := afjob.Int(v)
//					if err != nil {
//						return err
//					}
//					n += i
//				}
//				return ctx.Write(afjob.String(key), n)
//			},
//		})
//	}
//
// The shape is telemetry-server's job API, as in the Python helper: Map sees
// each document (its id, the file's dimension values, the raw JSON); the
// optional Combine folds a key's values inside a mapper task; Reduce sees
// every value of one key. Keys and values travel as JSON.
//
// The worker starts the binary as `<binary> map|reduce` with AF_INPUT (a
// FIFO path or "-" for stdin) and AF_OUTPUT (the output file); see
// sdk/contract (the names) and internal/records (the framed format) for the
// contract.
package afjob

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/af-project/af/sdk/contract"
	"github.com/af-project/af/sdk/records"
)

// Job is an analyst's MapReduce job. Map and Reduce are required.
type Job struct {
	// Map is called for each input document. doc is only valid during the
	// call. Returning an error fails the task.
	Map func(id string, dims []string, doc []byte, ctx *Context) error
	// Combine, optional, folds the values of one key inside a mapper task
	// (and in the reducer, every CombineSize values): it calls ctx.Write
	// with the key and the folded value, which replaces the values.
	Combine func(key []byte, values [][]byte, ctx *Context) error
	// SetupReduce, optional, runs once before the first Reduce; it may set
	// the context's separators.
	SetupReduce func(ctx *Context) error
	// Reduce is called once per key, in key order, with all of its values
	// (raw JSON), valid only during the call. What it writes is the job's
	// result.
	Reduce func(key []byte, values [][]byte, ctx *Context) error
}

// CombineSize is how many values of a key pile up before Combine folds them
// (telemetry-server's Reducer.COMBINE_SIZE).
const CombineSize = 50

// maxKeys bounds a mapper's combine buffer: past it, everything is combined
// and written out, so memory stays bounded whatever the key space.
const maxKeys = 200_000

// Context is how job code writes output. In Map and Combine, Write emits a
// key/value pair (both JSON-encoded); in Reduce it writes a line of the
// job's result: key, FieldSeparator, value, RecordSeparator, with strings
// as they are and other values as JSON (telemetry-server's TextContext).
type Context struct {
	// FieldSeparator and RecordSeparator shape the reducer's output lines.
	// An empty FieldSeparator (the default) means a tab for Write and CSV
	// for WriteCSV; RecordSeparator defaults to a newline.
	FieldSeparator  string
	RecordSeparator string
	// File is the S3 key of the input file being mapped.
	File string

	w      *bufio.Writer
	reduce bool
	sink   func(key, value []byte) error // map: pair output or the combine buffer
	pairs  int64
}

// Write emits (in Map) or writes (in Reduce) a key and a value.
func (c *Context) Write(key, value any) error {
	if c.reduce {
		c.w.WriteString(text(key))
		if c.FieldSeparator == "" {
			c.w.WriteByte('\t')
		} else {
			c.w.WriteString(c.FieldSeparator)
		}
		c.w.WriteString(text(value))
		_, err := c.w.WriteString(c.RecordSeparator)
		return err
	}
	k, err := encode(key)
	if err != nil {
		return fmt.Errorf("encode key %v: %w", key, err)
	}
	v, err := encode(value)
	if err != nil {
		return fmt.Errorf("encode value %v: %w", value, err)
	}
	return c.sink(k, v)
}

// WriteRaw emits a pair whose key and value are already JSON (in Map and
// Combine), saving the encoding.
func (c *Context) WriteRaw(keyJSON, valueJSON []byte) error {
	if c.reduce {
		return c.Write(json.RawMessage(keyJSON), json.RawMessage(valueJSON))
	}
	return c.sink(keyJSON, valueJSON)
}

// WriteLine writes one record of the reducer's result.
func (c *Context) WriteLine(line string) error {
	c.w.WriteString(line)
	_, err := c.w.WriteString(c.RecordSeparator)
	return err
}

// WriteCSV writes fields as one record of the reducer's result. With
// FieldSeparator unset it is a CSV record as Python's csv module writes it
// (af_helper's writecsv): comma-separated, a field quoted when it holds a
// comma, a double quote or a byte of RecordSeparator, quotes doubled, a
// record of one empty field written as "". With FieldSeparator set the
// fields are joined by it, unquoted (telemetry-server's behaviour). Fields
// are converted as Write converts them.
func (c *Context) WriteCSV(fields ...any) error {
	if c.FieldSeparator != "" {
		for i, f := range fields {
			if i > 0 {
				c.w.WriteString(c.FieldSeparator)
			}
			c.w.WriteString(text(f))
		}
		_, err := c.w.WriteString(c.RecordSeparator)
		return err
	}
	for i, f := range fields {
		if i > 0 {
			c.w.WriteByte(',')
		}
		s := text(f)
		if !strings.ContainsAny(s, `,"`+c.RecordSeparator) && (s != "" || len(fields) > 1) {
			c.w.WriteString(s)
			continue
		}
		c.w.WriteByte('"')
		c.w.WriteString(strings.ReplaceAll(s, `"`, `""`))
		c.w.WriteByte('"')
	}
	_, err := c.w.WriteString(c.RecordSeparator)
	return err
}

// encode is json.Marshal with fast paths for the common key and value types.
func encode(v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		if isPlain(x) {
			b := make([]byte, 0, len(x)+2)
			b = append(b, '"')
			b = append(b, x...)
			return append(b, '"'), nil
		}
	case int:
		return strconv.AppendInt(nil, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(nil, x, 10), nil
	case json.RawMessage:
		return x, nil
	}
	return json.Marshal(v)
}

// isPlain reports whether s encodes as JSON by just quoting it (the same
// bytes json.Marshal produces).
func isPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case json.RawMessage:
		return String(x)
	case fmt.Stringer:
		return x.String()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// Stats count what a run did.
type Stats struct {
	Files, Records, Pairs, Keys int64
}

// Main runs the job as the worker starts it: the task kind from the first
// argument (or AF_TASK_KIND), input from AF_INPUT, output to AF_OUTPUT. It
// exits 0 on success and 1 when the job fails, with the error (and the
// stack, for a panic) on stderr.
func Main(job Job) {
	kind := taskKind(os.Args[1:], os.Getenv(contract.EnvTaskKind))
	if err := check(job, kind); err != nil {
		fmt.Fprintf(os.Stderr, "afjob: %v\n", err)
		os.Exit(1)
	}
	start := time.Now()
	st, err := runFiles(job, kind, os.Getenv(contract.EnvInput), os.Getenv(contract.EnvOutput))
	if err != nil {
		fmt.Fprintf(os.Stderr, "afjob: %s failed: %v\n", kind, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "afjob: %s done: %d files, %d records, %d pairs out, %d keys in %.2fs\n",
		kind, st.Files, st.Records, st.Pairs, st.Keys, time.Since(start).Seconds())
}

// taskKind is the task's kind: the first argument when it is map or
// reduce (language: go), else AF_TASK_KIND (language: binary, whose first
// argument is the spec's own), else the first argument for check to name.
func taskKind(args []string, env string) string {
	if len(args) > 0 && (args[0] == contract.TaskMap || args[0] == contract.TaskReduce) {
		return args[0]
	}
	if env != "" {
		return env
	}
	if len(args) > 0 {
		return args[0]
	}
	return ""
}

// check says, before any input is read, what makes the job unable to run
// kind: no kind, an unknown one, or no function for it.
func check(job Job, kind string) error {
	switch kind {
	case "":
		return fmt.Errorf("no task kind: af runs a language: go job as `BINARY map` or `BINARY reduce` (and sets %s for language: binary); to try it by hand, give map or reduce as the first argument", contract.EnvTaskKind)
	case contract.TaskMap:
		if job.Map == nil {
			return errors.New("the job has no Map function: set Job.Map in the afjob.Main call, or point mapper: in /etc/analysis-tools.yml at the binary that has one")
		}
	case contract.TaskReduce:
		if job.Reduce == nil {
			return errors.New("the job has no Reduce function: set Job.Reduce in the afjob.Main call, or point reducer: in /etc/analysis-tools.yml at the binary that has one")
		}
	default:
		return fmt.Errorf("unknown task kind %q (the first argument, or %s): want map or reduce; with language: go in /etc/analysis-tools.yml af passes it before the spec's arguments", kind, contract.EnvTaskKind)
	}
	return nil
}

func runFiles(job Job, kind, in, out string) (Stats, error) {
	if out == "" {
		return Stats{}, fmt.Errorf("%s is not set; the worker sets it to the output file's path", contract.EnvOutput)
	}
	var r io.Reader = os.Stdin
	if in != "" && in != contract.StdinInput {
		f, err := os.Open(in)
		if err != nil {
			return Stats{}, fmt.Errorf("open input: %w", err)
		}
		defer f.Close()
		r = f
	}
	f, err := os.Create(out)
	if err != nil {
		return Stats{}, fmt.Errorf("create output: %w", err)
	}
	st, err := Run(job, kind, r, f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close output: %w", cerr)
	}
	return st, err
}

// Run runs one task of the job: kind is "map" (r carries framed records,
// see internal/records) or "reduce" (r carries sorted key/value lines).
func Run(job Job, kind string, r io.Reader, w io.Writer) (st Stats, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	bw := bufio.NewWriterSize(w, 1<<20)
	ctx := &Context{RecordSeparator: "\n", w: bw}
	if err := check(job, kind); err != nil {
		return st, err
	}
	if kind == contract.TaskMap {
		st, err = runMap(job, ctx, r)
	} else {
		st, err = runReduce(job, ctx, r)
	}
	if err != nil {
		return st, err
	}
	if err := bw.Flush(); err != nil {
		return st, fmt.Errorf("write output: %w", err)
	}
	st.Pairs = ctx.pairs
	return st, nil
}

func (c *Context) writePair(k, v []byte) error {
	c.pairs++
	c.w.Write(k)
	c.w.WriteByte('\t')
	c.w.Write(v)
	return c.w.WriteByte('\n')
}

// combiner buffers a mapper's pairs per key and folds them with Combine.
type combiner struct {
	job   Job
	ctx   *Context // output
	keys  map[string]*[][]byte
	order []string
	cur   *[][]byte
	cctx  *Context // what Combine writes to: replaces cur
}

func newCombiner(job Job, out *Context) *combiner {
	c := &combiner{job: job, ctx: out, keys: map[string]*[][]byte{}}
	c.cctx = &Context{FieldSeparator: "\t", RecordSeparator: "\n", sink: func(_, v []byte) error {
		*c.cur = append((*c.cur)[:0], v)
		return nil
	}}
	return c
}

func (c *combiner) add(k, v []byte) error {
	vals, ok := c.keys[string(k)]
	if !ok {
		if len(c.keys) >= maxKeys {
			if err := c.flush(); err != nil {
				return err
			}
		}
		vals = &[][]byte{}
		c.keys[string(k)] = vals
		c.order = append(c.order, string(k))
	}
	*vals = append(*vals, bytes.Clone(v))
	if len(*vals) >= CombineSize {
		c.cur = vals
		return c.job.Combine([]byte(k), *vals, c.cctx)
	}
	return nil
}

func (c *combiner) flush() error {
	for _, k := range c.order {
		vals := c.keys[k]
		if len(*vals) > 1 {
			c.cur = vals
			if err := c.job.Combine([]byte(k), *vals, c.cctx); err != nil {
				return fmt.Errorf("combine: %w", err)
			}
		}
		for _, v := range *vals {
			if err := c.ctx.writePair([]byte(k), v); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
		}
	}
	clear(c.keys)
	c.order = c.order[:0]
	return nil
}

func runMap(job Job, ctx *Context, r io.Reader) (Stats, error) {
	var st Stats
	ctx.sink = ctx.writePair
	var comb *combiner
	if job.Combine != nil {
		comb = newCombiner(job, ctx)
		ctx.sink = comb.add
	}
	rr := records.NewReader(r)
	var dims []string
	var inFile int64
	for {
		rec, err := rr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, err
		}
		if rec.File != nil {
			ctx.File, dims = rec.File.Key, rec.File.Dims
			st.Files++
			inFile = 0
			continue
		}
		st.Records++
		inFile++
		if err := job.Map(string(rec.ID), dims, rec.JSON, ctx); err != nil {
			return st, fmt.Errorf("map, record %d of %s (document %s): %w", inFile, ctx.File, rec.ID, err)
		}
	}
	if comb != nil {
		if err := comb.flush(); err != nil {
			return st, err
		}
	}
	return st, nil
}

func runReduce(job Job, ctx *Context, r io.Reader) (Stats, error) {
	var st Stats
	ctx.reduce = true
	if job.SetupReduce != nil {
		if err := job.SetupReduce(ctx); err != nil {
			return st, fmt.Errorf("setup_reduce: %w", err)
		}
	}
	var cur []byte
	var vals [][]byte
	have := false
	var cctx *Context
	if job.Combine != nil {
		cctx = &Context{sink: func(_, v []byte) error { vals = append(vals[:0], v); return nil }}
	}
	emit := func() error {
		st.Keys++
		if err := job.Reduce(cur, vals, ctx); err != nil {
			return fmt.Errorf("reduce, key %s: %w", cur, err)
		}
		return nil
	}
	br := bufio.NewReaderSize(r, 1<<20)
	var lineNo int64
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			lineNo++
			line = bytes.TrimSuffix(line, []byte("\n"))
			k, v, ok := bytes.Cut(line, []byte("\t"))
			if !ok {
				return st, fmt.Errorf("reduce input line %d: no tab between key and value", lineNo)
			}
			st.Records++
			if !have || !bytes.Equal(k, cur) {
				if have {
					if err := emit(); err != nil {
						return st, err
					}
				}
				cur, vals, have = k, vals[:0], true
			}
			vals = append(vals, v)
			if cctx != nil && len(vals) >= CombineSize {
				if err := job.Combine(cur, vals, cctx); err != nil {
					return st, fmt.Errorf("combine, key %s: %w", cur, err)
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("read reduce input: %w", err)
		}
	}
	if have {
		if err := emit(); err != nil {
			return st, err
		}
	}
	return st, nil
}
