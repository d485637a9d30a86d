package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/af-project/af/internal/decompress"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/records"
	"github.com/af-project/af/internal/taskdef"
)

// ObjectGetter is the part of the S3 client the input feeder uses.
type ObjectGetter interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// chunkSize is the unit handed from a file's decoder to the feeder: the
// records writer's buffer size, so one flush is one chunk.
const chunkSize = 1 << 20

// chunksPerFile bounds how far one file's decoder runs ahead of the
// container. Memory is about parallel × (chunksPerFile+2) × chunkSize.
const chunksPerFile = 4

var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize); return &b }}

// writerPool keeps the records writers (2 MiB of buffers each) across files:
// a task reads dozens to hundreds of files, and allocating and clearing
// fresh buffers for each showed in the worker's CPU profile.
var writerPool = sync.Pool{New: func() any { return records.NewWriter(io.Discard) }}

// inputPolicy decides when bad input fails the task.
type inputPolicy struct {
	// maxBadFiles is how many missing or corrupt files are tolerated.
	maxBadFiles int64
	// maxBadLineRatio is the share of bad lines (of all lines) tolerated;
	// 1 means bad lines never fail the task, as in telemetry-server.
	maxBadLineRatio float64
}

// feeder streams a mapper's input files into the container in the framed
// format: several files download and decompress at once, but their records
// reach the container in the task's file order, so a rerun produces the
// same stream.
type feeder struct {
	s3       ObjectGetter
	bucket   string
	schema   layout.Schema
	prefix   string
	parallel int
	policy   inputPolicy
	// noDecompress passes files through as stored (decompress: none in
	// analysis-tools.yml), for jobs that read compressed data themselves.
	noDecompress bool
	open         *decompress.Opener
	// logLine writes a line to the task's log.
	logLine func(format string, args ...any)
	// retry is how S3 reads ride out faults (zero: defaultS3Retry).
	retry s3Retry
	// etags, when set, are the inputs' pinned versions in feed's order
	// (Payload.InputETags): each file is read only at its version.
	etags []string
	// resumes counts the S3 GETs retried after a fault.
	resumes atomic.Int64

	// Progress counters, read by the lease renewer while feeding runs.
	files, bytes, raw, lines, badLines, badFiles atomic.Int64
}

// stats returns the counters so far.
func (f *feeder) stats() taskdef.Stats {
	return taskdef.Stats{
		Files: f.files.Load(), Bytes: f.bytes.Load(), RawBytes: f.raw.Load(),
		RecordsIn: f.lines.Load() - f.badLines.Load(), BadLines: f.badLines.Load(), BadFiles: f.badFiles.Load(),
	}
}

// inputFailure is bad input beyond the task's thresholds: the task fails
// (it is the data's fault, not the infrastructure's).
type inputFailure struct{ msg string }

func (e *inputFailure) Error() string { return e.msg }

// inputException is an infrastructure problem reading the inputs (S3
// unreachable, credentials expired): the run ends in exception.
type inputException struct {
	reason string
	err    error
}

func (e *inputException) Error() string { return e.err.Error() }
func (e *inputException) Unwrap() error { return e.err }

type fileResult struct {
	chunks chan *[]byte
	// started and err are set before chunks is closed.
	started bool
	err     error
}

// feed writes every input file to w. It returns an *inputFailure when bad
// input passes the policy, an *inputException for infrastructure errors,
// and a plain error when writing to w failed (the container went away).
func (f *feeder) feed(ctx context.Context, inputs []taskdef.InputFile, w io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	parallel := max(f.parallel, 1)
	results := make([]*fileResult, len(inputs))
	for i := range results {
		results[i] = &fileResult{chunks: make(chan *[]byte, chunksPerFile)}
	}
	// Decoders start in file order, at most `parallel` ahead of the file
	// being written out. The launcher is in the WaitGroup itself so that its
	// Adds never race with the deferred Wait.
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, in := range inputs {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				for _, r := range results[i:] {
					r.err = ctx.Err()
					close(r.chunks)
				}
				return
			}
			results[i].started = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.decodeFile(ctx, in, f.etagOf(i), results[i])
			}()
		}
	}()
	defer wg.Wait()

	var writeErr error
	for i, in := range inputs {
		r := results[i]
		for c := range r.chunks {
			if writeErr == nil {
				if _, err := w.Write(*c); err != nil {
					writeErr = fmt.Errorf("write records to the job: %w", err)
					cancel()
				}
			}
			*c = (*c)[:0]
			chunkPool.Put(c)
		}
		if r.started {
			<-sem
		}
		if writeErr != nil {
			continue
		}
		if r.err != nil {
			if ctx.Err() != nil && errors.Is(r.err, context.Canceled) {
				return r.err
			}
			var ie *inputException
			if errors.As(r.err, &ie) {
				cancel()
				return r.err
			}
			// A file rewritten since the graph pinned its version is not
			// a bad file to skip: the run would silently read other data
			// than the one it records.
			var changed *s3ObjectChanged
			if errors.As(r.err, &changed) && changed.pinned {
				cancel()
				return &inputFailure{msg: changed.Error()}
			}
			bad := f.badFiles.Add(1)
			f.logLine("bad file %s: %v", in.Key, r.err)
			if bad > f.policy.maxBadFiles {
				cancel()
				return &inputFailure{msg: fmt.Sprintf("input file %s is unreadable: %v (%d bad file(s); analysis-tools.yml allows max_bad_files: %d)", in.Key, r.err, bad, f.policy.maxBadFiles)}
			}
			continue
		}
		f.files.Add(1)
	}
	if writeErr != nil {
		return writeErr
	}
	lines, bad := f.lines.Load(), f.badLines.Load()
	if lines > 0 && float64(bad)/float64(lines) > f.policy.maxBadLineRatio {
		return &inputFailure{msg: fmt.Sprintf("%d of %d input lines were bad (%.2f%%), more than max_bad_line_ratio %.4g in analysis-tools.yml", bad, lines, 100*float64(bad)/float64(lines), f.policy.maxBadLineRatio)}
	}
	return nil
}

// chunkWriter hands the records writer's flushes to the feeder as pooled
// chunks.
type chunkWriter struct {
	ctx context.Context
	out chan *[]byte
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); {
		b := chunkPool.Get().(*[]byte)
		n := min(len(p)-off, chunkSize)
		*b = append((*b)[:0], p[off:off+n]...)
		select {
		case c.out <- b:
		case <-c.ctx.Done():
			chunkPool.Put(b)
			return off, c.ctx.Err()
		}
		off += n
	}
	return len(p), nil
}

// countingReader counts compressed bytes as they arrive from S3.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// etagOf is input i's pinned ETag, quoted as S3 sends it ("" when the
// task pins none).
func (f *feeder) etagOf(i int) string {
	if i >= len(f.etags) || f.etags[i] == "" {
		return ""
	}
	return `"` + f.etags[i] + `"`
}

// decodeFile downloads, decompresses and frames one file into res.chunks,
// at version etag when it is set. Errors that belong to the file
// (missing, corrupt) are plain errors on res.err; infrastructure errors
// are *inputException.
func (f *feeder) decodeFile(ctx context.Context, in taskdef.InputFile, etag string, res *fileResult) {
	defer close(res.chunks)
	dims, err := f.schema.Parse(f.prefix, in.Key)
	if err != nil {
		// A key outside the layout still gets processed; the job just sees
		// no dimensions for it.
		dims = nil
	}
	body, err := openS3(ctx, f.s3, f.bucket, in.Key, etag, f.retry, func(try int, wait time.Duration, err error) {
		f.resumes.Add(1)
		f.logLine("s3 GET %s/%s failed (%v): try %d in %s", f.bucket, in.Key, err, try, wait.Round(time.Millisecond))
	})
	if err != nil {
		res.err = classifyS3(in.Key, err)
		return
	}
	defer body.Close()
	format := decompress.FormatOf(in.Key)
	if f.noDecompress {
		format = decompress.Plain
	}
	dec, err := f.open.OpenFormat(in.Key, format, countingReader{r: body, n: &f.bytes})
	if err != nil {
		res.err = err
		return
	}
	defer dec.Close()
	rw := writerPool.Get().(*records.Writer)
	rw.Reset(&chunkWriter{ctx: ctx, out: res.chunks})
	// Put after the last flush; the writer keeps no reference that matters.
	defer writerPool.Put(rw)
	if err := rw.BeginFile(in.Key, dims); err != nil {
		res.err = err
		return
	}
	reported := 0
	lines, bad, raw, err := rw.CopyLines(dec, func(lineNo int64, reason string) {
		// The first few bad lines of a file are named; the rest counted.
		if reported < 5 {
			f.logLine("bad line %s:%d: %s", in.Key, lineNo, reason)
		} else if reported == 5 {
			f.logLine("more bad lines in %s: counting without naming them", in.Key)
		}
		reported++
	})
	f.lines.Add(lines)
	f.badLines.Add(bad)
	f.raw.Add(raw)
	if err == nil {
		err = rw.Flush()
	}
	if err != nil {
		if ctx.Err() != nil {
			res.err = ctx.Err()
			return
		}
		var ce *decompress.CorruptError
		if errors.As(err, &ce) {
			res.err = err
			return
		}
		res.err = classifyS3(in.Key, err)
	}
}

// classifyS3 separates a file's own problems (missing) from the
// infrastructure's (expired credentials, S3 unreachable).
func classifyS3(key string, err error) error {
	var changed *s3ObjectChanged
	if errors.As(err, &changed) {
		return changed
	}
	var un *s3Unavailable
	if errors.As(err, &un) {
		return &inputException{reason: taskdef.ReasonResourceUnavail, err: un}
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return fmt.Errorf("s3 object %s is missing (deleted since the index was built?)", key)
		case "ExpiredToken", "ExpiredTokenException":
			return &inputException{reason: taskdef.ReasonMalformedPayload, err: fmt.Errorf("the job's S3 credentials expired while reading %s; resubmit the job (raise --credentials-ttl for long jobs): %w", key, err)}
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch":
			return &inputException{reason: taskdef.ReasonMalformedPayload, err: fmt.Errorf("the job's S3 credentials cannot read %s: %w", key, err)}
		}
	}
	return &inputException{reason: taskdef.ReasonResourceUnavail, err: fmt.Errorf("read s3 object %s: %w", key, err)}
}
