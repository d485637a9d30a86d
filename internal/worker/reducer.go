package worker

// This file: a reducer run (mapper outputs fetched and merged in).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/af-project/af/internal/extsort"
	"github.com/af-project/af/internal/jobspec"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
)

func (w *Worker) runReducer(ctx context.Context, c taskdef.Claim, spec jobspec.Spec, td *taskDir, tlog *taskLog, progress *progressSource) outcome {
	p := c.Task.Payload
	ids := strings.Fields(p.Env[taskdef.EnvInputTaskIDs])
	if len(ids) == 0 {
		ids = c.Task.Dependencies
	}
	tlog.logf("reducer: merging the results of %d mapper tasks; job %s %v", len(ids), spec.Language, spec.Command(p.Kind))
	// Download every input first: a merge over thousands of open HTTP
	// responses would hold as many connections for the whole reduce. They
	// go to the worker's own dir: the job gets them through its input
	// anyway, and in /scratch they would count against its limit.
	paths, bytesIn, err := w.fetchInputs(ctx, w.cfg.Queue.Claimed(c), ids, filepath.Join(td.work, "inputs"))
	if err != nil {
		if diskFull(err) {
			return w.hostFault("fetch mapper results", err)
		}
		return exception(taskdef.ReasonResourceUnavail, "fetch mapper results: %v", err)
	}
	out, output, size := w.reduceInputs(ctx, c, spec, td, tlog, progress, paths, ids, bytesIn)
	if output == nil {
		return out
	}
	defer output.Close()
	// A section reader, so a failed upload can be retried from the start.
	if err := w.cfg.Queue.Claimed(c).UploadArtifact(ctx, taskdef.ResultArtifact, "text/plain; charset=utf-8",
		io.NewSectionReader(output, 0, size), size); err != nil {
		o := exception(taskdef.ReasonResourceUnavail, "upload %s: %v", taskdef.ResultArtifact, err)
		o.stats = out.stats
		return o
	}
	tlog.logf("reducer output: %d lines", out.stats.RecordsOut)
	return out
}

// reduceInputs merges the mapper results at paths (of the mappers ids,
// bytesIn in all) into the job's reducer. It returns the job's output,
// opened through the scratch dir and size bytes long, with a completed
// outcome, or nil with the outcome that ended the run.
func (w *Worker) reduceInputs(ctx context.Context, c taskdef.Claim, spec jobspec.Spec, td *taskDir, tlog *taskLog, progress *progressSource, paths, ids []string, bytesIn int64) (outcome, *os.File, int64) {
	// A merge of thousands of results opens at most extsort.DefaultFanIn
	// of them at once, merging runs of them into the work dir first.
	merger, err := extsort.MergeFiles(paths, ids, extsort.MergeOptions{Dir: td.work, FanIn: w.cfg.MergeFanIn})
	if err != nil {
		var le *extsort.LineError
		var oe *extsort.OrderError
		if errors.As(err, &le) || errors.As(err, &oe) {
			// Workers upload sorted results; this one was not written by
			// a worker, so rerunning the reducer cannot help.
			return failed("merge mapper results: %v; rerun the mapper tasks whose results are malformed", err), nil, 0
		}
		if diskFull(err) {
			return w.hostFault("merge mapper results", err), nil, 0
		}
		return exception(taskdef.ReasonInternalError, "merge mapper results: %v", err), nil, 0
	}
	defer merger.Close()
	pr, pw := io.Pipe()
	go func() {
		_, err := merger.WriteTo(pw)
		pw.CloseWithError(err)
	}()
	lc := &lineCounter{r: pr}
	progress.set(func() taskdef.Stats { s := lc.stats(); s.Bytes = bytesIn; s.Files = int64(len(ids)); return s })
	out, ok := w.runContainer(ctx, w.containerSpec(c, spec, td), spec, lc, tlog)
	_ = pr.CloseWithError(errors.New("container ended"))
	st := lc.stats()
	st.Files, st.Bytes = int64(len(ids)), bytesIn
	if !ok {
		out.stats = st
		return out, nil, 0
	}
	output, size, bad := w.openOutput(td)
	if bad != nil {
		bad.stats = st
		return *bad, nil, 0
	}
	lines, err := countLines(ctxReader{ctx, io.LimitReader(output, size)})
	if err == nil {
		_, err = output.Seek(0, io.SeekStart)
	}
	if err != nil {
		output.Close()
		o := exception(taskdef.ReasonInternalError, "read the job result: %v", err)
		o.stats = st
		return o, nil, 0
	}
	st.RecordsOut = lines
	return outcome{state: taskdef.StateCompleted, message: "reducer completed", stats: st}, output, size
}

func countLines(f io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// fetchInputs downloads each mapper's result into dir, a few at a time,
// reading as the reducer's run (a worker identity reads nothing else).
func (w *Worker) fetchInputs(ctx context.Context, run *queueclient.Run, ids []string, dir string) ([]string, int64, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0, err
	}
	paths := make([]string, len(ids))
	sizes := make([]int64, len(ids))
	errs := make([]error, len(ids))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, id := range ids {
		paths[i] = filepath.Join(dir, fmt.Sprintf("%06d-%s", i, id))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			sizes[i], errs[i] = w.fetchWithRetries(ctx, run, id, paths[i])
		}()
	}
	wg.Wait()
	var total int64
	for i, err := range errs {
		if err != nil {
			return nil, 0, fmt.Errorf("result of task %s: %w", ids[i], err)
		}
		total += sizes[i]
	}
	return paths, total, nil
}

// fetchWithRetries is fetchOne retried with backoff, as an S3 input read
// is: the queue or S3 unreachable, a 5xx or a broken download. A missing
// artifact and the worker's own full disk are not retried.
func (w *Worker) fetchWithRetries(ctx context.Context, run *queueclient.Run, taskID, path string) (int64, error) {
	policy := s3Retry{Clock: w.clock}.fill()
	for try := 1; ; try++ {
		n, err := w.fetchOne(ctx, run, taskID, path)
		if err == nil || ctx.Err() != nil || diskFull(err) || errors.Is(err, queueclient.ErrNotFound) ||
			errors.Is(err, queueclient.ErrForbidden) || errors.Is(err, queueclient.ErrUnauthorized) {
			return n, err
		}
		if try >= policy.Tries {
			return n, fmt.Errorf("%w (after %d tries)", err, try)
		}
		select {
		case <-w.clock.After(policy.wait(try)):
		case <-ctx.Done():
			return n, ctx.Err()
		}
	}
}

func (w *Worker) fetchOne(ctx context.Context, run *queueclient.Run, taskID, path string) (int64, error) {
	body, err := run.GetArtifact(ctx, taskID, -1, taskdef.ResultArtifact)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}
