package worker_test

// Tests of issue 11's items 8 and 9 on the real engine: a task cannot ask
// for more than the worker's ceilings, a fork bomb is held by the pids
// limit, and a container whose worker died is removed by another worker
// once past its deadline.

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
)

// hostileLimitsImage builds testdata/hostile-limits (FROM af/python).
func hostileLimitsImage(t *testing.T) string {
	t.Helper()
	return jobImage(t, "hostile-limits", "python")
}

// runsNextTask checks the worker still serves: a clean graph on the same
// cluster completes with the right counts.
func runsNextTask(t *testing.T, c *clustertest.Cluster, image string, seed uint64) {
	t.Helper()
	set := smallData(t, 3, 10, seed)
	g := graphFor(t, c, image, upload(t, c, set))
	createGraph(t, c, g)
	c.WaitGraph(t, g.GraphID, 90*time.Second)
	if gs := graphStatus(t, c, g.GraphID); gs.State != taskdef.GraphCompleted {
		c.LogTaskLogs(t, g.GraphID)
		t.Fatalf("the next graph is %s, want completed: the worker stopped serving", gs.State)
	}
	if got, want := result(t, c, g), synth.FormatOSCounts(set.CountByOS(nil)); got != want {
		t.Fatalf("the next graph's result\n%s\nwant\n%s", got, want)
	}
}

// TestTaskBeyondCeilingsRefused: a task cannot ask for more memory, CPUs,
// pids or run time than the worker's ceilings. Each of these mappers,
// posted straight to the API as a token holder could, is refused before
// any container exists, as exception/malformed-payload naming the ceiling
// and its flag, and not retried; the worker then serves the next graph.
func TestTaskBeyondCeilingsRefused(t *testing.T) {
	t.Parallel()
	image := faultImage(t, "go")
	c := clustertest.Start(t, clustertest.Options{})
	set := smallData(t, 12, 5, 41)
	g := graphFor(t, c, image, upload(t, c, set))
	cases := []struct {
		name string
		edit func(p *taskdef.Payload)
		want []string
	}{
		{"50 GiB of memory", func(p *taskdef.Payload) { p.Limits.MemoryBytes = 50 << 30 },
			[]string{"the task asks for 50GiB of memory; this worker allows at most", "(--max-task-memory); submit with less"}},
		// af serve itself refuses pids over 2^22 and run times over 366
		// days (TestGraphNumberRanges), the 10^9 pids and 1<<62 s of the
		// attack among them; these pass it and stop at the worker.
		{"2^22 pids", func(p *taskdef.Payload) { p.Limits.Pids = 1 << 22 },
			[]string{"the task asks for 4194304 processes; this worker allows at most 4096 (--max-task-pids)"}},
		{"300 days of run time", func(p *taskdef.Payload) { p.MaxRunTime = 300 * 24 * 3600 },
			[]string{"the task asks for a run time of 7200h0m0s; this worker allows at most 24h0m0s (--max-run-time)"}},
		{"too many CPUs", func(p *taskdef.Payload) { p.Limits.CPUs = 4096 },
			[]string{"the task asks for 4096 CPUs; this worker allows at most", "(--max-task-cpus)"}},
	}
	mappers := mapperIDs(g)
	if len(mappers) != len(cases) {
		t.Fatalf("%d mappers, want %d", len(mappers), len(cases))
	}
	byTask := map[string]int{}
	for i, id := range mappers {
		byTask[id] = i
		for j := range g.Tasks {
			if g.Tasks[j].TaskID == id {
				cases[i].edit(&g.Tasks[j].Task.Payload)
			}
		}
	}
	createGraph(t, c, g)
	id := uniqueID("ceilings")
	c.StartWorker(t, id, clustertest.WorkerOptions{Capacity: 1})
	c.WaitGraph(t, g.GraphID, 90*time.Second)
	for _, ts := range graphStatus(t, c, g.GraphID).Tasks {
		i, ok := byTask[ts.TaskID]
		if !ok {
			continue
		}
		tc := cases[i]
		r := lastRun(ts)
		t.Logf("%s: %s/%s: %s", tc.name, ts.State, r.ReasonResolved, r.Message)
		if ts.State != taskdef.StateException || r.ReasonResolved != taskdef.ReasonMalformedPayload || len(ts.Runs) != 1 {
			t.Errorf("%s: %s/%s in %d runs, want one run exception/%s", tc.name, ts.State, r.ReasonResolved, len(ts.Runs), taskdef.ReasonMalformedPayload)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.Message, w) {
				t.Errorf("%s: message %q lacks %q", tc.name, r.Message, w)
			}
		}
	}
	if n := len(jobContainers(t, id)); n != 0 {
		t.Errorf("%d containers of the worker left", n)
	}
	runsNextTask(t, c, image, 42)
}

// TestForkBombHeldByPidsLimit: a job that forks without bound is held by
// its pids limit: fork fails inside the container, the task fails (the
// job's fault, not retried) with a message that says so and names the
// limit, the container is gone, and the worker serves the next task.
func TestForkBombHeldByPidsLimit(t *testing.T) {
	t.Parallel()
	image := hostileLimitsImage(t)
	c := clustertest.Start(t, clustertest.Options{})
	set := smallData(t, 3, 5, 43)
	g := withEnv(graphFor(t, c, image, upload(t, c, set)), map[string]string{"AF_TEST_HOSTILE": "forkbomb"})
	for i := range g.Tasks {
		g.Tasks[i].Task.Payload.Limits.Pids = 64
	}
	createGraph(t, c, g)
	id := uniqueID("forkbomb")
	c.StartWorker(t, id, clustertest.WorkerOptions{Capacity: 1})
	c.WaitGraph(t, g.GraphID, 2*time.Minute)
	ts := taskStatus(t, c, mapperIDs(g)[0])
	r := lastRun(ts)
	if ts.State != taskdef.StateFailed || len(ts.Runs) != 1 {
		c.LogTaskLogs(t, g.GraphID)
		t.Fatalf("fork bomb mapper: %s/%s in %d runs, want one failed run", ts.State, r.ReasonResolved, len(ts.Runs))
	}
	t.Logf("fork bomb's message:\n%s", r.Message)
	first, _, _ := strings.Cut(r.Message, "\n")
	for _, w := range []string{"the job exited with code", "a process or thread could not be created: the job may run at most 64 processes and threads", "raise payload.limits.pids, up to this worker's 4096 (--max-task-pids)", "Resource temporarily unavailable"} {
		if !strings.Contains(first, w) {
			t.Errorf("message's first line lacks %q:\n%s", w, r.Message)
		}
	}
	if n := len(jobContainers(t, id)); n != 0 {
		t.Errorf("%d containers of the worker left after the fork bomb", n)
	}
	// The same image without the bomb: the worker serves on.
	runsNextTask(t, c, image, 44)
}

// TestKilledWorkersContainerReapedByAnotherWorker: a job's container does
// not outlive its deadline, even if its worker dies. A worker process is
// killed hard while its job (maxRunTime 3 s, with a minute of work) runs;
// the container runs on without it. A worker with another id, started
// afterwards, stops and removes it within one reaper period of its
// deadline plus the grace, and logs the task, run and dead worker's id.
func TestKilledWorkersContainerReapedByAnotherWorker(t *testing.T) {
	t.Parallel()
	image := faultImage(t, "python")
	workerBinary(t)
	c := clustertest.Start(t, clustertest.Options{Lease: 3 * time.Second})
	set := smallData(t, 3, 40, 45)
	// Half a second per record: a minute of work, far past maxRunTime.
	g := withEnv(graphFor(t, c, image, upload(t, c, set)), map[string]string{envSleep: "0.5"})
	for i := range g.Tasks {
		g.Tasks[i].Task.Payload.MaxRunTime = 3
		// No retry: nothing else is to run on the reaping worker.
		g.Tasks[i].Task.Retries = 0
	}
	createGraph(t, c, g)
	killedID := uniqueID("dead")
	p := startProcWorker(t, c, killedID, "--capacity", "1")
	task := waitRunningInContainer(t, c, killedID, mapperIDs(g))
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 30*time.Second); err == nil {
		t.Fatal("the killed worker exited 0")
	}
	left := jobContainers(t, killedID)
	if len(left) != 1 || left[0].State != "running" {
		t.Fatalf("containers of the killed worker: %+v, want its job's, running", left)
	}
	victim := left[0]
	deadline, err := runner.ParseDeadline(victim.Labels[runner.LabelDeadline])
	if err != nil {
		t.Fatalf("the job's container has no deadline label: %v (labels %v)", err, victim.Labels)
	}
	if d := time.Until(deadline); d > 4*time.Second {
		t.Fatalf("deadline label %s is %s away, want about maxRunTime (3 s)", deadline, d)
	}

	const every, grace = 500 * time.Millisecond, 2 * time.Second
	c.StartWorker(t, uniqueID("reaper"), clustertest.WorkerOptions{Capacity: 1, ReapEvery: every, ReapGrace: grace})
	waitUntil(t, 30*time.Second, "another worker removes the dead worker's expired container", func() (bool, string) {
		list := jobContainers(t, killedID)
		return len(list) == 0, fmt.Sprintf("%d containers left, %s past the deadline", len(list), time.Since(deadline).Round(time.Millisecond))
	})
	gone := time.Now()
	// Within one period (and the test's polling and Docker's kill) of the
	// deadline plus the grace; never before the deadline.
	if late := gone.Sub(deadline.Add(grace)); late > every+10*time.Second {
		t.Errorf("removed %s after its deadline and grace, want within a period (%s)", late, every)
	}
	if gone.Before(deadline) {
		t.Errorf("removed before its deadline %s", deadline)
	}
	logs := c.Logs.String()
	found := false
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "removed a job container past its deadline") && strings.Contains(line, "containerWorker="+killedID) {
			found = true
			for _, w := range []string{"task=" + task, "run=0", "state=running"} {
				if !strings.Contains(line, w) {
					t.Errorf("the reaper's log line lacks %q: %s", w, line)
				}
			}
		}
	}
	if !found {
		t.Errorf("no worker logged the removal of %s's container", killedID)
	}
	ts := taskStatus(t, c, task)
	t.Logf("removed %s after the deadline; the task: %s, runs %+v", gone.Sub(deadline).Round(time.Millisecond), ts.State, ts.Runs)
}
