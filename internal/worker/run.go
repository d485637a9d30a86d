package worker

// This file: a claimed task's lifecycle (run, lease renewal, live log,
// report) and the outcome it reports.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/af-project/af/internal/jobspec"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/redact"
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
	// tee, when set, gets every write as it comes (a local run's
	// terminal); its errors are ignored.
	tee io.Writer
}

func (l *taskLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dirty = true
	if l.tee != nil {
		_, _ = l.tee.Write(p)
	}
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
	req := taskdef.ReportRequest{Reason: out.reason, Message: redact.Text(w.hostPaths(out.message)), Stats: out.stats}
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
	return w.executeWith(ctx, c, tlog, progress, nil)
}

// executeWith checks the payload, reads the image's job spec and prepares
// the run's directory, then runs the task: with run when it is set (a
// local run, see local.go), else as a claimed mapper or reducer.
func (w *Worker) executeWith(ctx context.Context, c taskdef.Claim, tlog *taskLog, progress *progressSource, run func(jobspec.Spec, *taskDir) outcome) outcome {
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
		var pe *pullError
		if errors.As(err, &pe) {
			// As a missing image: a worker that has it, or whose pull
			// works, may run the task.
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
	if run != nil {
		return run(spec, td)
	}
	if p.Kind == taskdef.KindMapper {
		return w.runMapper(ctx, c, spec, td, tlog, progress)
	}
	return w.runReducer(ctx, c, spec, td, tlog, progress)
}

// hostPaths replaces this worker's own directories in a message that
// leaves the host (the task's message, read by anyone who may read the
// queue) with their flags' names: where a worker keeps its files is
// nobody else's business, and a path says nothing the reader can fix.
func (w *Worker) hostPaths(msg string) string {
	for _, d := range []struct{ dir, name string }{{w.cfg.StateDir, "$STATE_DIR"}, {w.cfg.ScratchRoot, "$SCRATCH_ROOT"}} {
		if len(d.dir) > 1 {
			msg = strings.ReplaceAll(msg, d.dir, d.name)
		}
	}
	return msg
}
