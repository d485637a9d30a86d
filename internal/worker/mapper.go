package worker

// This file: a mapper run (inputs streamed in, sorted output up).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/extsort"
	"github.com/af-project/af/internal/jobspec"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/taskdef"
)

func (w *Worker) runMapper(ctx context.Context, c taskdef.Claim, spec jobspec.Spec, td *taskDir, tlog *taskLog, progress *progressSource) outcome {
	p := c.Task.Payload
	blob := p.Env[taskdef.EnvCredentials]
	if blob == "" && len(p.Inputs) > 0 {
		return exception(taskdef.ReasonMalformedPayload, "mapper has inputs but no %s in its env; submit it with `af submit`", taskdef.EnvCredentials)
	}
	f, err := w.newFeeder(p, spec, tlog)
	if err != nil {
		return exception(taskdef.ReasonMalformedPayload, "%v; submit it with `af submit`", err)
	}
	if len(p.Inputs) > 0 {
		cr, err := creds.Open(blob, w.cfg.Key, w.clock.Now())
		if err != nil {
			return exception(taskdef.ReasonMalformedPayload, "open the task's sealed credentials: %v", err)
		}
		keys := make([]string, len(p.Inputs))
		for i, in := range p.Inputs {
			keys[i] = in.Key
		}
		// The graph and image come from the claimed task, never from the
		// envelope: a task added to this graph with another image (PUT
		// /tasks/{id}) must not get the graph's inputs.
		if err := cr.Permits(creds.Use{GraphID: c.Task.GraphID, Image: p.Image, Bucket: p.Bucket, Prefix: p.Prefix, Keys: keys}); err != nil {
			return exception(taskdef.ReasonMalformedPayload, "refused the task's sealed credentials: %v", err)
		}
		s3c, err := w.jobS3(ctx, cr)
		if err != nil {
			return exception(taskdef.ReasonMalformedPayload, "refused the task's sealed credentials: %v", err)
		}
		f.s3 = s3c
		tlog.logf("credentials opened: key %s…, graph %s, image %s, %d key prefix(es) of s3://%s/%s, expire %s",
			redactKeyID(cr.AccessKeyID), cr.GraphID, cr.Image, len(cr.Prefixes), cr.Bucket, cr.Prefix, cr.Expiration.UTC().Format(time.RFC3339))
	}
	out, sorted := w.mapInputs(ctx, c, spec, td, tlog, progress, f)
	if sorted == "" {
		return out
	}
	if err := w.uploadFile(ctx, c, taskdef.ResultArtifact, sorted); err != nil {
		o := exception(taskdef.ReasonResourceUnavail, "upload %s: %v", taskdef.ResultArtifact, err)
		o.stats = out.stats
		return o
	}
	return out
}

// newFeeder is the feeder of a mapper's inputs; its s3 is the caller's.
func (w *Worker) newFeeder(p taskdef.Payload, spec jobspec.Spec, tlog *taskLog) (*feeder, error) {
	schema, err := layout.FromWire(p.Schema, p.Layout)
	if err != nil {
		return nil, fmt.Errorf("the payload's schema and layout: %w", err)
	}
	f := &feeder{
		bucket: p.Bucket, prefix: p.Prefix, schema: schema, parallel: w.cfg.DownloadParallel,
		policy:       inputPolicy{maxBadFiles: int64(spec.MaxBadFiles), maxBadLineRatio: spec.MaxBadLineRatio},
		noDecompress: spec.Decompress == jobspec.DecompressNone,
		open:         w.cfg.Decompress,
		logLine:      tlog.logf,
		retry:        s3Retry{Clock: w.clock},
		etags:        taskdef.SplitETags(p.InputETags),
	}
	return f, nil
}

// mapInputs feeds the inputs through the job's mapper and sorts its
// output into the run's work dir. It returns the sorted file's path with
// a completed outcome, or "" with the outcome that ended the run.
func (w *Worker) mapInputs(ctx context.Context, c taskdef.Claim, spec jobspec.Spec, td *taskDir, tlog *taskLog, progress *progressSource, f *feeder) (outcome, string) {
	p := c.Task.Payload
	progress.set(f.stats)
	var total int64
	for _, in := range p.Inputs {
		total += in.Size
	}
	tlog.logf("mapper: %d input files, %d bytes from s3://%s; job %s %v", len(p.Inputs), total, p.Bucket, spec.Language, spec.Command(p.Kind))

	pr, pw := io.Pipe()
	go func() {
		err := f.feed(ctx, p.Inputs, pw)
		pw.CloseWithError(err)
	}()
	out, ok := w.runContainer(ctx, w.containerSpec(c, spec, td), spec, pr, tlog)
	_ = pr.CloseWithError(errors.New("container ended"))
	if n := f.resumes.Load(); n > 0 {
		tlog.logf("s3: %d GET(s) retried after faults of S3 or the network", n)
	}
	st := f.stats()
	if !ok {
		out.stats = st
		return out, ""
	}
	output, size, bad := w.openOutput(td)
	if bad != nil {
		bad.stats = st
		return *bad, ""
	}
	defer output.Close()
	// Sort the job's output by key so the reducer only merges, in
	// the worker's own dir.
	sorted := filepath.Join(td.work, "result.sorted")
	ss, err := sortFile(ctxReader{ctx, io.LimitReader(output, size)}, sorted, td.work, w.cfg.SortMemory)
	if err != nil {
		var le *extsort.LineError
		if errors.As(err, &le) {
			o := failed("the mapper wrote a malformed output line: %v; write output with context.write(key, value)", err)
			o.stats = st
			return o, ""
		}
		o := w.hostFault("sort mapper output", err)
		o.stats = st
		return o, ""
	}
	st.RecordsOut = ss.Lines
	tlog.logf("mapper output: %d key/value lines, %d bytes, sorted in %d spilled runs", ss.Lines, ss.Bytes, ss.Runs)
	return outcome{state: taskdef.StateCompleted, message: "mapper completed", stats: st}, sorted
}

func sortFile(r io.Reader, out, dir string, memory int) (extsort.Stats, error) {
	wf, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return extsort.Stats{}, err
	}
	st, err := extsort.Sort(wf, r, "mapper output", extsort.Options{Dir: dir, Memory: memory})
	if cerr := wf.Close(); err == nil {
		err = cerr
	}
	return st, err
}

// lineCounter counts the lines passing through to the container.
type lineCounter struct {
	r     io.Reader
	lines int64
	bytes int64
	mu    sync.Mutex
}

func (l *lineCounter) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.mu.Lock()
	l.lines += int64(bytes.Count(p[:n], []byte{'\n'}))
	l.bytes += int64(n)
	l.mu.Unlock()
	return n, err
}

func (l *lineCounter) stats() taskdef.Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return taskdef.Stats{RecordsIn: l.lines, RawBytes: l.bytes}
}

// redactKeyID keeps enough of an access key id to match it in STS logs.
func redactKeyID(id string) string {
	if len(id) > 4 {
		return id[:4]
	}
	return ""
}
