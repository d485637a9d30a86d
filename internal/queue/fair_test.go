package queue

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/clocktest"
	"github.com/af-project/af/internal/taskdef"
	bolt "go.etcd.io/bbolt"
)

// newSchedQueue is newQueue with a scheduling policy.
func newSchedQueue(t testing.TB, s Scheduling) (*Queue, *clocktest.Fake) {
	t.Helper()
	clk := clocktest.New(t0)
	q, err := Open(filepath.Join(t.TempDir(), "queue.db"), Options{Clock: clk, LeaseDuration: testLease, Scheduling: s})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		checkConsistent(t, q)
		if err := q.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return q, clk
}

// flat is a graph of n independent mappers owned by owner.
func flat(id, owner string, p taskdef.Priority, n int) taskdef.Graph {
	g := taskdef.Graph{GraphID: id, Name: "job", Owner: owner, Priority: p}
	for i := 0; i < n; i++ {
		task := mkTask(id, taskdef.KindMapper, 0)
		task.Metadata.Owner = owner
		g.Tasks = append(g.Tasks, taskdef.GraphTask{TaskID: fmt.Sprintf("%s-m%05d", id, i), Task: task})
	}
	return g
}

// graphOf is the graph id of a task made by flat or mapReduce.
func graphOf(taskID string) string { return taskID[:strings.LastIndex(taskID, "-")] }

func TestClaimOrder(t *testing.T) {
	t.Parallel()
	type gspec struct {
		id, owner string
		prio      taskdef.Priority
		n         int
	}
	tests := []struct {
		name   string
		sched  Scheduling
		graphs []gspec // created in order, a second apart
		// want is the graph of each successive one-task claim ("-": the
		// claim got nothing); no task completes in between.
		want []string
	}{
		{"fewest running owner first, then oldest", Scheduling{},
			[]gspec{{"graph-a0", "alice", "", 3}, {"graph-b0", "bob", "", 2}},
			[]string{"graph-a0", "graph-b0", "graph-a0", "graph-b0", "graph-a0", "-"}},
		{"FIFO: oldest first whoever owns it", Scheduling{FIFO: true},
			[]gspec{{"graph-a0", "alice", "", 3}, {"graph-b0", "bob", "", 2}},
			[]string{"graph-a0", "graph-a0", "graph-a0", "graph-b0", "graph-b0", "-"}},
		{"high, then normal, then low", Scheduling{},
			[]gspec{{"graph-l0", "lou", taskdef.PriorityLow, 1}, {"graph-n0", "nat", taskdef.PriorityNormal, 2}, {"graph-h0", "hal", taskdef.PriorityHigh, 1}},
			[]string{"graph-h0", "graph-n0", "graph-n0", "graph-l0", "-"}},
		{"priority beats fewest running", Scheduling{},
			[]gspec{{"graph-b0", "bob", "", 1}, {"graph-a0", "alice", taskdef.PriorityHigh, 2}},
			[]string{"graph-a0", "graph-a0", "graph-b0"}},
		{"priority holds under FIFO too", Scheduling{FIFO: true},
			[]gspec{{"graph-b0", "bob", "", 1}, {"graph-a0", "alice", taskdef.PriorityHigh, 1}},
			[]string{"graph-a0", "graph-b0"}},
		{"one owner's two graphs share its count", Scheduling{},
			[]gspec{{"graph-a1", "alice", "", 2}, {"graph-a2", "alice", "", 2}, {"graph-b0", "bob", "", 2}},
			[]string{"graph-a1", "graph-b0", "graph-a1", "graph-b0", "graph-a2", "graph-a2", "-"}},
		{"running counts across priorities", Scheduling{},
			// alice's high task runs first; then, at normal, bob has
			// fewer running than alice.
			[]gspec{{"graph-a0", "alice", "", 2}, {"graph-b0", "bob", "", 2}, {"graph-ah", "alice", taskdef.PriorityHigh, 1}},
			[]string{"graph-ah", "graph-b0", "graph-a0", "graph-b0", "graph-a0"}},
		{"an owner at its running cap waits", Scheduling{MaxRunningPerOwner: 1},
			[]gspec{{"graph-a0", "alice", "", 3}, {"graph-b0", "bob", "", 1}},
			[]string{"graph-a0", "graph-b0", "-"}},
		{"the cap also holds under FIFO", Scheduling{FIFO: true, MaxRunningPerOwner: 2},
			[]gspec{{"graph-a0", "alice", "", 3}, {"graph-b0", "bob", "", 1}},
			[]string{"graph-a0", "graph-a0", "graph-b0", "-"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q, clk := newSchedQueue(t, tc.sched)
			for _, g := range tc.graphs {
				mustCreate(t, q, flat(g.id, g.owner, g.prio, g.n))
				clk.Advance(time.Second)
			}
			var got []string
			for range tc.want {
				cs, err := q.Claim(bg, worker)
				if err != nil {
					t.Fatal(err)
				}
				switch len(cs) {
				case 0:
					got = append(got, "-")
				case 1:
					got = append(got, graphOf(cs[0].TaskID))
				default:
					t.Fatalf("claimed %d tasks", len(cs))
				}
			}
			if !eqStrings(got, tc.want) {
				t.Errorf("claim order\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

// A claim of several tasks follows the same order as one-task claims.
func TestClaimManyInterleaves(t *testing.T) {
	t.Parallel()
	q, clk := newSchedQueue(t, Scheduling{})
	mustCreate(t, q, flat("graph-a0", "alice", "", 5))
	clk.Advance(time.Second)
	mustCreate(t, q, flat("graph-b0", "bob", "", 5))
	cs, err := q.Claim(bg, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 6})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, c.TaskID)
	}
	want := []string{"graph-a0-m00000", "graph-b0-m00000", "graph-a0-m00001", "graph-b0-m00001", "graph-a0-m00002", "graph-b0-m00002"}
	if !eqStrings(got, want) {
		t.Errorf("claimed %v, want %v", got, want)
	}
}

// Completing a task of an owner at its running cap lets its next task go,
// and wakes a long-poll waiting for it.
func TestRunningCapFreesOnCompletion(t *testing.T) {
	t.Parallel()
	q, _ := newSchedQueue(t, Scheduling{MaxRunningPerOwner: 1})
	mustCreate(t, q, flat("graph-a0", "alice", "", 2))
	first := claimOne(t, q)
	if cs, err := q.Claim(bg, worker); err != nil || len(cs) != 0 {
		t.Fatalf("claim at the cap: %v, %d tasks", err, len(cs))
	}
	got := make(chan []taskdef.Claim, 1)
	ch := q.waitCh() // taken before the report, as ClaimWaitRaw takes it
	go func() {
		cs, err := q.ClaimWait(bg, worker, time.Minute)
		if err != nil {
			t.Error(err)
		}
		got <- cs
	}()
	if _, err := q.ReportCompleted(bg, first.TaskID, first.RunID, first.RunToken, taskdef.ReportRequest{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("completing a capped owner's task did not wake the long-polls")
	}
	cs := <-got
	if len(cs) != 1 || cs[0].TaskID != "graph-a0-m00001" {
		t.Fatalf("after the completion the long-poll got %+v", cs)
	}
}

func TestPendingCap(t *testing.T) {
	t.Parallel()
	q, _ := newSchedQueue(t, Scheduling{MaxPendingPerOwner: 5})
	mustCreate(t, q, mapReduce("graph-a1", 3, 0)) // 4 tasks: 3 pending, 1 unscheduled
	tests := []struct {
		name    string
		do      func() error
		wantErr string // "" for success
	}{
		{"a graph over the cap", func() error {
			_, err := q.CreateGraph(bg, mapReduce("graph-a2", 1, 0))
			return err
		}, `owner "owner@example.com" has 4 tasks waiting to run (pending or unscheduled) and this adds 2: over the limit of 5 tasks per owner (max_pending_per_owner in the server's config)`},
		{"re-creating an existing graph is still idempotent", func() error {
			_, err := q.CreateGraph(bg, mapReduce("graph-a1", 3, 0))
			return err
		}, ""},
		{"a task over the cap", func() error {
			_, err := q.CreateTask(bg, "task-aa3", mkTask("graph-a1", taskdef.KindMapper, 0))
			if err != nil {
				return err
			}
			_, err = q.CreateTask(bg, "task-aa4", mkTask("graph-a1", taskdef.KindMapper, 0))
			return err
		}, "has 5 tasks waiting to run (pending or unscheduled) and this adds 1: over the limit of 5"},
		{"another owner is not held back", func() error {
			_, err := q.CreateGraph(bg, flat("graph-b0", "bob", "", 5))
			return err
		}, ""},
	}
	for _, tc := range tests {
		err := tc.do()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (!errors.Is(err, ErrOverLimit) || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: got %v, want ErrOverLimit saying %q", tc.name, err, tc.wantErr)
		}
	}
	// Running tasks are not waiting: once some run, the owner may add more.
	for range 3 {
		cs, err := q.Claim(bg, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 1})
		if err != nil || len(cs) != 1 {
			t.Fatalf("claim: %v %d", err, len(cs))
		}
	}
	if _, err := q.CreateGraph(bg, mapReduce("graph-a2", 1, 0)); err != nil {
		t.Errorf("after three tasks started: %v", err)
	}
}

func TestHighPriorityOwners(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		high   []string
		owner  string
		prio   taskdef.Priority
		forbid bool
	}{
		{"no list: anyone may", nil, "bob", taskdef.PriorityHigh, false},
		{"listed owner", []string{"alice"}, "alice", taskdef.PriorityHigh, false},
		{"unlisted owner asking high", []string{"alice"}, "bob", taskdef.PriorityHigh, true},
		{"unlisted owner at normal", []string{"alice"}, "bob", taskdef.PriorityNormal, false},
		{"empty list: nobody", []string{}, "alice", taskdef.PriorityHigh, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q, _ := newSchedQueue(t, Scheduling{HighOwners: tc.high})
			_, err := q.CreateGraph(bg, flat("graph-x0", tc.owner, tc.prio, 1))
			if !tc.forbid {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "priority.high_owners") || !strings.Contains(err.Error(), "--priority normal") {
				t.Fatalf("got %v, want ErrForbidden naming priority.high_owners and --priority normal", err)
			}
			// A task added alone asking high is refused the same way.
			task := mkTask("graph-y0", taskdef.KindMapper, 0)
			task.Metadata.Owner, task.Priority = tc.owner, taskdef.PriorityHigh
			if _, err := q.CreateTask(bg, "task-y00", task); !errors.Is(err, ErrForbidden) {
				t.Fatalf("CreateTask at high: %v, want ErrForbidden", err)
			}
		})
	}
}

func TestPriorityValidation(t *testing.T) {
	t.Parallel()
	q, _ := newSchedQueue(t, Scheduling{})
	bad := flat("graph-bad", "alice", "urgent", 1)
	if _, err := q.CreateGraph(bg, bad); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `priority "urgent" must be high, normal or low (af submit --priority)`) {
		t.Errorf("graph priority urgent: %v", err)
	}
	mixed := flat("graph-mixed", "alice", taskdef.PriorityLow, 2)
	mixed.Tasks[1].Task.Priority = taskdef.PriorityHigh
	if _, err := q.CreateGraph(bg, mixed); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `tasks[1] (graph-mixed-m00001): priority "high" differs from the graph's "low"`) {
		t.Errorf("task priority differing from the graph's: %v", err)
	}
	task := mkTask("graph-t0", taskdef.KindMapper, 0)
	task.Priority = "top"
	if _, err := q.CreateTask(bg, "task-t00", task); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `task task-t00: priority "top" must be high, normal or low`) {
		t.Errorf("task priority top: %v", err)
	}
	// A task added to an existing graph takes its priority.
	mustCreate(t, q, flat("graph-e0", "alice", taskdef.PriorityLow, 1))
	added := mkTask("graph-e0", taskdef.KindMapper, 0)
	added.Priority = taskdef.PriorityHigh
	if _, err := q.CreateTask(bg, "task-e01", added); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `priority "high" differs from its graph graph-e0's "low"`) {
		t.Errorf("a high task added to a low graph: %v", err)
	}
	// normal and empty are the same priority: re-creating with either is
	// idempotent.
	mustCreate(t, q, flat("graph-n0", "alice", taskdef.PriorityNormal, 1))
	st := mustCreate(t, q, flat("graph-n0", "alice", "", 1))
	if st.Priority != taskdef.PriorityNormal {
		t.Errorf("status priority %q, want normal", st.Priority)
	}
	mustCreate(t, q, flat("graph-l0", "alice", taskdef.PriorityLow, 1))
	_, err := q.CreateGraph(bg, flat("graph-l0", "alice", taskdef.PriorityHigh, 1))
	var ce *ConflictError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), `priority ("low" vs "high")`) {
		t.Errorf("re-create at another priority: %v", err)
	}
}

// TestMigrateSchema1 opens a queue file written by af before priorities
// (testdata/queue-schema1.db, made by main at 37f7396: alice's 6-mapper
// graph with 3 mappers running, 1 completed and 2 pending, then bob's
// 3-mapper graph)
// and checks that the pending index and the owners' counts are rebuilt,
// and that claims go on in the fair order.
func TestMigrateSchema1(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "queue.db")
	copyFile(t, "testdata/queue-schema1.db", path)
	clk := clocktest.New(t0.Add(time.Minute))
	q, err := Open(path, Options{Clock: clk, LeaseDuration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		checkConsistent(t, q)
		q.Close()
	}()
	err = q.db.View(func(tx *bolt.Tx) error {
		if v, _ := schemaVersion(tx.Bucket(bMeta)); v != SchemaVersion {
			t.Errorf("schema %d after open, want %d", v, SchemaVersion)
		}
		if tx.Bucket(bPendingV1) != nil {
			t.Error("the schema-1 pending bucket is still there")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	counts, err := q.OwnerCounts(bg)
	if err != nil {
		t.Fatal(err)
	}
	want := []OwnerCount{
		{Owner: "alice@example.com", Unscheduled: 1, Pending: 2, Running: 3},
		{Owner: "bob@example.com", Unscheduled: 1, Pending: 3},
	}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("owner counts %+v, want %+v", counts, want)
	}
	// alice has 3 running, bob none: bob's three mappers go first, then
	// alice's.
	var got []string
	for range 4 {
		got = append(got, graphOf(claimOne(t, q).TaskID))
	}
	if w := []string{"graph-bob1", "graph-bob1", "graph-bob1", "graph-alice"}; !eqStrings(got, w) {
		t.Errorf("claims after the migration %v, want %v", got, w)
	}
	q.Close()
	// Opening again changes nothing more.
	q, err = Open(path, Options{Clock: clk})
	if err != nil {
		t.Fatalf("second open: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// The owners' counts follow every kind of transition: cancel, rerun,
// retries, lost leases (checkConsistent compares them with the tasks at
// the end of every test; this one walks the edges that touch them).
func TestOwnerCountsFollowTransitions(t *testing.T) {
	t.Parallel()
	q, clk := newSchedQueue(t, Scheduling{})
	mustCreate(t, q, mapReduce("graph-a0", 2, 1))
	mustCreate(t, q, flat("graph-b0", "bob", "", 2))
	c := claimOne(t, q)
	if _, err := q.ReportException(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{Reason: taskdef.ReasonWorkerShutdown}); err != nil {
		t.Fatal(err)
	}
	claimOne(t, q)
	clk.Advance(2 * testLease)
	if _, err := q.Tick(bg); err != nil {
		t.Fatal(err)
	}
	if _, err := q.CancelGraph(bg, "graph-b0"); err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, q)
	counts, err := q.OwnerCounts(bg)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range counts {
		if o.Owner == "bob" {
			t.Errorf("bob's graph is canceled, yet counted: %+v", o)
		}
	}
	completeAll(t, q)
	if _, err := q.Rerun(bg, "graph-a0-m00000"); err != nil {
		t.Fatal(err)
	}
	counts, _ = q.OwnerCounts(bg)
	if len(counts) != 1 || counts[0].Pending != 1 || counts[0].Unscheduled != 1 {
		t.Errorf("after rerunning a mapper: %+v, want 1 pending and the reducer unscheduled", counts)
	}
}

// A resolved task's deadline entry stays until Tick passes it; the tick
// then drops it and resolves nothing.
func TestStaleDeadlineEntryDropped(t *testing.T) {
	t.Parallel()
	q, clk := newSchedQueue(t, Scheduling{})
	mustCreate(t, q, flat("graph-d0", "alice", "", 1))
	c := claimOne(t, q)
	if _, err := q.ReportCompleted(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{}); err != nil {
		t.Fatal(err)
	}
	entries := func() int {
		n := 0
		_ = q.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bDeadlines).ForEach(func([]byte, []byte) error { n++; return nil })
		})
		return n
	}
	if n := entries(); n != 1 {
		t.Fatalf("%d deadline entries after the completion, want the stale 1", n)
	}
	clk.Advance(2 * time.Hour)
	rep, err := q.Tick(bg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.DeadlinesExceeded != 0 || len(rep.ResolvedGraphs) != 0 {
		t.Errorf("tick past a completed task's deadline: %+v", rep)
	}
	if n := entries(); n != 0 {
		t.Errorf("%d deadline entries after the tick, want 0", n)
	}
	if s := mustTask(t, q, c.TaskID); s.State != taskdef.StateCompleted {
		t.Errorf("task is %s, want completed", s.State)
	}
}
