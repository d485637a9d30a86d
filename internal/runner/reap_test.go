package runner

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/taskdef"
	"github.com/docker/docker/api/types/container"
)

// TestContainerConfigDeadlineLabel: the deadline travels with the
// container, so any worker can tell when it outlived its limit.
func TestContainerConfigDeadlineLabel(t *testing.T) {
	t.Parallel()
	s := baseSpec()
	s.Deadline = time.Date(2026, 12, 2, 7, 0, 0, 0, time.FixedZone("CET", 3600))
	cfg, _, err := ContainerConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Labels[LabelDeadline], "2026-12-02T06:00:00Z"; got != want {
		t.Errorf("deadline label %q, want %q", got, want)
	}
	if d, err := ParseDeadline(cfg.Labels[LabelDeadline]); err != nil || !d.Equal(s.Deadline) {
		t.Errorf("ParseDeadline = %v, %v; want %v", d, err, s.Deadline)
	}
	// A fraction of a second rounds up: the label never comes early.
	s.Deadline = time.Date(2026, 12, 2, 6, 0, 0, 1, time.UTC)
	cfg, _, _ = ContainerConfig(s)
	if got, want := cfg.Labels[LabelDeadline], "2026-12-02T06:00:01Z"; got != want {
		t.Errorf("deadline label %q, want %q", got, want)
	}
	// No deadline, no label (and ReapExpired leaves the container alone).
	s.Deadline = time.Time{}
	cfg, _, _ = ContainerConfig(s)
	if _, ok := cfg.Labels[LabelDeadline]; ok {
		t.Errorf("a spec without a deadline got the label %q", cfg.Labels[LabelDeadline])
	}
	if _, err := ParseDeadline("tomorrow"); err == nil {
		t.Error("ParseDeadline accepted garbage")
	}
}

// TestPidsAboveKernelMaximumRefused: the runner refuses, as the payload's
// fault, a pids limit the kernel would refuse at start with an OCI error.
func TestPidsAboveKernelMaximumRefused(t *testing.T) {
	t.Parallel()
	s := baseSpec()
	s.Limits.Pids = 1e9
	_, _, err := ContainerConfig(s)
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "above the kernel's maximum 4194304") {
		t.Fatalf("ContainerConfig with 10^9 pids: %v", err)
	}
	s.Limits.Pids = MaxPids
	if _, _, err := ContainerConfig(s); err != nil {
		t.Fatalf("the kernel's maximum refused: %v", err)
	}
}

// TestRunStampsDeadline: Run labels the container with now + maxRunTime
// by the wall clock, whatever the runner's clock says.
func TestRunStampsDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{Clock: newFakeClock()})
	spec := e.spec("sleep")
	spec.MaxRunTime = 90 * time.Second
	stdout := newSyncBuffer()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	before := time.Now()
	go func() {
		defer close(done)
		_, _ = e.r.Run(ctx, spec, Streams{Stdout: stdout})
	}()
	stdout.waitFor(t, "ready")
	list := e.containers()
	cancel()
	<-done
	if len(list) != 1 {
		t.Fatalf("%d containers, want 1", len(list))
	}
	d, err := ParseDeadline(list[0].Labels[LabelDeadline])
	if err != nil {
		t.Fatal(err)
	}
	if lo, hi := before.Add(90*time.Second).Truncate(time.Second), time.Now().Add(91*time.Second); d.Before(lo) || d.After(hi) {
		t.Errorf("deadline label %v, want between %v and %v", d, lo, hi)
	}
}

// startLabelled creates and starts a probe container as a worker that
// then died would have left it: made by ContainerConfig for workerID,
// with the given deadline (zero: none), running `probe sleep`.
func startLabelled(t *testing.T, e *env, workerID, taskID string, deadline time.Time) string {
	t.Helper()
	spec := e.spec("sleep")
	spec.WorkerID, spec.TaskID, spec.RunID, spec.Deadline = workerID, taskID, 3, deadline
	spec.Input = InputNone
	cfg, hc, err := ContainerConfig(spec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	created, err := e.cli.ContainerCreate(ctx, cfg, hc, nil, nil, containerName(spec))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = e.cli.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true})
	})
	if err := e.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	return created.ID
}

func slogTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func containerExists(t *testing.T, e *env, id string) (bool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := e.cli.ContainerInspect(ctx, id)
	if err != nil {
		if strings.Contains(strings.ToLower(err.Error()), "no such container") {
			return false, ""
		}
		t.Fatalf("inspect %s: %v", shortID(id), err)
	}
	return true, info.State.Status
}

// TestReaperRemovesExpiredContainersOfADeadWorker: a job's container does
// not outlive its deadline even if its worker dies. A container left
// running by a dead worker, past its deadline and the grace, is stopped
// and removed by another worker's reaper within one period (driven on a
// fake clock); containers still within their deadline, and containers
// without a deadline label (older workers), are left alone.
func TestReaperRemovesExpiredContainersOfADeadWorker(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	logs := newSyncBuffer()
	e := newEnv(t, Options{Clock: clock})
	// The reaper is another worker's runner on the same engine.
	reaper, err := New(e.cli, Options{Clock: clock, WorkerID: e.workerID + "-reaper", Logger: slogTo(logs)})
	if err != nil {
		t.Fatal(err)
	}
	dead := e.workerID + "-dead"
	// Deadlines by the wall clock, as a worker writes them. This reaper's
	// grace is a minute and the expired container is 90 s past its
	// deadline, so reapers with the default grace (every other worker
	// under test) leave it to this one.
	live := startLabelled(t, e, dead, e.taskID+"live", time.Now().Add(time.Hour))
	unlabelled := startLabelled(t, e, dead, e.taskID+"old", time.Time{})

	ctx, cancel := context.WithCancel(context.Background())
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		reaper.ReapLoop(ctx, ReapOptions{Every: 30 * time.Second, Grace: time.Minute})
	}()
	defer func() { cancel(); <-loopDone }()
	// The first pass ran; the loop waits for its period.
	clock.WaitForTimer(t)
	expired := startLabelled(t, e, dead, e.taskID+"exp", time.Now().Add(-90*time.Second))
	if ok, state := containerExists(t, e, expired); !ok || state != "running" {
		t.Fatalf("the expired container is %v/%s before the period ends, want running", ok, state)
	}
	clock.Advance(30 * time.Second)
	deadline := time.Now().Add(time.Minute)
	for {
		ok, state := containerExists(t, e, expired)
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the expired container is still there (%s) a minute after the reaper's period", state)
		}
		select {
		case <-logs.signal:
		case <-time.After(100 * time.Millisecond):
		}
	}
	for name, id := range map[string]string{"within its deadline": live, "without a deadline label": unlabelled} {
		if ok, state := containerExists(t, e, id); !ok || state != "running" {
			t.Errorf("the container %s was touched: exists %v, state %s", name, ok, state)
		}
	}
	logs.waitFor(t, "removed a job container past its deadline")
	line := ""
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "past its deadline") && strings.Contains(l, shortID(expired)) {
			line = l
		}
	}
	for _, want := range []string{"task=" + e.taskID + "exp", "run=3", "containerWorker=" + dead, "state=running"} {
		if !strings.Contains(line, want) {
			t.Errorf("the reaper's log line lacks %q: %s", want, line)
		}
	}
	// ReapOrphans of the dead id takes the rest, as a restart would.
	if n, err := e.r.ReapOrphans(context.Background(), dead); err != nil || n != 2 {
		t.Errorf("ReapOrphans = %d, %v; want the 2 left", n, err)
	}
}

// TestReapExpiredKeepsWithinGrace: a container just past its deadline is
// its own worker's to kill and clean up during the grace. Not parallel:
// its short grace would reap the other tests' expired containers.
func TestReapExpiredKeepsWithinGrace(t *testing.T) {
	e := newEnv(t, Options{})
	dead := e.workerID + "-dead"
	id := startLabelled(t, e, dead, e.taskID, time.Now().Add(-40*time.Second))
	got, err := e.r.ReapExpired(context.Background(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, rp := range got {
		if rp.ContainerID == id {
			t.Fatal("a container within the grace was reaped")
		}
	}
	got, err = e.r.ReapExpired(context.Background(), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, rp := range got {
		if rp.ContainerID == id {
			found = rp.TaskID == e.taskID && rp.RunID == "3" && rp.WorkerID == dead
		}
	}
	if !found {
		t.Fatalf("ReapExpired(20s) = %+v, want the container 40 s past its deadline", got)
	}
	if ok, _ := containerExists(t, e, id); ok {
		t.Fatal("the reaped container still exists")
	}
}

// TestDockerRefusalReachesMessage: when the engine refuses the container,
// Docker's own words are in the message.
func TestDockerRefusalReachesMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	t.Run("create: bad image reference", func(t *testing.T) {
		spec := e.spec("sleep")
		spec.Image = "Af-Test/UPPER:case"
		res, err := e.r.Run(context.Background(), spec, Streams{})
		var ex *Exception
		if !errors.As(err, &ex) {
			t.Fatalf("Run: %v, want an exception", err)
		}
		if res.Reason != taskdef.ReasonMalformedPayload || !strings.Contains(res.Message, "docker refused") ||
			!strings.Contains(strings.ToLower(res.Message), "invalid reference format") || !strings.Contains(ex.Error(), "invalid reference format") {
			t.Errorf("result %s: %q (error %q); want malformed-payload with Docker's reason", res.Reason, res.Message, ex.Error())
		}
	})
	// Without docker-init the OCI runtime execs the job itself and fails
	// the start, as it fails it for a pids.max the kernel refuses (what
	// 10^9 pids did before ContainerConfig bounded them).
	t.Run("start: OCI runtime", func(t *testing.T) {
		spec := e.spec()
		spec.NoInit = true
		spec.Entrypoint = []string{"/no-such-job-binary"}
		res, err := e.r.Run(context.Background(), spec, Streams{})
		var ex *Exception
		if !errors.As(err, &ex) {
			t.Fatalf("Run: %v, want an exception", err)
		}
		if !strings.Contains(res.Message, "starting the container") || !strings.Contains(ex.Error(), "no-such-job-binary") {
			t.Errorf("result %s: %q (error %q); want Docker's reason", res.Reason, res.Message, ex.Error())
		}
	})
}
