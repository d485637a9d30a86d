package queue

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

func oneTask(t *testing.T, q *Queue, retries int) string {
	t.Helper()
	mustCreate(t, q, taskdef.Graph{GraphID: "graph-time", Tasks: []taskdef.GraphTask{{TaskID: "task-time", Task: mkTask("graph-time", taskdef.KindMapper, retries)}}})
	return "task-time"
}

// TestClaimExpiryExhaustsRetries lets every lease expire: a task with n
// retries gets n+1 runs, the last one final exception/claim-expired.
func TestClaimExpiryExhaustsRetries(t *testing.T) {
	t.Parallel()
	for _, retries := range []int{0, 1, 5} {
		t.Run(fmt.Sprint("retries=", retries), func(t *testing.T) {
			t.Parallel()
			q, clk := newQueue(t)
			id := oneTask(t, q, retries)
			for run := 0; run <= retries; run++ {
				c := claimOne(t, q)
				if c.RunID != run {
					t.Fatalf("claimed run %d, want %d", c.RunID, run)
				}
				// Just at takenUntil the lease still holds.
				clk.Advance(testLease)
				if rep, err := q.Tick(bg); err != nil || rep.ClaimsExpired != 0 {
					t.Fatalf("tick at takenUntil: %+v %v", rep, err)
				}
				clk.Advance(time.Second)
				rep, err := q.Tick(bg)
				if err != nil {
					t.Fatal(err)
				}
				wantRetried := 1
				if run == retries {
					wantRetried = 0
				}
				if rep.ClaimsExpired != 1 || rep.Retried != wantRetried {
					t.Fatalf("run %d: tick %+v", run, rep)
				}
				// The worker that lost the lease is refused.
				if _, err := q.ReportCompleted(bg, id, run, c.RunToken, taskdef.ReportRequest{}); !errors.Is(err, ErrRunNotCurrent) {
					t.Fatalf("late report of run %d: %v", run, err)
				}
				if _, err := q.Reclaim(bg, id, run, c.RunToken, taskdef.Stats{}); !errors.Is(err, ErrRunNotCurrent) {
					t.Fatalf("late reclaim of run %d: %v", run, err)
				}
			}
			s := mustTask(t, q, id)
			if s.State != sException || len(s.Runs) != retries+1 || s.RetriesLeft != 0 {
				t.Fatalf("after exhausting: %s %v retriesLeft %d", s.State, runSummary(s), s.RetriesLeft)
			}
			for i, r := range s.Runs {
				want := taskdef.ReasonRetry
				if i == 0 {
					want = taskdef.ReasonScheduled
				}
				if r.State != sException || r.ReasonResolved != taskdef.ReasonClaimExpired || r.ReasonCreated != want {
					t.Errorf("run %d: %s/%s/%s", i, r.State, r.ReasonCreated, r.ReasonResolved)
				}
			}
			if cs, _ := q.Claim(bg, worker); len(cs) != 0 {
				t.Errorf("claimed an exhausted task")
			}
			gs, _ := q.Graph(bg, "graph-time")
			if gs.State != taskdef.GraphFailed {
				t.Errorf("graph %s", gs.State)
			}
		})
	}
}

func TestReclaimExtendsLease(t *testing.T) {
	t.Parallel()
	q, clk := newQueue(t)
	id := oneTask(t, q, 0)
	c := claimOne(t, q)
	for i := 0; i < 3; i++ {
		clk.Advance(testLease - time.Second)
		r, err := q.Reclaim(bg, id, c.RunID, c.RunToken, taskdef.Stats{Files: int64(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		if !r.TakenUntil.Equal(clk.Now().Add(testLease)) {
			t.Errorf("takenUntil %s", r.TakenUntil)
		}
		if rep, _ := q.Tick(bg); rep.ClaimsExpired != 0 {
			t.Fatalf("reclaimed run expired")
		}
	}
	s := mustTask(t, q, id)
	if s.State != sRunning || s.Runs[0].Stats.Files != 3 {
		t.Errorf("after reclaims: %s stats %+v", s.State, s.Runs[0].Stats)
	}
	if _, err := q.Reclaim(bg, id, 1, c.RunToken, taskdef.Stats{}); !errors.Is(err, ErrRunNotCurrent) {
		t.Errorf("reclaim of a run that does not exist: %v", err)
	}
	if _, err := q.Reclaim(bg, "task-none", 0, "", taskdef.Stats{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("reclaim of unknown task: %v", err)
	}
	if _, err := q.ReportCompleted(bg, id, c.RunID, c.RunToken, taskdef.ReportRequest{}); err != nil {
		t.Errorf("report after reclaims: %v", err)
	}
}

func TestDeadlines(t *testing.T) {
	t.Parallel()
	t.Run("every unresolved state", func(t *testing.T) {
		t.Parallel()
		q, clk := newQueue(t)
		g := mapReduce("graph-dead", 3, 5)
		mustCreate(t, q, g)
		running := claimOne(t, q)
		done := claimOne(t, q)
		if _, err := q.ReportCompleted(bg, done.TaskID, done.RunID, done.RunToken, taskdef.ReportRequest{}); err != nil {
			t.Fatal(err)
		}
		// One pending mapper, one running, one completed, the reducer
		// unscheduled. Reclaiming at the deadline is refused.
		clk.Advance(time.Hour)
		if _, err := q.Reclaim(bg, running.TaskID, running.RunID, running.RunToken, taskdef.Stats{}); !errors.Is(err, ErrDeadlineExceeded) || !errors.Is(err, ErrConflict) {
			t.Errorf("reclaim past deadline: %v", err)
		}
		rep, err := q.Tick(bg)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.ResolvedGraphs) != 1 || rep.ResolvedGraphs[0] != "graph-dead" {
			t.Errorf("tick resolved graphs %v", rep.ResolvedGraphs)
		}
		gs, _ := q.Graph(bg, "graph-dead")
		if gs.State != taskdef.GraphFailed {
			t.Errorf("graph %s", gs.State)
		}
		for _, ts := range gs.Tasks {
			if ts.TaskID == done.TaskID {
				if ts.State != sCompleted {
					t.Errorf("completed task became %s", ts.State)
				}
				continue
			}
			last := ts.Runs[len(ts.Runs)-1]
			if ts.State != sException || (last.ReasonResolved != taskdef.ReasonDeadlineExceeded && last.ReasonResolved != taskdef.ReasonDependencyFailed) {
				t.Errorf("%s: %s %v", ts.TaskID, ts.State, runSummary(ts))
			}
			if ts.Kind == taskdef.KindMapper && last.ReasonResolved != taskdef.ReasonDeadlineExceeded {
				t.Errorf("mapper %s resolved %s", ts.TaskID, last.ReasonResolved)
			}
		}
		if rep.DeadlinesExceeded < 2 {
			t.Errorf("tick %+v", rep)
		}
		if _, err := q.ReportCompleted(bg, running.TaskID, running.RunID, running.RunToken, taskdef.ReportRequest{}); !errors.Is(err, ErrRunNotCurrent) {
			t.Errorf("report after deadline: %v", err)
		}
	})
	t.Run("claim skips expired pending", func(t *testing.T) {
		t.Parallel()
		q, clk := newQueue(t)
		id := oneTask(t, q, 5)
		clk.Advance(2 * time.Hour)
		if cs, err := q.Claim(bg, worker); err != nil || len(cs) != 0 {
			t.Fatalf("claimed past deadline: %v %v", cs, err)
		}
		if s := mustTask(t, q, id); s.State != sException || s.Runs[0].ReasonResolved != taskdef.ReasonDeadlineExceeded {
			t.Errorf("%v", runSummary(s))
		}
	})
	t.Run("deadline beats claim expiry", func(t *testing.T) {
		t.Parallel()
		q, clk := newQueue(t)
		id := oneTask(t, q, 5)
		claimOne(t, q)
		clk.Advance(2 * time.Hour)
		rep, err := q.Tick(bg)
		if err != nil || rep.DeadlinesExceeded != 1 || rep.ClaimsExpired != 0 {
			t.Fatalf("tick %+v %v", rep, err)
		}
		if s := mustTask(t, q, id); len(s.Runs) != 1 || s.Runs[0].ReasonResolved != taskdef.ReasonDeadlineExceeded {
			t.Errorf("%v", runSummary(s))
		}
	})
}

func TestTickChunks(t *testing.T) {
	t.Parallel()
	q, clk := newQueue(t)
	n := tickChunk*2 + 7
	mustCreate(t, q, mapReduce("graph-chnk", n, 0))
	cs, err := q.Claim(bg, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: maxClaim})
	if err != nil || len(cs) != maxClaim {
		t.Fatalf("claim %d %v", len(cs), err)
	}
	clk.Advance(testLease + time.Second)
	rep, err := q.Tick(bg)
	if err != nil || rep.ClaimsExpired != maxClaim || rep.Retried != 0 {
		t.Fatalf("tick %+v %v", rep, err)
	}
	clk.Advance(time.Hour)
	rep, err = q.Tick(bg)
	if err != nil || rep.DeadlinesExceeded+rep.ClaimsExpired == 0 {
		t.Fatalf("tick %+v %v", rep, err)
	}
	c, _ := q.Counts(bg)
	if c[sException] != n+1 {
		t.Errorf("counts %v, want all %d exception", c, n+1)
	}
}

func TestCancelGraph(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t)
	mustCreate(t, q, mapReduce("graph-cncl", 3, 5))
	run := claimOne(t, q)
	done := claimOne(t, q)
	if _, err := q.ReportCompleted(bg, done.TaskID, done.RunID, done.RunToken, taskdef.ReportRequest{}); err != nil {
		t.Fatal(err)
	}
	gs, err := q.CancelGraph(bg, "graph-cncl")
	if err != nil {
		t.Fatal(err)
	}
	if gs.State != taskdef.GraphCanceled || gs.Resolved == nil {
		t.Errorf("canceled graph is %s", gs.State)
	}
	for _, ts := range gs.Tasks {
		switch {
		case ts.TaskID == done.TaskID:
			if ts.State != sCompleted {
				t.Errorf("cancel changed a completed task: %v", runSummary(ts))
			}
		case ts.State != sException:
			t.Errorf("%s is %s", ts.TaskID, ts.State)
		}
		if ts.TaskID == run.TaskID && !eqStrings(runSummary(ts), []string{"0:exception/scheduled/canceled"}) {
			t.Errorf("running task: %v", runSummary(ts))
		}
		if ts.Kind == taskdef.KindReducer && !eqStrings(runSummary(ts), []string{"0:exception/exception/canceled"}) {
			t.Errorf("reducer: %v", runSummary(ts))
		}
		if ts.Kind == taskdef.KindMapper && ts.TaskID != done.TaskID && ts.TaskID != run.TaskID &&
			!eqStrings(runSummary(ts), []string{"0:exception/scheduled/canceled"}) {
			t.Errorf("pending mapper: %v", runSummary(ts))
		}
	}
	if _, err := q.ReportCompleted(bg, run.TaskID, run.RunID, run.RunToken, taskdef.ReportRequest{}); !errors.Is(err, ErrRunNotCurrent) {
		t.Errorf("report of a canceled run: %v", err)
	}
	if _, err := q.CancelGraph(bg, "graph-cncl"); err != nil {
		t.Errorf("cancel again: %v", err)
	}
	if _, err := q.CancelGraph(bg, "graph-none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("cancel unknown: %v", err)
	}
}

func TestRerun(t *testing.T) {
	t.Parallel()
	q, clk := newQueue(t)
	mustCreate(t, q, mapReduce("graph-rern", 1, 0))
	m := claimOne(t, q)
	if _, err := q.Rerun(bg, "graph-rern-reduce"); !errors.Is(err, ErrConflict) {
		t.Errorf("rerun of an unscheduled task: %v", err)
	}
	if _, err := q.Rerun(bg, m.TaskID); !errors.Is(err, ErrConflict) {
		t.Errorf("rerun of a running task: %v", err)
	}
	r, err := q.ReportFailed(bg, m.TaskID, m.RunID, m.RunToken, taskdef.ReportRequest{})
	if err != nil || !r.GraphResolved || r.GraphState != taskdef.GraphFailed {
		t.Fatalf("fail: %+v %v", r, err)
	}
	s, err := q.Rerun(bg, m.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if !eqStrings(runSummary(s.TaskStatus), []string{"0:failed/scheduled/failed", "1:pending/rerun/"}) {
		t.Errorf("after rerun: %v", runSummary(s.TaskStatus))
	}
	if gs, _ := q.Graph(bg, "graph-rern"); gs.State != taskdef.GraphRunning || gs.Resolved != nil {
		t.Errorf("graph after rerun: %s", gs.State)
	}
	m2 := claimOne(t, q)
	if m2.RunID != 1 {
		t.Fatalf("claimed run %d", m2.RunID)
	}
	// The reducer was dependency-failed: the mapper's rerun made it wait
	// for the new run, and its completion schedules the reducer.
	if r, err := q.ReportCompleted(bg, m2.TaskID, 1, m2.RunToken, taskdef.ReportRequest{}); err != nil || r.GraphResolved || r.GraphState != taskdef.GraphRunning {
		t.Fatalf("complete rerun: %+v %v", r, err)
	}
	red := claimOne(t, q)
	r, err = q.ReportCompleted(bg, red.TaskID, red.RunID, red.RunToken, taskdef.ReportRequest{})
	if err != nil || !r.GraphResolved || r.GraphState != taskdef.GraphCompleted {
		t.Errorf("reducer after rerun: %+v %v", r, err)
	}
	// A completed task may be rerun too, until its deadline.
	if _, err := q.Rerun(bg, red.TaskID); err != nil {
		t.Errorf("rerun of a completed task: %v", err)
	}
	clk.Advance(time.Hour)
	if _, err := q.Tick(bg); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Rerun(bg, red.TaskID); !errors.Is(err, ErrDeadlineExceeded) {
		t.Errorf("rerun past deadline: %v", err)
	}
	if _, err := q.Rerun(bg, "task-none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("rerun unknown: %v", err)
	}
}

func TestClaimWait(t *testing.T) {
	t.Parallel()
	t.Run("wakes on create", func(t *testing.T) {
		t.Parallel()
		q, _ := newQueue(t)
		got := make(chan []taskdef.Claim, 1)
		go func() {
			cs, err := q.ClaimWait(bg, worker, time.Minute)
			if err != nil {
				t.Error(err)
			}
			got <- cs
		}()
		// Whether the waiter is already waiting or not, it must get the
		// task: it looks before it waits.
		mustCreate(t, q, mapReduce("graph-wait", 1, 5))
		select {
		case cs := <-got:
			if len(cs) != 1 {
				t.Fatalf("woke with %d claims", len(cs))
			}
		case <-time.After(30 * time.Second):
			t.Fatal("ClaimWait did not wake on a new pending task")
		}
	})
	t.Run("wakes on dependency", func(t *testing.T) {
		t.Parallel()
		q, _ := newQueue(t)
		mustCreate(t, q, mapReduce("graph-wdep", 1, 5))
		m := claimOne(t, q)
		got := make(chan []taskdef.Claim, 1)
		go func() {
			cs, _ := q.ClaimWait(bg, worker, time.Minute)
			got <- cs
		}()
		if _, err := q.ReportCompleted(bg, m.TaskID, m.RunID, m.RunToken, taskdef.ReportRequest{}); err != nil {
			t.Fatal(err)
		}
		select {
		case cs := <-got:
			if len(cs) != 1 || cs[0].Task.Payload.Kind != taskdef.KindReducer {
				t.Fatalf("woke with %+v", cs)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("ClaimWait did not wake when the reducer became pending")
		}
	})
	t.Run("wait passes", func(t *testing.T) {
		t.Parallel()
		q, _ := newQueue(t)
		cs, err := q.ClaimWait(bg, worker, 20*time.Millisecond)
		if err != nil || cs == nil || len(cs) != 0 {
			t.Errorf("got %v %v, want an empty slice", cs, err)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		t.Parallel()
		q, _ := newQueue(t)
		ctx, cancel := context.WithCancel(bg)
		done := make(chan error, 1)
		go func() {
			_, err := q.ClaimWait(ctx, worker, time.Minute)
			done <- err
		}()
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("got %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("ClaimWait ignored its context")
		}
	})
	t.Run("bad worker", func(t *testing.T) {
		t.Parallel()
		q, _ := newQueue(t)
		for _, req := range []taskdef.ClaimRequest{{WorkerID: "w"}, {WorkerGroup: "g"}, {WorkerGroup: "g", WorkerID: "w", Tasks: -1}, {WorkerGroup: "g\n", WorkerID: "w"}} {
			if _, err := q.ClaimWait(bg, req, time.Millisecond); !errors.Is(err, ErrInvalid) {
				t.Errorf("%+v: %v", req, err)
			}
		}
	})
}

func TestCancelChain(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t)
	g := taskdef.Graph{GraphID: "graph-chan", Name: "n", Owner: "o"}
	prev := ""
	for i, req := range []taskdef.Requires{"", taskdef.RequiresAllCompleted, taskdef.RequiresAllResolved, ""} {
		var deps []string
		if prev != "" {
			deps = []string{prev}
		}
		tk := mkTask(g.GraphID, taskdef.KindMapper, 1, deps...)
		tk.Requires = req
		prev = fmt.Sprintf("graph-chan-%d", i)
		g.Tasks = append(g.Tasks, taskdef.GraphTask{TaskID: prev, Task: tk})
	}
	mustCreate(t, q, g)
	gs, err := q.CancelGraph(bg, g.GraphID)
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range gs.Tasks {
		if len(ts.Runs) != 1 || ts.Runs[0].ReasonResolved != taskdef.ReasonCanceled {
			t.Errorf("%s: %v", ts.TaskID, runSummary(ts))
		}
	}
	if cs, _ := q.Claim(bg, worker); len(cs) != 0 {
		t.Errorf("claimed from a canceled graph")
	}
}
