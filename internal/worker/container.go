package worker

// This file: the job's container (its spec, its run, failure messages).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/af-project/af/internal/jobspec"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/taskdef"
)

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
		ScratchDir: td.job, JobDir: w.cfg.JobDir, Input: w.cfg.Input, User: jobspec.UserID, Limits: w.cfg.Ceilings.limits(p.Limits),
		// checkPayload bounded it by the run time ceiling: no overflow.
		MaxRunTime:   time.Duration(p.MaxRunTime) * time.Second,
		ScratchLimit: max(w.cfg.MaxScratchBytes, 0),
	}
}

// runContainer runs the container fed by input and maps the runner's
// result to an outcome. It returns ok when the job succeeded. spec is the
// image's job spec, which a job that could not start is told about.
func (w *Worker) runContainer(ctx context.Context, rs runner.Spec, spec jobspec.Spec, input io.Reader, tlog *taskLog) (outcome, bool) {
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
		if msg := startFailure(spec, rs.Kind, res.ExitCode, jobOut.String()); msg != "" {
			return failed("%s", msg), false
		}
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
// last one (a Python traceback's exception), with the user's own file and
// line when the output shows them (userLocation), since a traceback's
// head is the helper's frames.
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
	if loc := userLocation(jobOutput); loc != "" && !strings.Contains(head, loc) {
		head += " (at " + loc + ")"
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
