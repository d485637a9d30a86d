package queue

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/taskdef"
	bolt "go.etcd.io/bbolt"
)

var bg = context.Background()

func TestMapReduceCompletes(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t)
	gs := mustCreate(t, q, mapReduce("graph-mr01", 3, 5))
	if gs.State != taskdef.GraphRunning || len(gs.Tasks) != 4 || gs.ResultTaskID != "graph-mr01-reduce" {
		t.Fatalf("created graph: state %s, %d tasks, result %q", gs.State, len(gs.Tasks), gs.ResultTaskID)
	}
	counts := map[taskdef.TaskState]int{}
	for _, ts := range gs.Tasks {
		counts[ts.State]++
		if ts.Kind == taskdef.KindMapper && (ts.InputFiles != 2 || ts.InputBytes != 150) {
			t.Errorf("mapper %s: %d files %d bytes", ts.TaskID, ts.InputFiles, ts.InputBytes)
		}
		if ts.Kind == taskdef.KindReducer && len(ts.Dependencies) != 3 {
			t.Errorf("reducer dependencies %v", ts.Dependencies)
		}
	}
	if counts[sPending] != 3 || counts[sUnscheduled] != 1 {
		t.Fatalf("states after create: %v", counts)
	}
	resolvedReports := 0
	for i := 0; i < 4; i++ {
		c := claimOne(t, q)
		if i < 3 && c.Task.Payload.Kind != taskdef.KindMapper {
			t.Fatalf("claim %d got %s before the mappers were done", i, c.Task.Payload.Kind)
		}
		if !c.TakenUntil.Equal(t0.Add(testLease)) {
			t.Errorf("takenUntil %s, want now+lease", c.TakenUntil)
		}
		r, err := q.ReportCompleted(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{Stats: taskdef.Stats{Files: 2, RecordsIn: 10}})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status.State != sCompleted || r.Status.Runs[0].Stats.RecordsIn != 10 {
			t.Errorf("report status %+v", r.Status)
		}
		if c.Task.Payload.Kind == taskdef.KindReducer && len(r.Status.Dependencies) != 3 {
			t.Errorf("reducer report status has dependencies %v", r.Status.Dependencies)
		}
		if r.GraphResolved {
			resolvedReports++
			if i != 3 || r.GraphState != taskdef.GraphCompleted {
				t.Errorf("report %d resolved the graph as %s", i, r.GraphState)
			}
		}
	}
	if resolvedReports != 1 {
		t.Errorf("%d reports said they resolved the graph, want exactly 1", resolvedReports)
	}
	if cs, _ := q.Claim(bg, worker); len(cs) != 0 {
		t.Errorf("claimed %d tasks after the graph ended", len(cs))
	}
	gs, err := q.Graph(bg, "graph-mr01")
	if err != nil {
		t.Fatal(err)
	}
	if gs.State != taskdef.GraphCompleted || gs.Resolved == nil {
		t.Errorf("graph %s resolved %v", gs.State, gs.Resolved)
	}
	list, err := q.Graphs(bg, 10)
	if err != nil || len(list) != 1 || list[0].Counts[sCompleted] != 4 || list[0].State != taskdef.GraphCompleted {
		t.Errorf("Graphs: %+v %v", list, err)
	}
	n, err := q.Counts(bg)
	if err != nil || n[sCompleted] != 4 || n[sPending] != 0 {
		t.Errorf("Counts %v %v", n, err)
	}
}

func TestCreateIdempotentAndConflicts(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t)
	g := mapReduce("graph-idem", 2, 5)
	first := mustCreate(t, q, g)
	// Times in another zone are the same instants: still idempotent.
	again := mapReduce("graph-idem", 2, 5)
	for i := range again.Tasks {
		again.Tasks[i].Task.Created = again.Tasks[i].Task.Created.In(time.FixedZone("X", 3600))
	}
	second, err := q.CreateGraph(bg, again)
	if err != nil {
		t.Fatalf("re-create: %v", err)
	}
	if len(second.Tasks) != len(first.Tasks) || second.Created != first.Created {
		t.Errorf("re-create changed the graph")
	}
	tests := []struct {
		name   string
		change func(g *taskdef.Graph)
		want   []string
	}{
		{"image", func(g *taskdef.Graph) { g.Tasks[0].Task.Payload.Image = "af/other:2" }, []string{`payload.image ("af/example:1" vs "af/other:2")`}},
		{"retries and deadline", func(g *taskdef.Graph) {
			g.Tasks[1].Task.Retries = 1
			g.Tasks[1].Task.Deadline = t0.Add(2 * time.Hour)
		}, []string{"deadline (", "retries (5 vs 1)"}},
		{"inputs", func(g *taskdef.Graph) { g.Tasks[0].Task.Payload.Inputs = g.Tasks[0].Task.Payload.Inputs[:1] }, []string{"payload.inputs (2 items vs 1)"}},
		{"name", func(g *taskdef.Graph) { g.Name = "other" }, []string{`name ("job" vs "other")`}},
		{"fewer tasks", func(g *taskdef.Graph) { g.Tasks = g.Tasks[1:] }, []string{"tasks (3 tasks vs 2)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := mapReduce("graph-idem", 2, 5)
			tc.change(&g)
			_, err := q.CreateGraph(bg, g)
			var ce *ConflictError
			if !errors.Is(err, ErrConflict) || !errors.As(err, &ce) {
				t.Fatalf("got %v, want a ConflictError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
		})
	}
	// A task of this graph under another graph id is a conflict naming
	// graphId.
	other := mapReduce("graph-othr", 1, 5)
	other.Tasks[0].TaskID = "graph-idem-m00000"
	if _, err := q.CreateGraph(bg, other); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "graphId") {
		t.Errorf("task reused across graphs: %v", err)
	}
	// CreateTask: same definition idempotent, different conflicts.
	def := mkTask("graph-solo", taskdef.KindMapper, 3)
	s1, err := q.CreateTask(bg, "task-solo", def)
	if err != nil || s1.State != sPending {
		t.Fatalf("CreateTask: %+v %v", s1, err)
	}
	if _, err := q.CreateTask(bg, "task-solo", def); err != nil {
		t.Errorf("CreateTask again: %v", err)
	}
	def.Payload.Env = map[string]string{"A": "b"}
	if _, err := q.CreateTask(bg, "task-solo", def); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "payload.env.") {
		t.Errorf("CreateTask different env: %v", err)
	}
	st, _ := q.Graph(bg, "graph-idem")
	for _, ts := range st.Tasks {
		if len(ts.Runs) > 1 {
			t.Errorf("conflicting creates touched %s", ts.TaskID)
		}
	}
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t)
	mustCreate(t, q, mapReduce("graph-prev", 1, 5))
	tests := []struct {
		name   string
		change func(g *taskdef.Graph)
		want   string
	}{
		{"bad graph id", func(g *taskdef.Graph) { g.GraphID = "x" }, "graphId"},
		{"no tasks", func(g *taskdef.Graph) { g.Tasks = nil }, "at least one task"},
		{"bad task id", func(g *taskdef.Graph) { g.Tasks[0].TaskID = "a b" }, "taskId"},
		{"duplicate task", func(g *taskdef.Graph) { g.Tasks[1].TaskID = g.Tasks[0].TaskID }, "appears twice"},
		{"other graph id", func(g *taskdef.Graph) { g.Tasks[0].Task.GraphID = "graph-else" }, "differs from the graph"},
		{"retries high", func(g *taskdef.Graph) { g.Tasks[0].Task.Retries = 51 }, "retries 51"},
		{"retries negative", func(g *taskdef.Graph) { g.Tasks[0].Task.Retries = -1 }, "retries -1"},
		{"no created", func(g *taskdef.Graph) { g.Tasks[0].Task.Created = time.Time{} }, "created is required"},
		{"deadline before created", func(g *taskdef.Graph) { g.Tasks[0].Task.Deadline = t0.Add(-time.Minute) }, "must be after created"},
		{"deadline passed", func(g *taskdef.Graph) {
			g.Tasks[0].Task.Created = t0.Add(-2 * time.Hour)
			g.Tasks[0].Task.Deadline = t0.Add(-time.Hour)
		}, "not in the future"},
		{"deadline too far", func(g *taskdef.Graph) { g.Tasks[0].Task.Deadline = t0.Add(400 * 24 * time.Hour) }, "at most"},
		{"expires too far", func(g *taskdef.Graph) { g.Tasks[0].Task.Expires = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) }, "expires 9999"},
		{"expires before deadline", func(g *taskdef.Graph) { g.Tasks[0].Task.Expires = t0.Add(time.Minute) }, "expires"},
		{"no kind", func(g *taskdef.Graph) { g.Tasks[0].Task.Payload.Kind = "" }, "payload.kind"},
		{"no image", func(g *taskdef.Graph) { g.Tasks[0].Task.Payload.Image = " " }, "payload.image"},
		{"no max run time", func(g *taskdef.Graph) { g.Tasks[0].Task.Payload.MaxRunTime = 0 }, "payload.maxRunTime"},
		{"no name", func(g *taskdef.Graph) { g.Tasks[0].Task.Metadata.Name = "" }, "metadata.name"},
		{"no owner", func(g *taskdef.Graph) { g.Tasks[0].Task.Metadata.Owner = "" }, "metadata.owner"},
		{"bad requires", func(g *taskdef.Graph) { g.Tasks[0].Task.Requires = "some" }, "requires"},
		{"empty input key", func(g *taskdef.Graph) { g.Tasks[0].Task.Payload.Inputs[0].Key = "" }, "payload.inputs[0].key"},
		{"unknown dependency", func(g *taskdef.Graph) {
			g.Tasks[2].Task.Dependencies = append(g.Tasks[2].Task.Dependencies, "task-nowhere")
		}, "dependency task-nowhere does not exist"},
		{"self dependency", func(g *taskdef.Graph) { g.Tasks[0].Task.Dependencies = []string{g.Tasks[0].TaskID} }, "depends on itself"},
		{"duplicate dependency", func(g *taskdef.Graph) {
			g.Tasks[2].Task.Dependencies = append(g.Tasks[2].Task.Dependencies, g.Tasks[0].TaskID)
		}, "listed twice"},
		{"cycle", func(g *taskdef.Graph) { g.Tasks[0].Task.Dependencies = []string{g.Tasks[2].TaskID} }, "dependency cycle: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := mapReduce("graph-vali", 2, 5)
			tc.change(&g)
			_, err := q.CreateGraph(bg, g)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrInvalid mentioning %q", err, tc.want)
			}
			if _, err := q.Graph(bg, "graph-vali"); !errors.Is(err, ErrNotFound) {
				t.Errorf("refused graph was stored: %v", err)
			}
		})
	}
}

func TestDependencyOnExistingTask(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t)
	mustCreate(t, q, mapReduce("graph-base", 1, 5))
	c := claimOne(t, q) // the mapper
	if _, err := q.ReportCompleted(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{}); err != nil {
		t.Fatal(err)
	}
	// New tasks depending on a completed task are pending at once; on an
	// unresolved one they wait.
	if s, err := q.CreateTask(bg, "task-after-m", mkTask("graph-next", taskdef.KindMapper, 5, c.TaskID)); err != nil || s.State != sPending {
		t.Errorf("depends on completed: %s %v", s.State, err)
	}
	if s, err := q.CreateTask(bg, "task-after-r", mkTask("graph-next", taskdef.KindReducer, 5, "graph-base-reduce")); err != nil || s.State != sUnscheduled {
		t.Errorf("depends on pending: %s %v", s.State, err)
	}
	r := claimOne(t, q)
	if r.TaskID != "graph-base-reduce" {
		t.Fatalf("claimed %s, want the reducer (oldest pending)", r.TaskID)
	}
	if _, err := q.ReportFailed(bg, r.TaskID, r.RunID, r.RunToken, taskdef.ReportRequest{Message: "exit 1"}); err != nil {
		t.Fatal(err)
	}
	if s := mustTask(t, q, "task-after-r"); s.State != sException || s.Runs[0].ReasonResolved != taskdef.ReasonDependencyFailed {
		t.Errorf("dependent of a failed task: %v", runSummary(s))
	}
	// Created after its dependency failed: resolved at once.
	s, err := q.CreateTask(bg, "task-late-r", mkTask("graph-late", taskdef.KindReducer, 5, "graph-base-reduce"))
	if err != nil || s.State != sException {
		t.Errorf("created on a failed dependency: %s %v", s.State, err)
	}
	gs, _ := q.Graph(bg, "graph-late")
	if gs.State != taskdef.GraphFailed {
		t.Errorf("graph of a task created on a failed dependency is %s", gs.State)
	}
}

func TestRequiresCascade(t *testing.T) {
	t.Parallel()
	// a -> b (all-completed) -> c (all-completed); a -> d (all-resolved).
	build := func(g string) taskdef.Graph {
		gr := taskdef.Graph{GraphID: g, Name: "n", Owner: "o"}
		add := func(id string, req taskdef.Requires, deps ...string) {
			tk := mkTask(g, taskdef.KindMapper, 0, deps...)
			tk.Requires = req
			gr.Tasks = append(gr.Tasks, taskdef.GraphTask{TaskID: g + id, Task: tk})
		}
		add("-a", "")
		add("-b", taskdef.RequiresAllCompleted, g+"-a")
		add("-c", "", g+"-b")
		add("-d", taskdef.RequiresAllResolved, g+"-a")
		return gr
	}
	tests := []struct {
		name    string
		resolve func(q *Queue, c taskdef.Claim) error
		b, c, d taskdef.TaskState
		graph   taskdef.GraphState
	}{
		{"completed", func(q *Queue, c taskdef.Claim) error {
			_, err := q.ReportCompleted(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{})
			return err
		}, sPending, sUnscheduled, sPending, taskdef.GraphRunning},
		{"failed", func(q *Queue, c taskdef.Claim) error {
			_, err := q.ReportFailed(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{})
			return err
		}, sException, sException, sPending, taskdef.GraphRunning},
		{"exception", func(q *Queue, c taskdef.Claim) error {
			_, err := q.ReportException(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{Reason: taskdef.ReasonInternalError})
			return err
		}, sException, sException, sPending, taskdef.GraphRunning},
		{"worker shutdown without retries", func(q *Queue, c taskdef.Claim) error {
			_, err := q.ReportException(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{Reason: taskdef.ReasonWorkerShutdown})
			return err
		}, sException, sException, sPending, taskdef.GraphRunning},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q, _ := newQueue(t)
			g := "graph-" + strings.ReplaceAll(tc.name, " ", "_")
			mustCreate(t, q, build(g))
			c := claimOne(t, q)
			if c.TaskID != g+"-a" {
				t.Fatalf("claimed %s first", c.TaskID)
			}
			if err := tc.resolve(q, c); err != nil {
				t.Fatal(err)
			}
			for id, want := range map[string]taskdef.TaskState{"-b": tc.b, "-c": tc.c, "-d": tc.d} {
				s := mustTask(t, q, g+id)
				if s.State != want {
					t.Errorf("%s is %s, want %s (%v)", id, s.State, want, runSummary(s))
				}
				if want == sException && s.Runs[0].ReasonResolved != taskdef.ReasonDependencyFailed {
					t.Errorf("%s resolved %q", id, s.Runs[0].ReasonResolved)
				}
			}
			gs, _ := q.Graph(bg, g)
			if gs.State != tc.graph {
				t.Errorf("graph %s", gs.State)
			}
		})
	}
}

func TestReportsAndLateReports(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		retries   int
		report    func(q *Queue, c taskdef.Claim) (taskdef.ReportResponse, error)
		wantState taskdef.TaskState
		wantRuns  []string
	}{
		{"failed is final", 5, func(q *Queue, c taskdef.Claim) (taskdef.ReportResponse, error) {
			return q.ReportFailed(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{Message: "exit 2"})
		}, sFailed, []string{"0:failed/scheduled/failed"}},
		{"worker shutdown retries at once", 5, func(q *Queue, c taskdef.Claim) (taskdef.ReportResponse, error) {
			return q.ReportException(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{Reason: taskdef.ReasonWorkerShutdown})
		}, sPending, []string{"0:exception/scheduled/worker-shutdown", "1:pending/retry/"}},
		{"intermittent task retries as task-retry", 5, func(q *Queue, c taskdef.Claim) (taskdef.ReportResponse, error) {
			return q.ReportException(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{Reason: taskdef.ReasonIntermittentTask})
		}, sPending, []string{"0:exception/scheduled/intermittent-task", "1:pending/task-retry/"}},
		{"worker shutdown without retries is final", 0, func(q *Queue, c taskdef.Claim) (taskdef.ReportResponse, error) {
			return q.ReportException(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{Reason: taskdef.ReasonWorkerShutdown})
		}, sException, []string{"0:exception/scheduled/worker-shutdown"}},
		{"malformed payload is final", 5, func(q *Queue, c taskdef.Claim) (taskdef.ReportResponse, error) {
			return q.ReportException(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{Reason: taskdef.ReasonMalformedPayload})
		}, sException, []string{"0:exception/scheduled/malformed-payload"}},
		{"internal error is final", 5, func(q *Queue, c taskdef.Claim) (taskdef.ReportResponse, error) {
			return q.ReportException(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{Reason: taskdef.ReasonInternalError})
		}, sException, []string{"0:exception/scheduled/internal-error"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q, _ := newQueue(t)
			mustCreate(t, q, taskdef.Graph{GraphID: "graph-rept", Tasks: []taskdef.GraphTask{{TaskID: "task-rept", Task: mkTask("graph-rept", taskdef.KindMapper, tc.retries)}}})
			c := claimOne(t, q)
			r, err := tc.report(q, c)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status.State != tc.wantState || !eqStrings(runSummary(r.Status), tc.wantRuns) {
				t.Errorf("after report: %s %v, want %s %v", r.Status.State, runSummary(r.Status), tc.wantState, tc.wantRuns)
			}
			if r.GraphResolved != tc.wantState.Resolved() {
				t.Errorf("GraphResolved %v", r.GraphResolved)
			}
			// The same report again is answered the same, changing nothing.
			r2, err := tc.report(q, c)
			if err != nil {
				t.Errorf("repeated report: %v", err)
			} else if r2.GraphResolved != r.GraphResolved || len(r2.Status.Runs) != len(r.Status.Runs) {
				t.Errorf("repeated report answered %+v", r2)
			}
			// Any other report or reclaim for that run is refused 409.
			for name, f := range map[string]func() error{
				"completed": func() error {
					_, err := q.ReportCompleted(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{})
					return err
				},
				"reclaim": func() error { _, err := q.Reclaim(bg, c.TaskID, c.RunID, c.RunToken, taskdef.Stats{}); return err },
				"run 7": func() error {
					_, err := q.ReportFailed(bg, c.TaskID, 7, c.RunToken, taskdef.ReportRequest{})
					return err
				},
			} {
				if err := f(); !errors.Is(err, ErrRunNotCurrent) || !errors.Is(err, ErrConflict) {
					t.Errorf("%s after report: %v, want ErrRunNotCurrent", name, err)
				}
			}
		})
	}
	t.Run("bad reason", func(t *testing.T) {
		t.Parallel()
		q, _ := newQueue(t)
		if _, err := q.ReportException(bg, "task-none", 0, "", taskdef.ReportRequest{Reason: "bored"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("got %v", err)
		}
		if _, err := q.ReportCompleted(bg, "task-none", 0, "", taskdef.ReportRequest{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown task: %v", err)
		}
	})
}

func TestGraphsNewestFirst(t *testing.T) {
	t.Parallel()
	q, clk := newQueue(t)
	for _, id := range []string{"graph-old1", "graph-mid1", "graph-new1"} {
		g := mapReduce(id, 1, 5)
		for i := range g.Tasks {
			g.Tasks[i].Task.Created = clk.Now()
			g.Tasks[i].Task.Deadline = clk.Now().Add(time.Hour)
		}
		mustCreate(t, q, g)
		clk.Advance(time.Second)
	}
	list, err := q.Graphs(bg, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].GraphID != "graph-new1" || list[1].GraphID != "graph-mid1" {
		t.Fatalf("Graphs(2) = %+v", list)
	}
	if list[0].Tasks != 2 || list[0].Counts[sPending] != 1 || list[0].Counts[sUnscheduled] != 1 || list[0].Owner != "owner@example.com" {
		t.Errorf("summary %+v", list[0])
	}
	if _, err := q.Graph(bg, "graph-none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown graph: %v", err)
	}
	if _, err := q.Task(bg, "task-none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown task: %v", err)
	}
	if _, err := q.TaskDefinition(bg, "task-none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown definition: %v", err)
	}
	def, err := q.TaskDefinition(bg, "graph-old1-m00000")
	if err != nil || def.Requires != taskdef.RequiresAllCompleted || !def.Expires.Equal(def.Created.Add(365*24*time.Hour)) {
		t.Errorf("stored definition is not normalized: %+v %v", def, err)
	}
}

// TestClaimMissingDefinition: a damaged database that lost a pending task's
// definition hands that task out with a null definition (the worker reports
// it malformed-payload) instead of refusing the claim, which would block
// every task behind it.
func TestClaimMissingDefinition(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t)
	mustCreate(t, q, mapReduce("gmissing", 2, 0))
	first := "gmissing-m00000"
	var saved []byte
	if err := q.db.Update(func(tx *bolt.Tx) error {
		saved = append(saved, tx.Bucket(bDefs).Get([]byte(first))...)
		return tx.Bucket(bDefs).Delete([]byte(first))
	}); err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	req := taskdef.ClaimRequest{WorkerGroup: "grp", WorkerID: "w1", Tasks: 2}
	cs, err := q.ClaimRaw(bg, req)
	if err != nil {
		t.Fatalf("ClaimRaw refused the claim: %v", err)
	}
	if len(cs) != 2 {
		t.Fatalf("claimed %d tasks, want both mappers", len(cs))
	}
	for _, c := range cs {
		switch {
		case c.TaskID == first && string(c.Task) != "null":
			t.Errorf("task without a definition handed out as %s, want null", c.Task)
		case c.TaskID != first && !json.Valid(c.Task):
			t.Errorf("task %s handed out with invalid JSON %s", c.TaskID, c.Task)
		}
	}
	// Put it back so the cleanup's consistency check sees a whole database.
	if err := q.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bDefs).Put([]byte(first), saved) }); err != nil {
		t.Fatal(err)
	}
}
