package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/af-project/af/internal/scratchdir"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/units"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Docker is the part of the Docker client the runner uses;
// *client.Client implements it.
type Docker interface {
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerAttach(ctx context.Context, containerID string, options container.AttachOptions) (types.HijackedResponse, error)
	ContainerStart(ctx context.Context, containerID string, options container.StartOptions) error
	ContainerWait(ctx context.Context, containerID string, condition container.WaitCondition) (<-chan container.WaitResponse, <-chan error)
	ContainerKill(ctx context.Context, containerID, signal string) error
	ContainerInspect(ctx context.Context, containerID string) (container.InspectResponse, error)
	ContainerRemove(ctx context.Context, containerID string, options container.RemoveOptions) error
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	CopyFromContainer(ctx context.Context, containerID, srcPath string) (io.ReadCloser, container.PathStat, error)
}

var _ Docker = (*client.Client)(nil)

// NewDockerClient connects to the engine the standard Docker environment
// names (DOCKER_HOST etc.), speaking the engine's API version.
func NewDockerClient() (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return cli, nil
}

// Clock is the time source; tests drive maxRunTime with a fake one.
type Clock interface {
	Now() time.Time
	// After is time.After: a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real Clock.
type SystemClock struct{}

// Now is time.Now.
func (SystemClock) Now() time.Time { return time.Now() }

// After is time.After.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options configure a Runner.
type Options struct {
	Logger *slog.Logger
	Clock  Clock
	// WorkerID labels every container, so ReapOrphans can find the ones a
	// crashed worker with the same id left behind.
	WorkerID string
	// CallTimeout bounds each Docker API call (create, start, kill,
	// inspect, remove, list); the wait and the attached streams are bounded
	// by maxRunTime and the caller's context instead. Default 30s.
	CallTimeout time.Duration
	// LogHead and LogTail bound the log kept of a container's output: the
	// first LogHead bytes are streamed as they come, then only the last
	// LogTail bytes are kept and written when the container ends. Defaults
	// 4 MiB each; negative means unbounded.
	LogHead, LogTail int64
	// MaxCPUs caps a task's CPU limit, because Docker refuses to create a
	// container asking for more CPUs than the host has. Default: this
	// host's CPU count.
	MaxCPUs float64
	// ScratchEvery is how often a running job's scratch usage is measured
	// when its Spec has a ScratchLimit, on Clock. Default 1s.
	ScratchEvery time.Duration
}

// Streams connect a container to the worker.
type Streams struct {
	// Stdin is the container's input for InputStdin and InputFIFO. A read
	// error other than io.EOF aborts the run (see Run).
	Stdin io.Reader
	// Stdout and Stderr receive the container's output as it comes,
	// bounded by Options.LogHead/LogTail. Nil discards.
	Stdout io.Writer
	Stderr io.Writer
}

// Outcome is how a run ended, in TaskCluster's terms.
type Outcome int

const (
	// OutcomeSucceeded: the job exited 0 within its limits.
	OutcomeSucceeded Outcome = iota + 1
	// OutcomeFailed: the job's own failure (non-zero exit, out of memory, max run
	// time exceeded); the worker reports the task failed.
	OutcomeFailed
	// OutcomeException: the job did not get a fair run (image missing, daemon
	// error, malformed payload, worker shutdown); the worker reports an
	// exception with Result.Reason.
	OutcomeException
)

func (o Outcome) String() string {
	switch o {
	case OutcomeSucceeded:
		return "succeeded"
	case OutcomeFailed:
		return "failed"
	case OutcomeException:
		return "exception"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Result describes a finished run.
type Result struct {
	Outcome Outcome
	// Reason is a taskdef reason: ReasonCompleted, ReasonFailed, or for an
	// OutcomeException one of ReasonMalformedPayload, ReasonResourceUnavail,
	// ReasonInternalError, ReasonWorkerShutdown.
	Reason string
	// Message says why, for people: it goes into the task's log and run.
	Message     string
	ExitCode    int
	OOMKilled   bool
	TimedOut    bool
	ContainerID string
	Started     time.Time
	Finished    time.Time
	// InputBytes were delivered into the container; InputComplete says the
	// whole of Streams.Stdin was, and the end of input signalled.
	InputBytes    int64
	InputComplete bool
	// LogBytes is everything the container printed; LogElided how much of
	// it the log bound dropped. LogErr is the first error writing to
	// Streams.Stdout/Stderr, which does not stop the run.
	LogBytes  int64
	LogElided int64
	LogErr    error
	// ScratchBytes is the scratch dir's last measured usage (with a
	// ScratchLimit); ScratchExceeded says it went over and the job was
	// stopped for it.
	ScratchBytes    int64
	ScratchExceeded bool
}

// Exception is the error Run returns when the outcome is OutcomeException.
type Exception struct {
	// Reason is the taskdef reason to report the exception with.
	Reason  string
	Message string
	Err     error
}

func (e *Exception) Error() string {
	if e.Err == nil {
		return e.Message
	}
	return e.Message + ": " + e.Err.Error()
}

// Unwrap gives the cause, so callers reach their own input errors with
// errors.As.
func (e *Exception) Unwrap() error { return e.Err }

// Runner runs task containers on one Docker engine.
type Runner struct {
	docker Docker
	opts   Options
	log    *slog.Logger
}

// New returns a Runner using docker.
func New(docker Docker, opts Options) (*Runner, error) {
	if docker == nil {
		return nil, errors.New("runner: no docker client")
	}
	if opts.WorkerID == "" {
		return nil, errors.New("runner: a worker id is required: it labels containers so orphans can be reaped")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = SystemClock{}
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 30 * time.Second
	}
	if opts.LogHead == 0 {
		opts.LogHead = 4 << 20
	}
	if opts.LogTail == 0 {
		opts.LogTail = 4 << 20
	}
	if opts.MaxCPUs <= 0 {
		opts.MaxCPUs = float64(runtime.NumCPU())
	}
	if opts.ScratchEvery <= 0 {
		opts.ScratchEvery = time.Second
	}
	return &Runner{docker: docker, opts: opts, log: opts.Logger}, nil
}

// call gives one Docker API call its own deadline. It derives from
// context.WithoutCancel so cleanup calls still run after the caller's
// context is canceled.
func (r *Runner) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), r.opts.CallTimeout)
}

func exception(res Result, reason, msg string, err error) (Result, error) {
	res.Outcome = OutcomeException
	res.Reason = reason
	res.Message = msg
	if err != nil {
		res.Message = msg + ": " + err.Error()
	}
	return res, &Exception{Reason: reason, Message: msg, Err: err}
}

// Run creates the task's container, feeds it streams.Stdin, streams its
// output into streams.Stdout/Stderr, waits for it to exit (killing it at
// spec.MaxRunTime), and removes it, whatever happens, also on panic or when
// ctx is canceled.
//
// The error is non-nil exactly when the Result's Outcome is Exception, and
// is then an *Exception. A non-zero exit, an OOM kill or maxRunTime are
// the job's failure, with a nil error. When ctx is canceled the container
// is killed and Run returns an exception with ReasonWorkerShutdown. When
// streams.Stdin returns an error, the container is killed and Run returns
// an exception with ReasonInternalError wrapping that error: a worker
// whose reader signals bad input with its own error type finds it with
// errors.As and may report a failure instead. Run may return while a Read
// on streams.Stdin that blocked after the container ended is still in
// progress; the caller unblocks it (by canceling its download, say).
func (r *Runner) Run(ctx context.Context, spec Spec, streams Streams) (Result, error) {
	var res Result
	if spec.WorkerID == "" {
		spec.WorkerID = r.opts.WorkerID
	}
	if spec.Deadline.IsZero() && spec.MaxRunTime > 0 {
		// The wall clock, not opts.Clock: other processes read the label.
		spec.Deadline = time.Now().Add(spec.MaxRunTime)
	}
	// A defensive bound: Docker refuses more CPUs than the host has. The
	// worker's --max-task-cpus ceiling (at most the host's CPUs) refuses
	// such a task before it gets here.
	if spec.Limits.CPUs > r.opts.MaxCPUs {
		r.log.Info("capping the task's cpu limit to the host's", "task", spec.TaskID, "asked", spec.Limits.CPUs, "cpus", r.opts.MaxCPUs)
		spec.Limits.CPUs = r.opts.MaxCPUs
	}
	cfg, host, err := ContainerConfig(spec)
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			return exception(res, taskdef.ReasonMalformedPayload, "the task cannot run", err)
		}
		return exception(res, taskdef.ReasonInternalError, "the worker built a bad container spec", err)
	}
	if spec.Input != InputNone && streams.Stdin == nil {
		return exception(res, taskdef.ReasonInternalError, "the worker built a bad container spec",
			fmt.Errorf("input mode %v needs Streams.Stdin", spec.Input))
	}
	if err := ctx.Err(); err != nil {
		return exception(res, taskdef.ReasonWorkerShutdown, "the worker is shutting down", err)
	}
	// From the container's start on, the job owns the scratch dir: every
	// later look into it goes through this descriptor, opened (and the
	// FIFO's identity recorded) while only the worker has touched the
	// dir. A missing FIFO is the worker's bug and needs no container to
	// clean up.
	sd, err := scratchdir.Open(spec.ScratchDir, ScratchMount)
	if err != nil {
		return exception(res, taskdef.ReasonInternalError, "the worker's scratch dir", err)
	}
	defer sd.Close()
	var fifo *fifoInput
	if spec.Input == InputFIFO {
		id, err := sd.FIFOID(InputFIFOName)
		if err != nil {
			return exception(res, taskdef.ReasonInternalError, "no input fifo in the scratch dir (call PrepareScratch first)", err)
		}
		fifo = &fifoInput{dir: sd, id: id}
	}

	log := r.log.With("task", spec.TaskID, "run", spec.RunID, "image", spec.Image)
	cctx, cancel := r.call(ctx)
	created, err := r.docker.ContainerCreate(cctx, cfg, host, nil, nil, containerName(spec))
	cancel()
	if err != nil {
		switch {
		case cerrdefs.IsNotFound(err):
			return exception(res, taskdef.ReasonResourceUnavail,
				fmt.Sprintf("image %s is not on this worker: build it with `make images` or load it with `docker load`", spec.Image), err)
		case client.IsErrConnectionFailed(err):
			return exception(res, taskdef.ReasonInternalError, "the docker daemon is unreachable", err)
		case cerrdefs.IsInvalidArgument(err):
			// Docker checked the configuration, and the only part of it a
			// task chooses is its image name and limits.
			return exception(res, taskdef.ReasonMalformedPayload, "docker refused the task's container (check payload.image and payload.limits)", err)
		}
		return exception(res, taskdef.ReasonInternalError, "creating the container", err)
	}
	id := created.ID
	res.ContainerID = id
	log = log.With("container", shortID(id))
	for _, w := range created.Warnings {
		log.Warn("docker warning creating the container", "warning", w)
	}
	// Removal runs on every path out, panics included, with its own
	// deadline so a canceled ctx still cleans up.
	defer r.remove(ctx, id, log)

	// Attach before starting so no output is lost.
	cctx, cancel = r.call(ctx)
	hj, err := r.docker.ContainerAttach(cctx, id, container.AttachOptions{
		Stream: true, Stdin: spec.Input == InputStdin, Stdout: true, Stderr: true,
	})
	cancel()
	if err != nil {
		return exception(res, taskdef.ReasonInternalError, "attaching to the container", err)
	}
	defer hj.Close()

	// The wait is registered before the start so a container that exits at
	// once is not missed; it lives as long as the run, not a call timeout.
	waitCtx, stopWait := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWait()
	waitC, waitErrC := r.docker.ContainerWait(waitCtx, id, container.WaitConditionNextExit)

	logs := newLogLimit(streams.Stdout, streams.Stderr, r.opts.LogHead, r.opts.LogTail)
	logDone := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(logs.writer(streamStdout), logs.writer(streamStderr), hj.Reader)
		logDone <- err
	}()

	cctx, cancel = r.call(ctx)
	err = r.docker.ContainerStart(cctx, id, container.StartOptions{})
	cancel()
	res.Started = r.opts.Clock.Now()
	if err != nil {
		if client.IsErrConnectionFailed(err) {
			return exception(res, taskdef.ReasonInternalError, "the docker daemon is unreachable", err)
		}
		// Docker's own words (often the OCI runtime's) are in err.
		return exception(res, taskdef.ReasonInternalError, "starting the container", err)
	}
	log.Info("container started", "input", spec.Input.String(), "maxRunTime", spec.MaxRunTime)

	var feed *feeder
	if spec.Input != InputNone {
		feed = &feeder{src: streams.Stdin, done: make(chan struct{}), stop: make(chan struct{})}
		switch spec.Input {
		case InputStdin:
			go feed.run(func() (io.Writer, func() error, error) { return hj.Conn, hj.CloseWrite, nil })
		case InputFIFO:
			go feed.run(func() (io.Writer, func() error, error) { return fifo.open(feed.stop, log) })
		}
		defer feed.halt()
	}

	var deadline <-chan time.Time
	if spec.MaxRunTime > 0 {
		deadline = r.opts.Clock.After(spec.MaxRunTime)
	}
	var feedDone <-chan struct{}
	if feed != nil {
		feedDone = feed.done
	}
	// The scratch watcher measures in the background, one walk at a time,
	// so a job that makes its tree slow to walk does not stall this loop.
	var scratchTick <-chan time.Time
	usageC := make(chan usageResult, 1)
	var walks sync.WaitGroup
	defer walks.Wait() // before sd.Close, which was deferred earlier
	if spec.ScratchLimit > 0 {
		scratchTick = r.opts.Clock.After(r.opts.ScratchEvery)
	}
	var jobFault error

	exited := false
	for !exited {
		select {
		case w := <-waitC:
			exited = true
			if w.Error != nil && w.Error.Message != "" {
				log.Warn("docker reported an error waiting for the container", "error", w.Error.Message)
			}
		case err := <-waitErrC:
			r.kill(ctx, id, log)
			res.Finished = r.opts.Clock.Now()
			return exception(res, taskdef.ReasonInternalError, "waiting for the container", err)
		case <-deadline:
			deadline = nil
			if r.kill(ctx, id, log) {
				res.TimedOut = true
				log.Info("container killed: max run time exceeded", "maxRunTime", spec.MaxRunTime)
			}
		case <-feedDone:
			feedDone = nil
			if err := feed.readErr; err != nil {
				r.kill(ctx, id, log)
				r.finishLogs(&res, logs, logDone, hj, feed)
				res.Finished = r.opts.Clock.Now()
				return exception(res, taskdef.ReasonInternalError, "reading the task's input", err)
			}
			if err := feed.openErr; err != nil && jobFault == nil {
				// The job replaced its input FIFO: stop it now rather
				// than let it run on without input.
				jobFault = err
				r.kill(ctx, id, log)
				log.Info("container killed: its input fifo was replaced", "err", err)
			}
		case <-scratchTick:
			scratchTick = nil
			walks.Add(1)
			go func() {
				defer walks.Done()
				n, err := sd.Usage()
				usageC <- usageResult{n, err}
			}()
		case u := <-usageC:
			res.ScratchBytes = u.bytes
			if over := r.overScratch(&res, spec, u, log); over != nil {
				if jobFault == nil {
					jobFault = over
				}
				r.kill(ctx, id, log)
				continue
			}
			if !res.ScratchExceeded && jobFault == nil {
				scratchTick = r.opts.Clock.After(r.opts.ScratchEvery)
			}
		case <-ctx.Done():
			r.kill(ctx, id, log)
			r.finishLogs(&res, logs, logDone, hj, feed)
			res.Finished = r.opts.Clock.Now()
			return exception(res, taskdef.ReasonWorkerShutdown, "the worker is shutting down", ctx.Err())
		}
	}
	res.Finished = r.opts.Clock.Now()
	r.finishLogs(&res, logs, logDone, hj, feed)
	if feed != nil && feed.openErr != nil && jobFault == nil {
		jobFault = feed.openErr
	}
	if spec.ScratchLimit > 0 && jobFault == nil {
		// A last look: a job may fill the dir between two and exit.
		walks.Wait()
		select {
		case u := <-usageC:
			res.ScratchBytes = u.bytes
		default:
		}
		n, err := sd.Usage()
		res.ScratchBytes = max(res.ScratchBytes, n)
		jobFault = r.overScratch(&res, spec, usageResult{res.ScratchBytes, err}, log)
	}

	cctx, cancel = r.call(ctx)
	info, err := r.docker.ContainerInspect(cctx, id)
	cancel()
	if err != nil {
		return exception(res, taskdef.ReasonInternalError, "inspecting the exited container", err)
	}
	if info.State == nil {
		return exception(res, taskdef.ReasonInternalError, "inspecting the exited container", errors.New("no state"))
	}
	res.ExitCode = info.State.ExitCode
	res.OOMKilled = info.State.OOMKilled
	switch {
	case jobFault != nil:
		res.Outcome, res.Reason = OutcomeFailed, taskdef.ReasonFailed
		res.Message = jobFault.Error()
	case res.TimedOut:
		res.Outcome, res.Reason = OutcomeFailed, taskdef.ReasonFailed
		res.Message = fmt.Sprintf("max run time exceeded: the container was killed after %s; raise the task's maxRunTime or give it less input", spec.MaxRunTime)
	case res.ExitCode != 0 && res.OOMKilled:
		res.Outcome, res.Reason = OutcomeFailed, taskdef.ReasonFailed
		mem, _, _, _ := limits(spec.Limits)
		res.Message = fmt.Sprintf("out of memory; raise the task's memory limit (it was %d MiB)", mem>>20)
	case res.ExitCode != 0:
		res.Outcome, res.Reason = OutcomeFailed, taskdef.ReasonFailed
		res.Message = fmt.Sprintf("the job exited with code %d", res.ExitCode)
		if res.ExitCode > 128 && res.ExitCode < 160 {
			res.Message += fmt.Sprintf(" (killed by signal %d)", res.ExitCode-128)
		}
		if res.ExitCode == 128+int(syscall.SIGXFSZ) && spec.ScratchLimit > 0 {
			res.Message += fmt.Sprintf(": a file grew past %s, the most a job may write (the worker's --max-scratch-bytes); write less or ask the operator", units.Bytes(spec.ScratchLimit))
		}
	default:
		res.Outcome, res.Reason = OutcomeSucceeded, taskdef.ReasonCompleted
		res.Message = "the job exited with code 0"
		if res.OOMKilled {
			log.Warn("a process in the container ran out of memory, but the job exited 0")
		}
	}
	log.Info("container exited", "outcome", res.Outcome.String(), "exitCode", res.ExitCode,
		"oomKilled", res.OOMKilled, "timedOut", res.TimedOut, "inputBytes", res.InputBytes,
		"logBytes", res.LogBytes, "duration", res.Finished.Sub(res.Started))
	return res, nil
}

// finishLogs waits for the attached output to drain, bounded by the call
// timeout in case the daemon never closes the stream, then flushes the
// kept tail and records the input and log counters.
func (r *Runner) finishLogs(res *Result, logs *logLimit, logDone <-chan error, hj types.HijackedResponse, feed *feeder) {
	select {
	case <-logDone:
	case <-time.After(r.opts.CallTimeout):
		r.log.Warn("the container's output stream did not end; closing it", "container", shortID(res.ContainerID))
		hj.Close()
		<-logDone
	}
	logs.finish()
	res.LogBytes, res.LogElided, res.LogErr = logs.stats()
	if feed != nil {
		// The feeder may still be blocked on a write nobody will take:
		// closing the connection frees it; stopping it closes a FIFO it
		// writes (Go's poller ends the blocked write) or ends its wait
		// for the container to open the FIFO. Nothing here opens a path
		// in the scratch dir again.
		hj.Close()
		feed.halt()
		// It may also be blocked reading Streams.Stdin, which only the
		// caller can unblock: give it a moment, then leave it behind
		// rather than hold up the run's end.
		select {
		case <-feed.done:
			res.InputComplete = feed.complete
		case <-time.After(feederGrace):
			r.log.Warn("the task's input reader is still blocked after the container ended; leaving it", "container", shortID(res.ContainerID))
		}
		res.InputBytes = feed.written.Load()
	}
}

// feederGrace is how long the end of a run waits for the input copy to
// notice the container is gone.
const feederGrace = 2 * time.Second

// kill sends SIGKILL and reports whether the container was still running.
func (r *Runner) kill(ctx context.Context, id string, log *slog.Logger) bool {
	cctx, cancel := r.call(ctx)
	defer cancel()
	if err := r.docker.ContainerKill(cctx, id, "KILL"); err != nil {
		if !cerrdefs.IsConflict(err) && !cerrdefs.IsNotFound(err) {
			log.Warn("killing the container", "error", err)
		}
		return false
	}
	return true
}

func (r *Runner) remove(ctx context.Context, id string, log *slog.Logger) {
	cctx, cancel := r.call(ctx)
	defer cancel()
	err := r.docker.ContainerRemove(cctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		log.Error("removing the container; ReapExpired will remove it once past its deadline, or ReapOrphans at the next worker start", "error", err)
	}
}

// feeder copies the task's input into the container and signals the end
// of input by closing the write side.
type feeder struct {
	src     io.Reader
	done    chan struct{}
	written atomic.Int64
	// stop is closed by halt: the run is ending.
	stop     chan struct{}
	stopOnce sync.Once
	// readErr, openErr and complete are set before done is closed.
	// openErr is the job's fault: its input FIFO was replaced.
	readErr  error
	openErr  *scratchdir.UnsafeError
	complete bool
}

// halt stops the feeder: a wait for the FIFO's reader ends, and a write
// blocked in it fails.
func (f *feeder) halt() { f.stopOnce.Do(func() { close(f.stop) }) }

func (f *feeder) run(open func() (dst io.Writer, closeWrite func() error, err error)) {
	defer close(f.done)
	dst, closeWrite, err := open()
	if err != nil {
		if !errors.As(err, &f.openErr) && !errors.Is(err, errFeedStopped) {
			f.readErr = fmt.Errorf("open the input fifo: %w", err)
		}
		return
	}
	if f, ok := dst.(*os.File); ok {
		// After closeWrite this is a no-op; on the other paths it frees
		// the descriptor.
		defer f.Close()
	}
	buf := make([]byte, feedBufSize)
	for {
		n, err := f.src.Read(buf)
		if n > 0 {
			m, werr := dst.Write(buf[:n])
			f.written.Add(int64(m))
			if werr != nil {
				// The container stopped reading (it exited or closed its
				// input); its exit status says whether that was fine.
				return
			}
		}
		if err == io.EOF {
			f.complete = closeWrite() == nil
			return
		}
		if err != nil {
			f.readErr = err
			return
		}
	}
}

// ReapOrphans force-removes every container labelled as af's and as
// workerID's: ones a previous process of this worker left behind when it
// was killed before it could clean up. A worker calls it at start, before
// claiming; worker ids must therefore be stable across restarts on a host
// (the hostname, say) and unique among the workers sharing an engine, or
// one worker would remove another's running containers. It returns how
// many it removed. Containers with a deadline label are also removed by
// any worker's ReapExpired once expired; ReapOrphans is what removes the
// rest (older workers' containers, and the spec reader's).
func (r *Runner) ReapOrphans(ctx context.Context, workerID string) (int, error) {
	if workerID == "" {
		return 0, errors.New("reap orphans: empty worker id would match every worker's containers")
	}
	cctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	list, err := r.docker.ContainerList(cctx, container.ListOptions{
		All: true,
		Filters: filters.NewArgs(
			filters.Arg("label", LabelManaged+"=true"),
			filters.Arg("label", LabelWorkerID+"="+workerID),
		),
	})
	cancel()
	if err != nil {
		return 0, fmt.Errorf("reap orphans: listing containers: %w", err)
	}
	removed := 0
	var errs []error
	for _, c := range list {
		// The daemon filtered already; checking again guards against a
		// daemon that ignores an unknown filter.
		if c.Labels[LabelManaged] != "true" || c.Labels[LabelWorkerID] != workerID {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
		err := r.docker.ContainerRemove(cctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		cancel()
		if err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("removing %s: %w", shortID(c.ID), err))
			continue
		}
		removed++
		r.log.Warn("removed an orphaned job container", "container", shortID(c.ID),
			"task", c.Labels[LabelTaskID], "run", c.Labels[LabelRunID], "state", c.State)
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("reap orphans: %w", errors.Join(errs...))
	}
	return removed, nil
}

// containerName makes the container easy to find in `docker ps`; the
// random suffix keeps a stale container of the same run from blocking
// creation.
func containerName(spec Spec) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("af-%s-%d-%s", spec.TaskID, spec.RunID, hex.EncodeToString(b[:]))
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// feedBufSize is the unit the feeder moves into the container: the size
// growPipe gives the FIFO, so one write fills the pipe at most once.
const feedBufSize = 1 << 20

// growPipe raises the FIFO's kernel buffer from 64 KiB to 1 MiB (the
// default pipe-max-size). With the small buffer the job and the feeder
// wake each other every 64 KiB, and those writes and wakeups cost more
// CPU than the copying; the bigger buffer cuts them sixteenfold. Failing
// is harmless: the pipe keeps its default size.
func growPipe(f *os.File, log *slog.Logger) {
	if _, err := unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, feedBufSize); err != nil {
		log.Debug("could not grow the input FIFO's buffer", "err", err)
	}
}

// fifoInput is the input FIFO of a run, known by the identity it had
// before the job started. A job that deletes it and makes a new FIFO
// that happens to get the freed inode number passes the check; writing
// into that FIFO is as harmless as into the worker's, and a job that then
// never reads it waits out maxRunTime like one that never opens its input.
type fifoInput struct {
	dir *scratchdir.Dir
	id  scratchdir.FileID
}

// fifoPoll bounds the wait between two tries to open the FIFO before the
// job has opened its end: short, because every task waits it once.
const fifoPoll = 10 * time.Millisecond

// open opens the FIFO for writing once the job has opened its end, which
// is when the end of input may be signalled by closing: closing a FIFO
// nobody has open yet would discard what was written, and leave the job's
// later open waiting for a writer forever. It never blocks in open(2): it
// retries a non-blocking open until a reader appears or stop is closed,
// and the file it returns is closed when stop is, which ends a write
// blocked in it. It refuses anything but the FIFO the worker made.
func (fi *fifoInput) open(stop <-chan struct{}, log *slog.Logger) (io.Writer, func() error, error) {
	wait := time.Millisecond
	for {
		f, err := fi.dir.OpenFIFO(InputFIFOName, fi.id, true)
		if err == nil {
			growPipe(f, log)
			go func() { <-stop; f.Close() }()
			return f, f.Close, nil
		}
		if !errors.Is(err, scratchdir.ErrNoReader) {
			return nil, nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-stop:
			t.Stop()
			return nil, nil, errFeedStopped
		case <-t.C:
		}
		wait = min(2*wait, fifoPoll)
	}
}

// errFeedStopped is the feeder's end when the run ended before the job
// opened its input.
var errFeedStopped = errors.New("the run ended before the job opened its input")

type usageResult struct {
	bytes int64
	err   error
}

// overScratch judges one measurement of the scratch dir: the job's fault
// (over the limit, or a tree made to defeat the walk) as an error to fail
// the task with, nil otherwise. A walk that failed for the worker's own
// reasons is logged and ignored: the next one may succeed.
func (r *Runner) overScratch(res *Result, spec Spec, u usageResult, log *slog.Logger) error {
	var ue *scratchdir.UnsafeError
	if errors.As(u.err, &ue) {
		return ue
	}
	if u.err != nil {
		log.Warn("measuring the scratch dir", "err", u.err)
	}
	if u.bytes <= spec.ScratchLimit {
		return nil
	}
	if !res.ScratchExceeded {
		log.Info("container killed: scratch limit exceeded", "bytes", u.bytes, "limit", spec.ScratchLimit)
	}
	res.ScratchExceeded = true
	return &scratchError{limit: spec.ScratchLimit}
}

// scratchError is a job that wrote more than its scratch limit.
type scratchError struct{ limit int64 }

func (e *scratchError) Error() string {
	return fmt.Sprintf("the job wrote more than %s to %s (the worker's --max-scratch-bytes); write less or ask the operator", units.Bytes(e.limit), ScratchMount)
}
