package hosttest

import (
	"context"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/testbin"
)

func TestMain(m *testing.M) { testbin.Main(m) }

// graphLimit bounds every wait for a graph to finish.
const graphLimit = 2 * time.Minute

// shortLease makes a partitioned or killed worker's run come back fast;
// live workers renew at a third of it.
const shortLease = 6 * time.Second

// runOn returns the task and run a worker holds (running), if any.
func runOn(gs taskdef.GraphStatus, workerID string) (taskID string, runID int, ok bool) {
	for _, ts := range gs.Tasks {
		for _, r := range ts.Runs {
			if r.WorkerID == workerID && r.State == taskdef.StateRunning {
				return ts.TaskID, r.RunID, true
			}
		}
	}
	return "", 0, false
}

func findTask(t *testing.T, gs taskdef.GraphStatus, taskID string) taskdef.TaskStatus {
	t.Helper()
	for _, ts := range gs.Tasks {
		if ts.TaskID == taskID {
			return ts
		}
	}
	t.Fatalf("task %s not in graph %s", taskID, gs.GraphID)
	return taskdef.TaskStatus{}
}

// ranElsewhere fails unless the task's run runID (by the faulted worker)
// did not complete and a later run completed on another worker.
func ranElsewhere(t *testing.T, ts taskdef.TaskStatus, runID int, faulted string) {
	t.Helper()
	if ts.State != taskdef.StateCompleted {
		t.Fatalf("task %s is %s", ts.TaskID, ts.State)
	}
	var again bool
	for _, r := range ts.Runs {
		switch {
		case r.RunID == runID && r.State == taskdef.StateCompleted:
			t.Errorf("task %s: run %d of the faulted worker %s is counted as completed", ts.TaskID, runID, faulted)
		case r.RunID > runID && r.State == taskdef.StateCompleted && r.WorkerID != faulted:
			again = true
		}
	}
	if !again {
		t.Errorf("task %s did not run again on another worker after run %d on %s: %+v", ts.TaskID, runID, faulted, ts.Runs)
	}
}

func completed(t *testing.T, c *Cluster, gs taskdef.GraphStatus, want string) {
	t.Helper()
	if gs.State != taskdef.GraphCompleted {
		t.Fatalf("graph %s is %s:\n%s", gs.GraphID, gs.State, Describe(gs))
	}
	if got := c.Result(t, gs); got != want {
		t.Fatalf("result\n%s\nwant\n%s", got, want)
	}
}

// TestGraphAcrossHosts: a graph over real MinIO data runs on three worker
// hosts, each in its own network namespace, and gives the right counts;
// more than one host ran its tasks.
func TestGraphAcrossHosts(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t, "af/os-count-go")
	c := Start(t, Options{})
	want, _ := c.LoadTelemetry(t)
	graphID := c.Submit(t, "af/os-count-go")
	gs := c.WaitResolved(t, graphID, graphLimit)
	completed(t, c, gs, want)
	// The owner hears of it through the SMTP host.
	c.WaitEmail(t, "analyst@example.com", c.URL+"/graphs/"+graphID, 30*time.Second)
	hosts := map[string]int{}
	for _, ts := range gs.Tasks {
		for _, r := range ts.Runs {
			if r.State == taskdef.StateCompleted {
				hosts[r.WorkerID]++
			}
		}
	}
	t.Logf("completed runs per worker host: %v", hosts)
	if len(hosts) < 2 {
		t.Fatalf("one worker host ran every task: %v\n%s", hosts, Describe(gs))
	}
	// MinIO stopped and started on its data dir keeps the artifacts.
	if err := c.StopMinIO(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.StartMinIO(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c.Result(t, gs); got != want {
		t.Errorf("after a MinIO restart the result reads\n%s\nwant\n%s", got, want)
	}
	for id := range hosts {
		if !slices.Contains(c.WorkerIDs, id) {
			t.Errorf("a run by %s, not one of the cluster's workers %v", id, c.WorkerIDs)
		}
	}
}

// holdOneTask stops every worker but the first, cuts the first from MinIO
// (so the task it claims cannot finish), submits, and waits until it
// holds a run. It returns the graph, task and run.
func holdOneTask(t *testing.T, c *Cluster) (graphID, taskID string, runID int) {
	t.Helper()
	for _, w := range c.Workers[1:] {
		if err := w.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Net.Partition(c.WorkerHosts[0], c.S3Host, Both); err != nil {
		t.Fatal(err)
	}
	graphID = c.Submit(t, "af/os-count-go")
	gs := c.WaitFor(t, graphID, "a run on "+c.WorkerIDs[0], 30*time.Second, func(gs taskdef.GraphStatus) bool {
		_, _, ok := runOn(gs, c.WorkerIDs[0])
		return ok
	})
	taskID, runID, _ = runOn(gs, c.WorkerIDs[0])
	return graphID, taskID, runID
}

func startOthers(t *testing.T, c *Cluster) {
	t.Helper()
	for _, w := range c.Workers[1:] {
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPartitionedWorker: a worker cut off from the queue mid-task loses
// its run when the lease runs out; another worker runs the task and the
// graph completes with the right counts. Healed, the cut-off worker's
// late call for the old run is refused (409) and its run stays
// exception/claim-expired, not counted.
func TestPartitionedWorker(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t, "af/os-count-go")
	c := Start(t, Options{Lease: shortLease})
	want, _ := c.LoadTelemetry(t)
	graphID, taskID, runID := holdOneTask(t, c)
	w1 := c.WorkerHosts[0]
	if err := c.Net.Partition(w1, c.QueueHost, Both); err != nil {
		t.Fatal(err)
	}
	startOthers(t, c)
	gs := c.WaitResolved(t, graphID, graphLimit)
	completed(t, c, gs, want)
	ranElsewhere(t, findTask(t, gs, taskID), runID, c.WorkerIDs[0])

	mark := len(c.Workers[0].Log(1 << 30))
	if err := c.Net.HealAll(); err != nil {
		t.Fatal(err)
	}
	// The healed worker's next call for its old run is refused.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(c.Workers[0].Log(1 << 30)[mark:], "no longer current") {
		if time.Now().After(deadline) {
			t.Fatalf("the healed worker did not log its run refused within 30s:\n%s", c.Workers[0].Log(1 << 30)[mark:])
		}
		time.Sleep(100 * time.Millisecond) // polling the worker's log
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ts, err := c.Client().Task(ctx, taskID)
	if err != nil {
		t.Fatal(err)
	}
	if r := ts.Runs[runID]; r.State != taskdef.StateException || r.ReasonResolved != "claim-expired" {
		t.Errorf("the partitioned worker's run is %s/%s, want exception/claim-expired", r.State, r.ReasonResolved)
	}
	ranElsewhere(t, ts, runID, c.WorkerIDs[0])
	if got := c.Result(t, gs); got != want {
		t.Errorf("after the late call the result is\n%s\nwant\n%s", got, want)
	}
}

// TestWorkerKilled: kill -9 of a worker mid-task; the task runs again on
// another host once the lease ends and the graph completes.
func TestWorkerKilled(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t, "af/os-count-go")
	c := Start(t, Options{Lease: shortLease})
	want, _ := c.LoadTelemetry(t)
	graphID, taskID, runID := holdOneTask(t, c)
	if err := c.Workers[0].Kill(); err != nil {
		t.Fatal(err)
	}
	startOthers(t, c)
	gs := c.WaitResolved(t, graphID, graphLimit)
	completed(t, c, gs, want)
	ranElsewhere(t, findTask(t, gs, taskID), runID, c.WorkerIDs[0])
}

// TestServeRestarted: af serve is killed (-9) and started again on its
// data dir while a graph runs; the graph completes with the right counts.
func TestServeRestarted(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t, "af/os-count-go")
	c := Start(t, Options{Lease: shortLease})
	want, _ := c.LoadTelemetry(t)
	graphID := c.Submit(t, "af/os-count-go")
	gs := c.WaitFor(t, graphID, "a completed task", graphLimit, func(gs taskdef.GraphStatus) bool {
		for _, ts := range gs.Tasks {
			if ts.State == taskdef.StateCompleted {
				return true
			}
		}
		return false
	})
	if gs.State != taskdef.GraphRunning {
		t.Fatalf("the graph ended before af serve could be restarted mid-graph:\n%s", Describe(gs))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.RestartServe(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	gs = c.WaitResolved(t, graphID, graphLimit)
	completed(t, c, gs, want)
}

// TestSeveralFaults: in one graph, a worker partitioned from the queue
// mid-task, a second killed -9 mid-task and started again on its state
// dir, and af serve killed and restarted; healed, the graph completes with
// the right counts and neither faulted run is counted.
func TestSeveralFaults(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t, "af/os-count-go")
	c := Start(t, Options{Lease: shortLease})
	want, _ := c.LoadTelemetry(t)
	w1, w2 := c.WorkerHosts[0], c.WorkerHosts[1]
	graphID, task1, run1 := holdOneTask(t, c)
	if err := c.Net.Partition(w1, c.QueueHost, Both); err != nil {
		t.Fatal(err)
	}
	// The second worker, cut from MinIO too, takes a task and is killed.
	if err := c.Net.Partition(w2, c.S3Host, Both); err != nil {
		t.Fatal(err)
	}
	if err := c.Workers[1].Start(); err != nil {
		t.Fatal(err)
	}
	gs := c.WaitFor(t, graphID, "a run on "+c.WorkerIDs[1], 30*time.Second, func(gs taskdef.GraphStatus) bool {
		_, _, ok := runOn(gs, c.WorkerIDs[1])
		return ok
	})
	task2, run2, _ := runOn(gs, c.WorkerIDs[1])
	if err := c.Workers[1].Kill(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.RestartServe(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := c.Net.Heal(w2, c.S3Host); err != nil {
		t.Fatal(err)
	}
	for _, w := range c.Workers[1:] {
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
	}
	gs = c.WaitResolved(t, graphID, graphLimit)
	completed(t, c, gs, want)
	ranElsewhereOrAgain(t, findTask(t, gs, task2), run2, c.WorkerIDs[1])
	ranElsewhere(t, findTask(t, gs, task1), run1, c.WorkerIDs[0])
	if err := c.Net.HealAll(); err != nil {
		t.Fatal(err)
	}
	gs = c.WaitResolved(t, graphID, time.Second)
	if got := c.Result(t, gs); got != want {
		t.Errorf("after healing the result is\n%s\nwant\n%s", got, want)
	}
}

// ranElsewhereOrAgain fails unless the run of a worker that was killed
// and restarted did not complete and a later run of the task did (on any
// worker: the restarted one may take it back).
func ranElsewhereOrAgain(t *testing.T, ts taskdef.TaskStatus, runID int, faulted string) {
	t.Helper()
	var again bool
	for _, r := range ts.Runs {
		switch {
		case r.RunID == runID && r.State == taskdef.StateCompleted:
			t.Errorf("task %s: run %d of the killed worker %s is counted as completed", ts.TaskID, runID, faulted)
		case r.RunID > runID && r.State == taskdef.StateCompleted:
			again = true
		}
	}
	if !again {
		t.Errorf("task %s did not run again after run %d on %s: %+v", ts.TaskID, runID, faulted, ts.Runs)
	}
}
