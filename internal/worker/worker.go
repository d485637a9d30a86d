package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/decompress"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/taskdef"
)

// Clock is the worker's time source: the runner's, so one fake clock
// drives both in tests.
type Clock = runner.Clock

// SystemClock is the real clock.
type SystemClock = runner.SystemClock

// Config is what a worker needs. Queue, Key, Docker and Runner are
// required.
type Config struct {
	Queue  *queueclient.Client
	Key    *creds.PrivateKey
	Docker *client.Client
	Runner *runner.Runner
	// S3 is where this worker reads job inputs (its own --s3-endpoint or
	// AWS configuration, see awsconf.ResolveWorkerS3). A task whose sealed
	// credentials name another endpoint is refused; the zero value is
	// AWS's regional S3.
	S3 awsconf.WorkerS3

	// JobDir, when set, is mounted read-only at /job in every task's
	// container in place of the image's own (af run --local --job-dir:
	// an edit runs without a docker build). The worker daemon never sets
	// it.
	JobDir string

	WorkerGroup string
	WorkerID    string
	// Capacity is how many tasks run at once (default 1).
	Capacity int
	// ScratchRoot holds the tasks' scratch dirs; it is made private (0700).
	// It belongs to this worker id alone: at start the worker removes the
	// task dirs a killed process of the same id left there.
	ScratchRoot string
	// StateDir records the runs this worker holds with their tokens, so a
	// restarted process hands them back at once. It must lie outside
	// ScratchRoot (default: DefaultStateDir(ScratchRoot)); it is made
	// private (0700).
	StateDir string
	// Input is how records reach the container (default FIFO, which skips
	// the Docker daemon; see BENCHMARKS.md).
	Input runner.InputMode
	// DownloadParallel is how many input files of a task download and
	// decompress at once (default 4).
	DownloadParallel int
	// Decompress opens the input files; nil picks the gzip decoder with
	// decompress.GzipAuto (ISA-L when this build and host have it).
	Decompress *decompress.Opener
	// SortMemory bounds the mapper output sort's memory (default 64 MiB).
	SortMemory int
	// MergeFanIn bounds how many mapper results a reducer's merge opens at
	// once (default extsort.DefaultFanIn); more are merged in passes.
	MergeFanIn int
	// MaxScratchBytes is the most a task's job may store in its /scratch
	// (default DefaultMaxScratchBytes; negative means no limit): a job over
	// it is stopped and its task failed, and no file it writes, its output
	// included, may be larger.
	MaxScratchBytes int64
	// Grace is how long running tasks may finish after shutdown begins
	// before they are reported worker-shutdown (default 30 s).
	Grace time.Duration
	// ClaimWait is the claim-work long-poll (default 20 s).
	ClaimWait time.Duration
	// LogEvery is how often a running task's live log is uploaded
	// (default 5 s).
	LogEvery time.Duration
	// Ceilings bound what a task may ask for; zero fields take
	// DefaultCeilings' values.
	Ceilings Ceilings
	// ReapEvery is how often the worker removes expired job containers of
	// any worker on the engine (default runner.DefaultReapEvery);
	// ReapGrace how long past its deadline a container is left to its own
	// worker (default runner.DefaultReapGrace).
	ReapEvery, ReapGrace time.Duration
	// Pull, when enabled, makes the worker pull a task's image it lacks
	// from the image's registry (tasks name images by digest, so it runs
	// exactly what was submitted).
	Pull PullConfig

	Logger *slog.Logger
	Clock  Clock
}

// DefaultMaxScratchBytes is Config.MaxScratchBytes's default, 10 GiB.
const DefaultMaxScratchBytes int64 = 10 << 30

// Worker claims and runs tasks until its context ends.
type Worker struct {
	cfg   Config
	log   *slog.Logger
	clock Clock
	specs *specCache
	state *runState

	// A task whose image this worker lacks is handed back; the worker then
	// pauses its claims (imageMissed) so that a worker with the image,
	// already waiting in its long-poll, claims the new run first.
	missMu     sync.Mutex
	missStreak int
	pauseUntil time.Time
}

// Claim pauses after a task whose image is missing: the first one 2 s,
// doubling with each missing image in a row, up to 30 s.
const (
	missPauseFirst = 2 * time.Second
	missPauseMax   = 30 * time.Second
)

// imageMissed notes a claimed task whose image is not on this worker and
// pauses the worker's claims. The queue hands out the oldest pending task
// and cannot be asked to skip an image, so a pause is how this worker
// keeps from claiming the task again at once: the new run goes to the
// workers already waiting for work, and on a pool where no worker has
// the image the task ends after its retries with a message that names it.
func (w *Worker) imageMissed(image string) {
	w.missMu.Lock()
	defer w.missMu.Unlock()
	w.missStreak++
	d := min(missPauseFirst<<min(w.missStreak-1, 10), missPauseMax)
	w.pauseUntil = w.clock.Now().Add(d)
	w.log.Warn("a claimed task's image is not on this worker: handing the task back and pausing claims", "image", image, "pause", d)
}

// imageFound ends a run of missing images.
func (w *Worker) imageFound() {
	w.missMu.Lock()
	w.missStreak = 0
	w.missMu.Unlock()
}

// claimPause is how long claims still pause.
func (w *Worker) claimPause() time.Duration {
	w.missMu.Lock()
	defer w.missMu.Unlock()
	return w.pauseUntil.Sub(w.clock.Now())
}

// New checks cfg and fills its defaults.
func New(cfg Config) (*Worker, error) {
	switch {
	case cfg.Queue == nil:
		return nil, errors.New("worker: no queue client")
	case cfg.Key == nil:
		return nil, errors.New("worker: no pool private key (af.key); make one with `af keygen`")
	}
	w, err := newWorker(cfg)
	if err != nil {
		return nil, err
	}
	if w.cfg.StateDir == "" {
		w.cfg.StateDir = DefaultStateDir(w.cfg.ScratchRoot)
	}
	if w.state, err = openRunState(w.cfg.StateDir, w.cfg.ScratchRoot); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return w, nil
}

// newWorker checks cfg and fills its defaults, all but the queue's: a
// worker without a queue, key or state dir runs local tasks (local.go).
func newWorker(cfg Config) (*Worker, error) {
	switch {
	case cfg.Docker == nil || cfg.Runner == nil:
		return nil, errors.New("worker: no Docker client")
	case cfg.WorkerID == "":
		return nil, errors.New("worker: no worker id")
	}
	if cfg.S3.Endpoint != "" {
		ep, err := awsconf.NormalizeEndpoint(cfg.S3.Endpoint)
		if err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
		cfg.S3.Endpoint = ep
	}
	if cfg.WorkerGroup == "" {
		cfg.WorkerGroup = "default"
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = 1
	}
	if cfg.Input == runner.InputNone {
		cfg.Input = runner.InputFIFO
	}
	if cfg.MaxScratchBytes == 0 {
		cfg.MaxScratchBytes = DefaultMaxScratchBytes
	}
	if cfg.DownloadParallel <= 0 {
		cfg.DownloadParallel = 4
	}
	if cfg.Decompress == nil {
		o, err := decompress.NewOpener(decompress.GzipAuto)
		if err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
		cfg.Decompress = o
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 30 * time.Second
	}
	if cfg.ClaimWait <= 0 {
		cfg.ClaimWait = queueclient.MaxClaimWait
	}
	if cfg.LogEvery <= 0 {
		cfg.LogEvery = 5 * time.Second
	}
	cfg.Ceilings = cfg.Ceilings.fill()
	if err := cfg.Ceilings.Check(); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.ScratchRoot == "" {
		cfg.ScratchRoot = filepath.Join(os.TempDir(), "af-worker-"+cfg.WorkerID)
	}
	if err := os.MkdirAll(cfg.ScratchRoot, 0o700); err != nil {
		return nil, fmt.Errorf("worker: scratch root: %w", err)
	}
	if err := os.Chmod(cfg.ScratchRoot, 0o700); err != nil {
		return nil, fmt.Errorf("worker: scratch root: %w", err)
	}
	specs := newSpecCache(cfg.Docker, cfg.Runner, cfg.WorkerID)
	if cfg.Pull.Enabled {
		specs.puller = &puller{docker: cfg.Docker, cfg: cfg.Pull, workerID: cfg.WorkerID}
	}
	return &Worker{
		cfg: cfg, log: cfg.Logger.With("worker", cfg.WorkerID), clock: cfg.Clock,
		specs: specs,
	}, nil
}

// Run reaps containers a previous process left, hands back the runs it
// held (exception/worker-shutdown, so the queue runs them again at once),
// then claims and runs tasks until ctx ends. Then it stops claiming, lets running tasks finish for the
// grace period, and reports the rest worker-shutdown so the queue retries
// them at once.
func (w *Worker) Run(ctx context.Context) error {
	if n, err := w.cfg.Runner.ReapOrphans(ctx, w.cfg.WorkerID); err != nil {
		w.log.Warn("reap orphan containers", "err", err)
	} else if n > 0 {
		w.log.Info("removed containers a previous worker process left behind", "count", n)
	}
	// Containers outlive their worker only when it died; any worker on
	// the engine removes them once past their deadline.
	reapCtx, stopReap := context.WithCancel(ctx)
	reapDone := make(chan struct{})
	go func() {
		defer close(reapDone)
		w.cfg.Runner.ReapLoop(reapCtx, runner.ReapOptions{Every: w.cfg.ReapEvery, Grace: w.cfg.ReapGrace})
	}()
	defer func() { stopReap(); <-reapDone }()
	if n, err := sweepScratch(w.cfg.ScratchRoot); err != nil {
		w.log.Warn("remove scratch dirs a previous worker process left", "err", err)
	} else if n > 0 {
		w.log.Info("removed scratch dirs a previous worker process left behind", "count", n)
	}
	w.handBack(ctx)
	// Tasks run under their own context so that shutdown can give them the
	// grace period instead of killing them with the claim loop.
	taskCtx, stopTasks := context.WithCancel(context.WithoutCancel(ctx))
	defer stopTasks()
	slots := make(chan struct{}, w.cfg.Capacity)
	var running sync.WaitGroup
	w.log.Info("worker started", "group", w.cfg.WorkerGroup, "capacity", w.cfg.Capacity, "queue", w.cfg.Queue.BaseURL(), "gzip", w.cfg.Decompress.Gzip(),
		"maxTaskMemory", FormatBytes(w.cfg.Ceilings.MemoryBytes), "maxTaskCPUs", w.cfg.Ceilings.CPUs, "maxTaskPids", w.cfg.Ceilings.Pids, "maxRunTime", w.cfg.Ceilings.RunTime)
	if ok, why := decompress.ISAL(); !ok {
		// Gzip is most of a mapper's CPU; say once how to get the faster decoder.
		w.log.Info("gzip is decoded in Go; ISA-L would decode it about 2-3x faster", "why", why)
	}

	backoff := time.Second
	for ctx.Err() == nil {
		// Wait for a free slot, then ask for as many tasks as slots free.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		free := 1
		for free < w.cfg.Capacity {
			select {
			case slots <- struct{}{}:
				free++
				continue
			default:
			}
			break
		}
		// With the slots in hand, so a run that just handed back a task
		// whose image is missing has had its say.
		if d := w.claimPause(); d > 0 {
			select {
			case <-w.clock.After(d):
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				for i := 0; i < free; i++ {
					<-slots
				}
				continue
			}
		}
		claims, err := w.cfg.Queue.ClaimWork(ctx, taskdef.ClaimRequest{
			WorkerGroup: w.cfg.WorkerGroup, WorkerID: w.cfg.WorkerID, Tasks: free,
		}, w.cfg.ClaimWait)
		for i := len(claims); i < free; i++ {
			<-slots
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, queueclient.ErrCertificate) {
				// Retried all the same: the server's certificate
				// may be what gets fixed.
				w.log.Error("claim work: the queue's certificate is not trusted; if a private CA signed it, restart the worker with --ca FILE or AF_CA_FILE set to that CA's PEM certificate", "err", err, "retry_in", backoff)
			} else {
				w.log.Warn("claim work", "err", err, "retry_in", backoff)
			}
			select {
			case <-w.clock.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		backoff = time.Second
		for _, c := range claims {
			// Recorded before the run starts, so a process killed at
			// any point after this hands it back when it starts again.
			if err := w.state.record(c); err != nil {
				w.log.Warn("record a claimed run; if this process dies, the run waits out its lease", "task", c.TaskID, "run", c.RunID, "err", err)
			}
			running.Add(1)
			go func() {
				defer running.Done()
				defer func() { <-slots }()
				w.runTask(taskCtx, c)
			}()
		}
	}

	done := make(chan struct{})
	go func() { running.Wait(); close(done) }()
	select {
	case <-done:
		w.log.Info("worker stopped")
		return nil
	default:
	}
	w.log.Info("shutting down: waiting for running tasks", "grace", w.cfg.Grace)
	select {
	case <-done:
	case <-w.clock.After(w.cfg.Grace):
		w.log.Info("grace period over: stopping running tasks")
		stopTasks()
		<-done
	}
	w.log.Info("worker stopped")
	return nil
}

// sweepScratch removes the task scratch dirs (<taskId>-<runId>) that a
// previous process of this worker left in root when it was killed: their
// runs were abandoned, and their inputs and outputs would otherwise fill
// the disk. root belongs to one worker id, as its containers' label does,
// so at start every task dir in it is stale.
func sweepScratch(root string) (int, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return 0, fmt.Errorf("sweep scratch root: %w", err)
	}
	removed := 0
	var errs []error
	for _, e := range entries {
		name := e.Name()
		i := strings.LastIndexByte(name, '-')
		if !e.IsDir() || i <= 0 || taskdef.ValidID(name[:i]) != nil {
			continue
		}
		if _, err := strconv.Atoi(name[i+1:]); err != nil {
			continue
		}
		if err := os.RemoveAll(filepath.Join(root, name)); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("sweep scratch root: %w", errors.Join(errs...))
	}
	return removed, nil
}
