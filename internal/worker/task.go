package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/extsort"
	"github.com/af-project/af/internal/jobspec"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/redact"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/scratchdir"
	"github.com/af-project/af/internal/taskdef"
)

// outcome is how a run ended, decided once and reported once.
type outcome struct {
	state   taskdef.TaskState // completed, failed or exception
	reason  string            // exception reason
	message string
	stats   taskdef.Stats
}

func failed(format string, args ...any) outcome {
	return outcome{state: taskdef.StateFailed, message: fmt.Sprintf(format, args...)}
}

func exception(reason, format string, args ...any) outcome {
	return outcome{state: taskdef.StateException, reason: reason, message: fmt.Sprintf(format, args...)}
}

// taskLog is a task's log: the worker's own lines and the container's
// output, in order. The runner bounds the container's share.
type taskLog struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	clock Clock
	dirty bool
}

func (l *taskLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dirty = true
	return l.buf.Write(p)
}

// logf writes one worker line, marked so it stands apart from the job's.
func (l *taskLog) logf(format string, args ...any) {
	// Worker lines quote errors; a presigned URL in one would hand
	// whoever reads the log a credential.
	line := fmt.Sprintf("[af-worker %s] %s\n", l.clock.Now().UTC().Format("15:04:05"), redact.Text(fmt.Sprintf(format, args...)))
	_, _ = l.Write([]byte(line))
}

// snapshot returns a copy of the log so far and marks it uploaded.
func (l *taskLog) snapshot() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dirty = false
	return bytes.Clone(l.buf.Bytes())
}

// changed reports whether the log grew since the last snapshot, without
// copying it: the live-log loop asks every few seconds and most answers
// are no.
func (l *taskLog) changed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dirty
}

// errNotCurrent is the cause of a run's cancellation when the queue says
// it is no longer the current run (canceled, expired, superseded).
var errNotCurrent = errors.New("the queue says this run is no longer current")

// runTask runs one claimed task to its report.
func (w *Worker) runTask(ctx context.Context, c taskdef.Claim) {
	log := w.log.With("task", c.TaskID, "run", c.RunID, "kind", c.Task.Payload.Kind)
	tlog := &taskLog{clock: w.clock}
	tlog.logf("worker %s/%s claimed task %s run %d (%s %q, image %s)", w.cfg.WorkerGroup, w.cfg.WorkerID, c.TaskID, c.RunID,
		c.Task.Payload.Kind, c.Task.Metadata.Name, c.Task.Payload.Image)
	log.Info("task claimed")
	start := w.clock.Now()

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	progress := &progressSource{}
	lease := &leaseTime{}
	lease.set(c.TakenUntil)

	// The lease is renewed until the report is in, not only while the job
	// runs: a report that waits for an unreachable queue keeps the run
	// ours for as long as the queue can still be told.
	leaseCtx, stopLease := context.WithCancel(context.WithoutCancel(ctx))
	var renewer, logLoop sync.WaitGroup
	renewer.Add(1)
	go func() { defer renewer.Done(); w.renewLease(leaseCtx, cancel, c, progress, lease, log) }()
	defer func() { stopLease(); renewer.Wait() }()
	logLoop.Add(1)
	go func() { defer logLoop.Done(); w.uploadLogLoop(runCtx, c, tlog, log) }()

	out := w.execute(runCtx, c, tlog, progress)
	cause := context.Cause(runCtx)
	cancel(nil)
	logLoop.Wait()

	if errors.Is(cause, errNotCurrent) {
		stopLease()
		tlog.logf("stopped: %v", cause)
		w.uploadLog(ctx, c, tlog, log)
		log.Info("run abandoned: no longer current")
		w.forget(c, log)
		return
	}
	if ctx.Err() != nil && out.state != taskdef.StateCompleted {
		out = exception(taskdef.ReasonWorkerShutdown, "the worker shut down before the task finished; the queue runs it again")
		out.stats = progress.stats()
	}
	tlog.logf("result: %s%s after %s: %s", out.state, suffix(out.reason), w.clock.Now().Sub(start).Round(time.Millisecond), out.message)
	tlog.logf("stats: files %d, bytes %d (raw %d), records in %d, out %d, bad lines %d, bad files %d",
		out.stats.Files, out.stats.Bytes, out.stats.RawBytes, out.stats.RecordsIn, out.stats.RecordsOut, out.stats.BadLines, out.stats.BadFiles)
	// The log goes up before the report: once the run resolves, readers
	// expect its final log. Both may take until the lease ends.
	reportCtx, cancelReport := context.WithCancel(context.WithoutCancel(ctx))
	if ctx.Err() != nil {
		// Shutting down: the grace period is spent, so the report gets a
		// short while, not the lease; the run's record stays if it fails
		// and the next start hands the run back.
		cancelReport()
		reportCtx, cancelReport = context.WithTimeout(context.WithoutCancel(ctx), shutdownReportWait)
	}
	defer cancelReport()
	logCtx, cancelLog := context.WithDeadline(reportCtx, lease.get())
	w.uploadLog(logCtx, c, tlog, log)
	cancelLog()

	// The message is read by anyone who may read the queue and mailed to
	// the owner: no presigned URL in it, whatever error it quotes.
	req := taskdef.ReportRequest{Reason: out.reason, Message: redact.Text(out.message), Stats: out.stats}
	resp, err := w.report(reportCtx, c, out.state, req, lease, log)
	stopLease()
	if err != nil {
		log.Warn("report task", "state", out.state, "err", err)
		var ae *queueclient.APIError
		if errors.As(err, &ae) && ae.Status < 500 {
			// The queue answered no for good (not current, not ours):
			// there is nothing left to hand back. Otherwise the record
			// stays, and a restart hands the run back.
			w.forget(c, log)
		}
		return
	}
	w.forget(c, log)
	// A report that ended the graph emails nobody: the transaction that
	// resolved it wrote the owner's email to af serve's outbox.
	log.Info("task resolved", "state", out.state, "reason", out.reason, "graphResolved", resp.GraphResolved, "duration", w.clock.Now().Sub(start))
}

// shutdownReportWait bounds a report made while the worker shuts down.
const shutdownReportWait = 15 * time.Second

// leaseTime is the run's takenUntil as last renewed, shared by the lease
// renewer and the report.
type leaseTime struct {
	mu    sync.Mutex
	until time.Time
}

func (l *leaseTime) set(t time.Time) {
	l.mu.Lock()
	if t.After(l.until) {
		l.until = t
	}
	l.mu.Unlock()
}

func (l *leaseTime) get() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.until
}

// Report retry backoff: a doubling wait from reportMinWait to
// reportMaxWait between rounds of the queue client's own retries.
const (
	reportMinWait = 500 * time.Millisecond
	reportMaxWait = 10 * time.Second
)

// report sends the run's report, retrying while the queue is unreachable
// or failing until the run's lease would have expired: the run's result is
// kept (a finished mapper's artifact is already up) and only the report is
// missing, so a queue that comes back within the lease gets it and the
// task is not run again. After the lease, the queue has expired the run
// (claim-expired) and runs the task again; the worker says so and gives
// up. A 4xx answer is final at once.
func (w *Worker) report(ctx context.Context, c taskdef.Claim, state taskdef.TaskState, req taskdef.ReportRequest, lease *leaseTime, log *slog.Logger) (taskdef.ReportResponse, error) {
	run := w.cfg.Queue.Claimed(c)
	wait := reportMinWait
	for try := 1; ; try++ {
		until := lease.get()
		rctx, cancel := context.WithDeadline(ctx, until)
		var resp taskdef.ReportResponse
		var err error
		switch state {
		case taskdef.StateCompleted:
			resp, err = run.ReportCompleted(rctx, req)
		case taskdef.StateFailed:
			resp, err = run.ReportFailed(rctx, req)
		default:
			resp, err = run.ReportException(rctx, req)
		}
		cancel()
		if err == nil {
			if try > 1 {
				log.Info("report delivered after the queue came back", "state", state, "tries", try)
			}
			return resp, nil
		}
		var ae *queueclient.APIError
		if errors.As(err, &ae) && ae.Status < 500 {
			return resp, err
		}
		left := lease.get().Sub(w.clock.Now())
		if left <= 0 {
			log.Warn("gave up reporting: the run's lease expired, so the queue runs the task again", "state", state, "takenUntil", lease.get(), "tries", try, "err", err)
			return resp, fmt.Errorf("report %s: the run's lease expired at %s after %d tries: %w", state, lease.get().UTC().Format(time.RFC3339), try, err)
		}
		log.Warn("report task: the queue is unreachable; keeping the result and retrying until the lease expires", "state", state, "try", try, "retry_in", min(wait, left), "lease_left", left.Round(time.Second), "err", err)
		select {
		case <-w.clock.After(min(wait, left)):
		case <-ctx.Done():
			return resp, err
		}
		wait = min(wait*2, reportMaxWait)
	}
}

// diskFull says whether err is the worker's own disk out of space (or
// quota).
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// hostFault is the outcome of a failed write or read of the worker's own
// (not the job's): a full disk is this host's fault, an exception the
// queue retries, on another worker or later, naming the disk; anything
// else is an internal error.
func (w *Worker) hostFault(what string, err error) outcome {
	if diskFull(err) {
		return exception(taskdef.ReasonResourceUnavail, "%s: the disk of worker %s's scratch root %s is full (%v); free space there, or give the worker a larger disk; the queue runs the task again", what, w.cfg.WorkerID, w.cfg.ScratchRoot, err)
	}
	return exception(taskdef.ReasonInternalError, "%s: %v", what, err)
}

// forget drops the run's record from the state dir: it is reported or no
// longer ours.
func (w *Worker) forget(c taskdef.Claim, log *slog.Logger) {
	if err := w.state.forget(c.TaskID, c.RunID); err != nil {
		log.Warn("forget the run's record", "err", err)
	}
}

func suffix(reason string) string {
	if reason == "" {
		return ""
	}
	return "/" + reason
}

// progressSource lets the lease renewer read the running task's counters.
type progressSource struct {
	mu sync.Mutex
	fn func() taskdef.Stats
}

func (p *progressSource) set(fn func() taskdef.Stats) {
	p.mu.Lock()
	p.fn = fn
	p.mu.Unlock()
}

func (p *progressSource) stats() taskdef.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fn == nil {
		return taskdef.Stats{}
	}
	return p.fn()
}

// renewLease reclaims the task well before takenUntil, carrying progress,
// until ctx ends. A 409 means the run is no longer ours: the task is
// stopped.
func (w *Worker) renewLease(ctx context.Context, cancel context.CancelCauseFunc, c taskdef.Claim, p *progressSource, lease *leaseTime, log *slog.Logger) {
	for {
		takenUntil := lease.get()
		// Renew at a third of the remaining lease, so two renewals can fail
		// before it runs out.
		wait := max(takenUntil.Sub(w.clock.Now())/3, 200*time.Millisecond)
		select {
		case <-ctx.Done():
			return
		case <-w.clock.After(wait):
		}
		rctx, rcancel := context.WithTimeout(ctx, max(wait, 5*time.Second))
		resp, err := w.cfg.Queue.Claimed(c).Reclaim(rctx, p.stats())
		rcancel()
		switch {
		case err == nil:
			lease.set(resp.TakenUntil)
		case errors.Is(err, queueclient.ErrConflict) || errors.Is(err, queueclient.ErrNotFound) || errors.Is(err, queueclient.ErrForbidden):
			// Forbidden: the queue does not take this run's token (a run
			// of an old database), so the run can never be reported.
			cancel(fmt.Errorf("%w: %v", errNotCurrent, err))
			return
		case ctx.Err() != nil:
			return
		default:
			log.Warn("reclaim task", "err", err)
		}
	}
}

func (w *Worker) uploadLogLoop(ctx context.Context, c taskdef.Claim, tlog *taskLog, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.clock.After(w.cfg.LogEvery):
		}
		if tlog.changed() {
			w.uploadLog(ctx, c, tlog, log)
		}
	}
}

func (w *Worker) uploadLog(ctx context.Context, c taskdef.Claim, tlog *taskLog, log *slog.Logger) {
	b := tlog.snapshot()
	if err := w.cfg.Queue.Claimed(c).UploadArtifact(ctx, taskdef.LiveLogArtifact, "text/plain; charset=utf-8", bytes.NewReader(b), int64(len(b))); err != nil && ctx.Err() == nil {
		log.Warn("upload live log", "err", err)
	}
}

// execute runs the task's container and publishes its result.
func (w *Worker) execute(ctx context.Context, c taskdef.Claim, tlog *taskLog, progress *progressSource) outcome {
	p := c.Task.Payload
	if err := checkPayload(p, w.cfg.Ceilings); err != nil {
		return exception(taskdef.ReasonMalformedPayload, "%v", err)
	}
	spec, err := w.specs.get(ctx, p.Image)
	if err != nil {
		var missing *imageMissingError
		if errors.As(err, &missing) {
			// The host's fault, not the job's: handed back at once, for
			// a worker that has the image (see imageMissed).
			w.imageMissed(p.Image)
			return exception(taskdef.ReasonResourceUnavail, "%v; the queue runs the task again, on a worker that has it", err)
		}
		var bad *badSpecError
		if errors.As(err, &bad) {
			return exception(taskdef.ReasonMalformedPayload, "%v", err)
		}
		return exception(taskdef.ReasonInternalError, "read the job spec of image %s: %v", p.Image, err)
	}
	w.imageFound()
	td, err := w.prepareTaskDir(c)
	if td != nil {
		defer td.close()
	}
	if err != nil {
		return w.hostFault("prepare the task's scratch dir", err)
	}
	if p.Kind == taskdef.KindMapper {
		return w.runMapper(ctx, c, spec, td, tlog, progress)
	}
	return w.runReducer(ctx, c, spec, td, tlog, progress)
}

// taskDir is a run's directory, <ScratchRoot>/<taskId>-<runId> (private
// to the worker), with two dirs in it: job, bind-mounted as the job's
// /scratch and written by the job, and work, the worker's own (the sorted
// output, sort spill files, the reducer's inputs), which the job cannot
// reach, so it cannot plant links among the files the worker writes.
type taskDir struct {
	root, job, work string
	// scratch is job, opened before the container starts; the job's
	// output is only ever opened through it.
	scratch *scratchdir.Dir
}

func (w *Worker) prepareTaskDir(c taskdef.Claim) (*taskDir, error) {
	root := filepath.Join(w.cfg.ScratchRoot, c.TaskID+"-"+strconv.Itoa(c.RunID))
	// RemoveAll follows no link: it unlinks them.
	_ = os.RemoveAll(root)
	td := &taskDir{root: root, job: filepath.Join(root, "job"), work: filepath.Join(root, "work")}
	for _, d := range []string{root, td.work} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return td, err
		}
	}
	uid, gid, err := runner.ParseUser(jobspec.UserID)
	if err != nil {
		return td, err
	}
	if _, _, err := runner.PrepareScratch(td.job, uid, gid); err != nil {
		return td, err
	}
	td.scratch, err = scratchdir.Open(td.job, runner.ScratchMount)
	return td, err
}

func (td *taskDir) close() {
	if td.scratch != nil {
		td.scratch.Close()
	}
	_ = os.RemoveAll(td.root)
}

// openOutput opens the job's output, refusing anything but a regular
// file within the scratch limit: the job's fault, a failure with a
// message that says what it found.
func (w *Worker) openOutput(td *taskDir) (*os.File, int64, *outcome) {
	f, size, err := td.scratch.OpenRegular(runner.OutputName, max(w.cfg.MaxScratchBytes, 0))
	if err != nil {
		var ue *scratchdir.UnsafeError
		if errors.As(err, &ue) {
			o := failed("%v", ue)
			return nil, 0, &o
		}
		o := exception(taskdef.ReasonInternalError, "open the job's output: %v", err)
		return nil, 0, &o
	}
	return f, size, nil
}

// ctxReader stops a long read (sorting or counting a large output) once
// the run is canceled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (w *Worker) containerSpec(c taskdef.Claim, spec jobspec.Spec, td *taskDir) runner.Spec {
	p := c.Task.Payload
	env := make(map[string]string, len(p.Env))
	for k, v := range p.Env {
		if k != taskdef.EnvCredentials {
			env[k] = v
		}
	}
	return runner.Spec{
		TaskID: c.TaskID, RunID: c.RunID, WorkerID: w.cfg.WorkerID, Kind: p.Kind,
		Image: p.Image, Entrypoint: []string{}, Cmd: spec.Command(p.Kind), Env: env,
		ScratchDir: td.job, Input: w.cfg.Input, User: jobspec.UserID, Limits: w.cfg.Ceilings.limits(p.Limits),
		// checkPayload bounded it by the run time ceiling: no overflow.
		MaxRunTime:   time.Duration(p.MaxRunTime) * time.Second,
		ScratchLimit: max(w.cfg.MaxScratchBytes, 0),
	}
}

// runContainer runs the container fed by input and maps the runner's
// result to an outcome. It returns ok when the job succeeded.
func (w *Worker) runContainer(ctx context.Context, rs runner.Spec, input io.Reader, tlog *taskLog) (outcome, bool) {
	// The job's own output is kept apart from the worker's lines so a
	// failure quotes the job, not the feeder's bad-line notes.
	jobOut := &outputTail{max: 4096}
	both := io.MultiWriter(tlog, jobOut)
	res, err := w.cfg.Runner.Run(ctx, rs, runner.Streams{Stdin: input, Stdout: both, Stderr: both})
	if err != nil {
		var fail *inputFailure
		if errors.As(err, &fail) {
			return failed("%s", fail.msg), false
		}
		var ie *inputException
		if errors.As(err, &ie) {
			return exception(ie.reason, "%v", ie.err), false
		}
		var ex *runner.Exception
		if errors.As(err, &ex) {
			if ex.Reason == taskdef.ReasonResourceUnavail && cerrdefs.IsNotFound(ex.Err) {
				// The image went between the spec read and the create:
				// handed back, as a missing image is.
				w.imageMissed(rs.Image)
			}
			// With its cause: Docker's own reason when it refused the
			// container.
			return exception(ex.Reason, "%s", ex.Error()), false
		}
		return exception(taskdef.ReasonInternalError, "run container: %v", err), false
	}
	if res.Outcome != runner.OutcomeSucceeded {
		return failed("%s", failureMessage(res.Message+pidsHint(rs.Limits.Pids, w.cfg.Ceilings.Pids, jobOut.String()), jobOut.String())), false
	}
	if rs.Input != runner.InputNone && !res.InputComplete {
		return failed("the job exited 0 before it read all of its input (%d bytes delivered); a mapper or reducer must read its input to the end", res.InputBytes), false
	}
	return outcome{}, true
}

// pidsHint explains a failure whose output shows a process or thread
// could not be created: EAGAIN from fork, clone or pthread_create is what
// a job meets at its pids limit (a fork bomb, or a pool too large).
func pidsHint(pids, ceiling int64, jobOutput string) string {
	if !strings.Contains(strings.ToLower(jobOutput), "resource temporarily unavailable") {
		return ""
	}
	return fmt.Sprintf(" (a process or thread could not be created: the job may run at most %d processes and threads; raise payload.limits.pids, up to this worker's %d (--max-task-pids), or create fewer)", pids, ceiling)
}

// failureMessage leads with the line of the job's output that says why
// it failed, so that readers that keep only a message's head, like the
// owner's email, still say why; the output's last lines follow for
// context. That line is a Go panic's (its stack follows it), else the
// last one (a Python traceback's exception).
func failureMessage(runnerMsg, jobOutput string) string {
	out := strings.TrimSpace(lastLines(jobOutput, 12))
	if out == "" {
		return runnerMsg
	}
	head := ""
	for _, line := range strings.Split(strings.TrimSpace(jobOutput), "\n") {
		if strings.Contains(line, "panic: ") {
			head = strings.TrimSpace(line)
		}
	}
	if head == "" {
		head = out
		if i := strings.LastIndexByte(out, '\n'); i >= 0 {
			head = strings.TrimSpace(out[i+1:])
		}
	}
	return runnerMsg + ": " + head + "\n" + out
}

// outputTail keeps about the last max bytes written to it.
type outputTail struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (o *outputTail) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, p...)
	if len(o.buf) > 2*o.max {
		o.buf = append(o.buf[:0], o.buf[len(o.buf)-o.max:]...)
	}
	return len(p), nil
}

// String returns the last max bytes, from a line start when cut.
func (o *outputTail) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := o.buf
	if len(b) > o.max {
		b = b[len(b)-o.max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (w *Worker) runMapper(ctx context.Context, c taskdef.Claim, spec jobspec.Spec, td *taskDir, tlog *taskLog, progress *progressSource) outcome {
	p := c.Task.Payload
	blob := p.Env[taskdef.EnvCredentials]
	if blob == "" && len(p.Inputs) > 0 {
		return exception(taskdef.ReasonMalformedPayload, "mapper has inputs but no %s in its env; submit it with `af submit`", taskdef.EnvCredentials)
	}
	f := &feeder{
		bucket: p.Bucket, prefix: p.Prefix, schema: layout.Schema{Fields: p.Schema}, parallel: w.cfg.DownloadParallel,
		policy:       inputPolicy{maxBadFiles: int64(spec.MaxBadFiles), maxBadLineRatio: spec.MaxBadLineRatio},
		noDecompress: spec.Decompress == jobspec.DecompressNone,
		open:         w.cfg.Decompress,
		logLine:      tlog.logf,
		retry:        s3Retry{Clock: w.clock},
	}
	if len(p.Schema) == 0 {
		f.schema = layout.Telemetry()
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
	out, ok := w.runContainer(ctx, w.containerSpec(c, spec, td), pr, tlog)
	_ = pr.CloseWithError(errors.New("container ended"))
	if n := f.resumes.Load(); n > 0 {
		tlog.logf("s3: %d GET(s) retried after faults of S3 or the network", n)
	}
	st := f.stats()
	if !ok {
		out.stats = st
		return out
	}
	output, size, bad := w.openOutput(td)
	if bad != nil {
		bad.stats = st
		return *bad
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
			return o
		}
		o := w.hostFault("sort mapper output", err)
		o.stats = st
		return o
	}
	st.RecordsOut = ss.Lines
	tlog.logf("mapper output: %d key/value lines, %d bytes, sorted in %d spilled runs", ss.Lines, ss.Bytes, ss.Runs)
	if err := w.uploadFile(ctx, c, taskdef.ResultArtifact, sorted); err != nil {
		o := exception(taskdef.ReasonResourceUnavail, "upload %s: %v", taskdef.ResultArtifact, err)
		o.stats = st
		return o
	}
	return outcome{state: taskdef.StateCompleted, message: "mapper completed", stats: st}
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

// uploadFile uploads a file of the worker's own dir.
func (w *Worker) uploadFile(ctx context.Context, c taskdef.Claim, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return w.cfg.Queue.Claimed(c).UploadArtifact(ctx, name, "text/plain; charset=utf-8", f, fi.Size())
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
	paths, bytesIn, err := w.fetchInputs(ctx, ids, filepath.Join(td.work, "inputs"))
	if err != nil {
		if diskFull(err) {
			return w.hostFault("fetch mapper results", err)
		}
		return exception(taskdef.ReasonResourceUnavail, "fetch mapper results: %v", err)
	}
	// A merge of thousands of results opens at most extsort.DefaultFanIn
	// of them at once, merging runs of them into the work dir first.
	merger, err := extsort.MergeFiles(paths, ids, extsort.MergeOptions{Dir: td.work, FanIn: w.cfg.MergeFanIn})
	if err != nil {
		var le *extsort.LineError
		var oe *extsort.OrderError
		if errors.As(err, &le) || errors.As(err, &oe) {
			// Workers upload sorted results; this one was not written by
			// a worker, so rerunning the reducer cannot help.
			return failed("merge mapper results: %v; rerun the mapper tasks whose results are malformed", err)
		}
		if diskFull(err) {
			return w.hostFault("merge mapper results", err)
		}
		return exception(taskdef.ReasonInternalError, "merge mapper results: %v", err)
	}
	defer merger.Close()
	pr, pw := io.Pipe()
	go func() {
		_, err := merger.WriteTo(pw)
		pw.CloseWithError(err)
	}()
	lc := &lineCounter{r: pr}
	progress.set(func() taskdef.Stats { s := lc.stats(); s.Bytes = bytesIn; s.Files = int64(len(ids)); return s })
	out, ok := w.runContainer(ctx, w.containerSpec(c, spec, td), lc, tlog)
	_ = pr.CloseWithError(errors.New("container ended"))
	st := lc.stats()
	st.Files, st.Bytes = int64(len(ids)), bytesIn
	if !ok {
		out.stats = st
		return out
	}
	output, size, bad := w.openOutput(td)
	if bad != nil {
		bad.stats = st
		return *bad
	}
	defer output.Close()
	lines, err := countLines(ctxReader{ctx, io.LimitReader(output, size)})
	if err == nil {
		_, err = output.Seek(0, io.SeekStart)
	}
	if err != nil {
		o := exception(taskdef.ReasonInternalError, "read the job result: %v", err)
		o.stats = st
		return o
	}
	st.RecordsOut = lines
	// A section reader, so a failed upload can be retried from the start.
	if err := w.cfg.Queue.Claimed(c).UploadArtifact(ctx, taskdef.ResultArtifact, "text/plain; charset=utf-8",
		io.NewSectionReader(output, 0, size), size); err != nil {
		o := exception(taskdef.ReasonResourceUnavail, "upload %s: %v", taskdef.ResultArtifact, err)
		o.stats = st
		return o
	}
	tlog.logf("reducer output: %d lines", lines)
	return outcome{state: taskdef.StateCompleted, message: "reducer completed", stats: st}
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

// fetchInputs downloads each mapper's result into dir, a few at a time.
func (w *Worker) fetchInputs(ctx context.Context, ids []string, dir string) ([]string, int64, error) {
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
			sizes[i], errs[i] = w.fetchWithRetries(ctx, id, paths[i])
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
func (w *Worker) fetchWithRetries(ctx context.Context, taskID, path string) (int64, error) {
	policy := s3Retry{Clock: w.clock}.fill()
	for try := 1; ; try++ {
		n, err := w.fetchOne(ctx, taskID, path)
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

func (w *Worker) fetchOne(ctx context.Context, taskID, path string) (int64, error) {
	body, err := w.cfg.Queue.GetArtifact(ctx, taskID, -1, taskdef.ResultArtifact)
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

// redactKeyID keeps enough of an access key id to match it in STS logs.
func redactKeyID(id string) string {
	if len(id) > 4 {
		return id[:4]
	}
	return ""
}
