package queue

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/clocktest"
	"github.com/af-project/af/internal/taskdef"
)

// graphH drives one map-reduce graph through the public API.
type graphH struct {
	t   *testing.T
	q   *Queue
	clk *clocktest.Fake
	g   string
	n   int
}

func newGraphH(t *testing.T, n int, edit func(*taskdef.Graph)) *graphH {
	q, clk := newQueue(t)
	h := &graphH{t: t, q: q, clk: clk, g: "graph-rr", n: n}
	g := mapReduce(h.g, n, 2)
	if edit != nil {
		edit(&g)
	}
	mustCreate(t, q, g)
	return h
}

func (h *graphH) m(i int) string { return fmt.Sprintf("%s-m%05d", h.g, i) }
func (h *graphH) red() string    { return h.g + "-reduce" }

// claim claims the next task and checks it is want. A reducer's claim
// also checks the invariant the worker relies on: every mapper's latest
// run is completed, so run -1's result is the one to merge.
func (h *graphH) claim(want string) taskdef.Claim {
	h.t.Helper()
	h.clk.Advance(time.Second)
	c := claimOne(h.t, h.q)
	if c.TaskID != want {
		h.t.Fatalf("claimed %s, want %s", c.TaskID, want)
	}
	if c.TaskID == h.red() {
		for i := 0; i < h.n; i++ {
			s := mustTask(h.t, h.q, h.m(i))
			if last := s.Runs[len(s.Runs)-1]; last.State != sCompleted {
				h.t.Fatalf("the reducer was claimed while mapper %s's latest run is %s", s.TaskID, last.State)
			}
		}
	}
	return c
}

// complete claims want and reports it completed.
func (h *graphH) complete(want string) taskdef.ReportResponse {
	h.t.Helper()
	c := h.claim(want)
	r, err := h.q.ReportCompleted(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{})
	if err != nil {
		h.t.Fatalf("complete %s: %v", want, err)
	}
	return r
}

// nothingPending checks that no task can be claimed.
func (h *graphH) nothingPending() {
	h.t.Helper()
	cs, err := h.q.Claim(bg, worker)
	if err != nil || len(cs) != 0 {
		h.t.Fatalf("claim found %d tasks (%v), want none", len(cs), err)
	}
}

func (h *graphH) rerun(id string) taskdef.RerunResponse {
	h.t.Helper()
	h.clk.Advance(time.Second)
	r, err := h.q.Rerun(bg, id)
	if err != nil {
		h.t.Fatalf("rerun %s: %v", id, err)
	}
	return r
}

func (h *graphH) runs(id string) []string { return runSummary(mustTask(h.t, h.q, id)) }

func (h *graphH) wantRuns(id string, want ...string) {
	h.t.Helper()
	if got := h.runs(id); !eqStrings(got, want) {
		h.t.Errorf("%s runs %v, want %v", id, got, want)
	}
}

func (h *graphH) graphState() taskdef.GraphState {
	h.t.Helper()
	gs, err := h.q.Graph(bg, h.g)
	if err != nil {
		h.t.Fatal(err)
	}
	return gs.State
}

func effectsOf(es []taskdef.RerunEffect) []string {
	var out []string
	for _, e := range es {
		out = append(out, fmt.Sprintf("%s:%s->%s:%s", e.TaskID, e.From, e.To, e.Effect))
	}
	return out
}

// TestRerunKeepsGraphSound covers each way a mapper rerun meets its
// reducer, and the refusals.
func TestRerunKeepsGraphSound(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(t *testing.T, h *graphH)
	}{
		{"mapper rerun before the reducer started: the reducer waits, then runs once on the new output", func(t *testing.T, h *graphH) {
			h.complete(h.m(0))
			h.complete(h.m(1))
			r := h.rerun(h.m(0))
			if !eqStrings(runSummary(r.TaskStatus), []string{"0:completed/scheduled/completed", "1:pending/rerun/"}) {
				t.Errorf("rerun mapper: %v", runSummary(r.TaskStatus))
			}
			if got := effectsOf(r.Dependents); !eqStrings(got, []string{h.red() + ":unscheduled->unscheduled:waits"}) {
				t.Errorf("effects %v", got)
			}
			// m2 completes: the reducer still waits for m0's new run.
			if rep := h.complete(h.m(2)); rep.GraphResolved {
				t.Fatal("graph resolved while a mapper is rerun")
			}
			if s := mustTask(t, h.q, h.red()); s.State != sUnscheduled {
				t.Fatalf("reducer is %s with a mapper rerun pending", s.State)
			}
			h.complete(h.m(0))
			rep := h.complete(h.red())
			if !rep.GraphResolved || rep.GraphState != taskdef.GraphCompleted {
				t.Errorf("reducer report: %+v", rep)
			}
			h.wantRuns(h.red(), "0:completed/scheduled/completed")
			h.wantRuns(h.m(0), "0:completed/scheduled/completed", "1:completed/rerun/completed")
		}},
		{"mapper rerun while the reducer is pending: its unclaimed run is superseded and it waits", func(t *testing.T, h *graphH) {
			for i := 0; i < h.n; i++ {
				h.complete(h.m(i))
			}
			r := h.rerun(h.m(1))
			if got := effectsOf(r.Dependents); !eqStrings(got, []string{h.red() + ":pending->unscheduled:waits"}) {
				t.Errorf("effects %v", got)
			}
			h.complete(h.m(1)) // the reducer is not claimable before
			h.complete(h.red())
			h.wantRuns(h.red(), "0:exception/scheduled/superseded", "1:completed/rerun/completed")
			if st := h.graphState(); st != taskdef.GraphCompleted {
				t.Errorf("graph %s", st)
			}
		}},
		{"mapper rerun after the reducer completed: the reducer runs again", func(t *testing.T, h *graphH) {
			for i := 0; i < h.n; i++ {
				h.complete(h.m(i))
			}
			if rep := h.complete(h.red()); !rep.GraphResolved || rep.GraphState != taskdef.GraphCompleted {
				t.Fatalf("first reducer report %+v", rep)
			}
			r := h.rerun(h.m(2))
			if got := effectsOf(r.Dependents); !eqStrings(got, []string{h.red() + ":completed->unscheduled:runs-again"}) {
				t.Errorf("effects %v", got)
			}
			if st := h.graphState(); st != taskdef.GraphRunning {
				t.Errorf("graph %s after the rerun, want running", st)
			}
			if s := mustTask(t, h.q, h.red()); s.RetriesLeft != 2 {
				t.Errorf("re-opened reducer has %d retries left, want a fresh 2", s.RetriesLeft)
			}
			h.complete(h.m(2))
			rep := h.complete(h.red())
			if !rep.GraphResolved || rep.GraphState != taskdef.GraphCompleted {
				t.Errorf("second reducer report %+v", rep)
			}
			h.wantRuns(h.red(), "0:completed/scheduled/completed", "1:completed/rerun/completed")
			h.wantRuns(h.m(0), "0:completed/scheduled/completed")
		}},
		{"mapper rerun while the reducer runs: its run is superseded, its late report refused", func(t *testing.T, h *graphH) {
			for i := 0; i < h.n; i++ {
				h.complete(h.m(i))
			}
			old := h.claim(h.red())
			r := h.rerun(h.m(0))
			if got := effectsOf(r.Dependents); !eqStrings(got, []string{h.red() + ":running->unscheduled:runs-again"}) {
				t.Errorf("effects %v", got)
			}
			if _, err := h.q.Reclaim(bg, old.TaskID, old.RunID, old.RunToken, taskdef.Stats{}); !errors.Is(err, ErrRunNotCurrent) {
				t.Errorf("reclaim of the superseded run: %v", err)
			}
			if _, err := h.q.ReportCompleted(bg, old.TaskID, old.RunID, old.RunToken, taskdef.ReportRequest{}); !errors.Is(err, ErrRunNotCurrent) {
				t.Errorf("late report of the superseded run: %v", err)
			}
			if s := mustTask(t, h.q, h.red()); s.RetriesLeft != 2 {
				t.Errorf("superseded reducer has %d retries left, want 2 (not its fault)", s.RetriesLeft)
			}
			h.complete(h.m(0))
			h.complete(h.red())
			h.wantRuns(h.red(), "0:exception/scheduled/superseded", "1:completed/rerun/completed")
			if st := h.graphState(); st != taskdef.GraphCompleted {
				t.Errorf("graph %s", st)
			}
		}},
		{"mapper rerun after a failed reducer: the reducer runs again", func(t *testing.T, h *graphH) {
			for i := 0; i < h.n; i++ {
				h.complete(h.m(i))
			}
			c := h.claim(h.red())
			if rep, err := h.q.ReportFailed(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{Message: "bad"}); err != nil || rep.GraphState != taskdef.GraphFailed {
				t.Fatalf("fail reducer: %+v %v", rep, err)
			}
			r := h.rerun(h.m(1))
			if got := effectsOf(r.Dependents); !eqStrings(got, []string{h.red() + ":failed->unscheduled:runs-again"}) {
				t.Errorf("effects %v", got)
			}
			h.complete(h.m(1))
			h.complete(h.red())
			if st := h.graphState(); st != taskdef.GraphCompleted {
				t.Errorf("graph %s", st)
			}
		}},
		{"a reducer that another mapper failed for good is left alone, and cannot be rerun", func(t *testing.T, h *graphH) {
			c := h.claim(h.m(0))
			if _, err := h.q.ReportFailed(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{}); err != nil {
				t.Fatal(err)
			}
			h.complete(h.m(1))
			h.complete(h.m(2))
			if st := h.graphState(); st != taskdef.GraphFailed {
				t.Fatalf("graph %s", st)
			}
			r := h.rerun(h.m(1))
			if len(r.Dependents) != 1 || r.Dependents[0].Effect != taskdef.RerunUnchanged || !strings.Contains(r.Dependents[0].Message, h.m(0)) {
				t.Errorf("effects %+v", r.Dependents)
			}
			h.complete(h.m(1))
			if st := h.graphState(); st != taskdef.GraphFailed {
				t.Errorf("graph %s, want failed again", st)
			}
			_, err := h.q.Rerun(bg, h.red())
			if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), h.m(0)) || !strings.Contains(err.Error(), "--failed") {
				t.Errorf("rerun of the dependency-failed reducer: %v", err)
			}
		}},
		{"the reducer rerun alone runs at once", func(t *testing.T, h *graphH) {
			for i := 0; i < h.n; i++ {
				h.complete(h.m(i))
			}
			h.complete(h.red())
			r := h.rerun(h.red())
			if r.State != sPending || len(r.Dependents) != 0 {
				t.Errorf("reducer rerun: %s %+v", r.State, r.Dependents)
			}
			h.complete(h.red())
		}},
		{"a dependent past its deadline refuses the rerun, and nothing changes", func(t *testing.T, h *graphH) {
			for i := 0; i < h.n; i++ {
				h.complete(h.m(i))
			}
			h.complete(h.red())
			h.clk.Advance(40 * time.Minute) // past the reducer's 30 min, before the mappers' hour
			_, err := h.q.Rerun(bg, h.m(0))
			if !errors.Is(err, ErrDeadlineExceeded) || !strings.Contains(err.Error(), h.red()) {
				t.Errorf("rerun: %v", err)
			}
			h.wantRuns(h.m(0), "0:completed/scheduled/completed")
			if st := h.graphState(); st != taskdef.GraphCompleted {
				t.Errorf("graph %s", st)
			}
		}},
		{"rerun of an unresolved task is refused", func(t *testing.T, h *graphH) {
			h.claim(h.m(0))
			for _, id := range []string{h.m(0), h.m(1), h.red()} {
				if _, err := h.q.Rerun(bg, id); !errors.Is(err, ErrConflict) {
					t.Errorf("rerun %s: %v", id, err)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newGraphH(t, 3, func(g *taskdef.Graph) {
				g.Tasks[len(g.Tasks)-1].Task.Deadline = t0.Add(30 * time.Minute)
			})
			tc.run(t, h)
		})
	}
}

// TestCanceledGraph: a cancel resolves the graph canceled, with no
// per-task message, and its tasks cannot be rerun one by one.
func TestCanceledGraph(t *testing.T) {
	t.Parallel()
	h := newGraphH(t, 3, nil)
	h.complete(h.m(0))
	running := h.claim(h.m(1))
	gs, err := h.q.CancelGraph(bg, h.g)
	if err != nil {
		t.Fatal(err)
	}
	if gs.State != taskdef.GraphCanceled || gs.Resolved == nil {
		t.Errorf("graph %s resolved %v, want canceled", gs.State, gs.Resolved)
	}
	for _, ts := range gs.Tasks {
		last := ts.Runs[len(ts.Runs)-1]
		if ts.TaskID == h.m(0) {
			continue
		}
		if ts.State != sException || last.ReasonResolved != taskdef.ReasonCanceled || last.Message != "" {
			t.Errorf("%s: %s/%s %q, want exception/canceled with no message of its own", ts.TaskID, ts.State, last.ReasonResolved, last.Message)
		}
	}
	if _, err := h.q.ReportCompleted(bg, running.TaskID, running.RunID, running.RunToken, taskdef.ReportRequest{}); !errors.Is(err, ErrRunNotCurrent) {
		t.Errorf("report of a canceled run: %v", err)
	}
	for _, id := range []string{h.m(0), h.m(1), h.m(2), h.red()} {
		_, err := h.q.Rerun(bg, id)
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "canceled") || !strings.Contains(err.Error(), "--failed") {
			t.Errorf("rerun %s of a canceled graph: %v", id, err)
		}
	}
	h.nothingPending()
	if st := h.graphState(); st != taskdef.GraphCanceled {
		t.Errorf("graph %s after refused reruns", st)
	}
	// Nor can a task be added to it.
	extra := mkTask(h.g, taskdef.KindMapper, 1)
	if _, err := h.q.CreateTask(bg, "graph-rr-extra", extra); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("add a task to a canceled graph: %v", err)
	}
	// Canceling again changes nothing.
	if gs, err := h.q.CancelGraph(bg, h.g); err != nil || gs.State != taskdef.GraphCanceled {
		t.Errorf("cancel again: %s %v", gs.State, err)
	}

	// --failed re-opens it: the canceled tasks run, the completed one
	// does not.
	r, err := h.q.RerunFailed(bg, h.g)
	if err != nil {
		t.Fatal(err)
	}
	if r.Graph.State != taskdef.GraphRunning {
		t.Errorf("graph %s after --failed", r.Graph.State)
	}
	if got := effectsOf(r.Rerun); !eqStrings(got, []string{
		h.m(1) + ":exception->pending:rerun", h.m(2) + ":exception->pending:rerun", h.red() + ":exception->unscheduled:rerun",
	}) {
		t.Errorf("rerun %v", got)
	}
	h.complete(h.m(1))
	h.complete(h.m(2))
	if rep := h.complete(h.red()); !rep.GraphResolved || rep.GraphState != taskdef.GraphCompleted {
		t.Errorf("reducer %+v", rep)
	}
	h.wantRuns(h.m(0), "0:completed/scheduled/completed")
	h.wantRuns(h.red(), "0:exception/exception/canceled", "1:completed/rerun/completed")
}

// TestRerunFailed reruns every failed and exception task of a graph in one
// step, leaving the completed ones alone.
func TestRerunFailed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(t *testing.T, h *graphH)
		wantErr error
		// rerun lists the effects on the rerun tasks.
		rerun []string
		after func(t *testing.T, h *graphH)
	}{
		{
			name: "failed and exception mappers, dependency-failed reducer",
			setup: func(t *testing.T, h *graphH) {
				h.complete(h.m(0))
				c := h.claim(h.m(1))
				if _, err := h.q.ReportFailed(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{}); err != nil {
					t.Fatal(err)
				}
				c = h.claim(h.m(2))
				if _, err := h.q.ReportException(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{Reason: taskdef.ReasonMalformedPayload}); err != nil {
					t.Fatal(err)
				}
				h.complete(h.m(3))
			},
			rerun: []string{"%m1:failed->pending:rerun", "%m2:exception->pending:rerun", "%red:exception->unscheduled:rerun"},
			after: func(t *testing.T, h *graphH) {
				h.complete(h.m(1))
				h.complete(h.m(2))
				h.complete(h.red())
				h.wantRuns(h.m(0), "0:completed/scheduled/completed")
				h.wantRuns(h.m(3), "0:completed/scheduled/completed")
				h.wantRuns(h.m(1), "0:failed/scheduled/failed", "1:completed/rerun/completed")
				h.wantRuns(h.red(), "0:exception/exception/dependency-failed", "1:completed/rerun/completed")
			},
		},
		{
			name: "a failed reducer alone",
			setup: func(t *testing.T, h *graphH) {
				for i := 0; i < h.n; i++ {
					h.complete(h.m(i))
				}
				c := h.claim(h.red())
				if _, err := h.q.ReportFailed(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{}); err != nil {
					t.Fatal(err)
				}
			},
			rerun: []string{"%red:failed->pending:rerun"},
			after: func(t *testing.T, h *graphH) {
				h.complete(h.red())
				for i := 0; i < h.n; i++ {
					h.wantRuns(h.m(i), "0:completed/scheduled/completed")
				}
			},
		},
		{
			name: "a completed graph has nothing to rerun",
			setup: func(t *testing.T, h *graphH) {
				for i := 0; i < h.n; i++ {
					h.complete(h.m(i))
				}
				h.complete(h.red())
			},
			wantErr: ErrConflict,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newGraphH(t, 4, nil)
			tc.setup(t, h)
			before := h.graphState()
			commits := h.q.commits.Load()
			r, err := h.q.RerunFailed(bg, h.g)
			if n := h.q.commits.Load() - commits; err == nil && n != 1 {
				t.Errorf("RerunFailed took %d transactions, want exactly one", n)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("RerunFailed: %v, want %v", err, tc.wantErr)
				}
				if st := h.graphState(); st != before {
					t.Errorf("graph %s after a refused rerun, was %s", st, before)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, w := range tc.rerun {
				w = strings.ReplaceAll(w, "%red", h.red())
				for i := 0; i < h.n; i++ {
					w = strings.ReplaceAll(w, fmt.Sprintf("%%m%d", i), h.m(i))
				}
				want = append(want, w)
			}
			if got := effectsOf(r.Rerun); !eqStrings(got, want) {
				t.Errorf("rerun %v, want %v", got, want)
			}
			if r.Graph.State != taskdef.GraphRunning || r.Graph.Resolved != nil {
				t.Errorf("graph %s after --failed, want running", r.Graph.State)
			}
			tc.after(t, h)
			if st := h.graphState(); st != taskdef.GraphCompleted {
				t.Errorf("graph %s at the end", st)
			}
		})
	}
	t.Run("unknown graph", func(t *testing.T) {
		t.Parallel()
		q, _ := newQueue(t)
		if _, err := q.RerunFailed(bg, "graph-none"); !errors.Is(err, ErrNotFound) {
			t.Errorf("RerunFailed: %v", err)
		}
	})
}

// TestRerunCascadesDownAChain: a rerun at the top of a chain a <- b <- c
// re-opens every task below that consumed the old output, and they run
// again in order.
func TestRerunCascadesDownAChain(t *testing.T) {
	t.Parallel()
	q, clk := newQueue(t)
	g := "graph-chain"
	mustCreate(t, q, taskdef.Graph{GraphID: g, Tasks: []taskdef.GraphTask{
		{TaskID: g + "-a", Task: mkTask(g, taskdef.KindMapper, 1)},
		{TaskID: g + "-b", Task: mkTask(g, taskdef.KindMapper, 1, g+"-a")},
		{TaskID: g + "-c", Task: mkTask(g, taskdef.KindReducer, 1, g+"-b")},
	}})
	h := &graphH{t: t, q: q, clk: clk, g: g}
	for _, id := range []string{"-a", "-b", "-c"} {
		h.complete(g + id)
	}
	r := h.rerun(g + "-a")
	if got := effectsOf(r.Dependents); !eqStrings(got, []string{
		g + "-b:completed->unscheduled:runs-again", g + "-c:completed->unscheduled:runs-again",
	}) {
		t.Errorf("effects %v", got)
	}
	h.complete(g + "-a")
	h.nothingPendingBut(g + "-b")
	h.complete(g + "-b")
	if rep := h.complete(g + "-c"); !rep.GraphResolved || rep.GraphState != taskdef.GraphCompleted {
		t.Errorf("last report %+v", rep)
	}
	h.wantRuns(g+"-c", "0:completed/scheduled/completed", "1:completed/rerun/completed")
}

// nothingPendingBut checks that exactly one task, id, is claimable, without
// claiming it.
func (h *graphH) nothingPendingBut(id string) {
	h.t.Helper()
	for _, other := range []string{h.g + "-a", h.g + "-b", h.g + "-c"} {
		s := mustTask(h.t, h.q, other)
		if (other == id) != (s.State == sPending) {
			h.t.Errorf("%s is %s", other, s.State)
		}
	}
}
