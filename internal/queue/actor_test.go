package queue

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/af-project/af/internal/taskdef"
)

// onlyOwner is a policy that lets name change only the graphs it owns.
func onlyOwner(name string) Actor {
	return Actor{Name: name, MayChange: func(graphID, owner string) error {
		if owner != name {
			return fmt.Errorf("graph %s is owned by %s", graphID, owner)
		}
		return nil
	}}
}

// TestActorPolicyRefusesAndChangesNothing: an actor whose policy refuses
// a graph's owner is refused cancel, rerun (task and graph), adding a
// task, and depending on one of the graph's tasks (ErrForbidden, with the
// policy's reason), and the graph is left exactly as it was.
func TestActorPolicyRefusesAndChangesNothing(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t)
	g := mapReduce("graph-owned", 1, 0)
	mustCreate(t, q, g)
	c := claimOne(t, q)
	if _, err := q.ReportFailed(context.Background(), c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{}); err != nil {
		t.Fatal(err)
	}
	before, err := q.Graph(context.Background(), g.GraphID)
	if err != nil {
		t.Fatal(err)
	}
	bob := WithActor(context.Background(), onlyOwner("bob@example.com"))
	add := mkTask(g.GraphID, taskdef.KindMapper, 0)
	dep := mkTask("graph-bobs", taskdef.KindReducer, 0, c.TaskID)
	dep.Payload.Inputs, dep.Payload.Bucket = nil, ""
	for name, call := range map[string]func() error{
		"cancel":      func() error { _, err := q.CancelGraph(bob, g.GraphID); return err },
		"rerun task":  func() error { _, err := q.Rerun(bob, c.TaskID); return err },
		"rerun graph": func() error { _, err := q.RerunFailed(bob, g.GraphID); return err },
		"add task":    func() error { _, err := q.CreateTask(bob, "graph-owned-late", add); return err },
		"depend on":   func() error { _, err := q.CreateTask(bob, "graph-bobs-reduce", dep); return err },
		"graph depending on": func() error {
			_, err := q.CreateGraph(bob, taskdef.Graph{GraphID: "graph-bobs2", Name: "x", Owner: "bob@example.com",
				Tasks: []taskdef.GraphTask{{TaskID: "graph-bobs2-r", Task: func() taskdef.Task { d := dep; d.GraphID = "graph-bobs2"; return d }()}}})
			return err
		},
	} {
		if err := call(); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s: %v, want ErrForbidden", name, err)
		}
	}
	after, err := q.Graph(context.Background(), g.GraphID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, after) {
		t.Errorf("a refused change changed the graph:\nbefore %+v\nafter  %+v", before, after)
	}
	for _, id := range []string{"graph-owned-late", "graph-bobs-reduce", "graph-bobs2-r"} {
		if _, err := q.Task(context.Background(), id); !errors.Is(err, ErrNotFound) {
			t.Errorf("refused task %s exists: %v", id, err)
		}
	}
}

// TestAuditTrail: every change records its actor: the creator of the
// graph and its tasks (and of their first runs, which the creation
// scheduled), the claimer and reporter of a run, the rerun's
// caller on the new run, the canceler on the graph and the runs it ended,
// and af serve for what time ended.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	q, clk := newQueue(t)
	alice := WithActor(context.Background(), Actor{Name: "alice@example.com"})
	pool := WithActor(context.Background(), Actor{Name: "pool-a"})
	g := mapReduce("graph-audit", 2, 1)
	if st, err := q.CreateGraph(alice, g); err != nil || st.CreatedBy != "alice@example.com" || st.Tasks[0].CreatedBy != "alice@example.com" {
		t.Fatalf("create: %+v %v", st, err)
	}
	cs, err := q.Claim(pool, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 2})
	if err != nil || len(cs) != 2 {
		t.Fatal(err)
	}
	if _, err := q.ReportFailed(pool, cs[0].TaskID, cs[0].RunID, cs[0].RunToken, taskdef.ReportRequest{}); err != nil {
		t.Fatal(err)
	}
	// The other run's lease passes: af serve retries it.
	clk.Advance(2 * testLease)
	if _, err := q.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Rerun(alice, cs[0].TaskID); err != nil {
		t.Fatal(err)
	}
	bob := WithActor(context.Background(), Actor{Name: "bob@example.com"})
	st, err := q.CancelGraph(bob, g.GraphID)
	if err != nil || st.CanceledBy != "bob@example.com" {
		t.Fatalf("cancel: %+v %v", st, err)
	}
	want := map[string][]taskdef.Run{
		cs[0].TaskID: {
			{CreatedBy: "alice@example.com", ClaimedBy: "pool-a", ResolvedBy: "pool-a"},
			{CreatedBy: "alice@example.com", ResolvedBy: "bob@example.com"},
		},
		cs[1].TaskID: {
			{CreatedBy: "alice@example.com", ClaimedBy: "pool-a", ResolvedBy: BySystem},
			{CreatedBy: BySystem, ResolvedBy: "bob@example.com"},
		},
	}
	for id, runs := range want {
		ts := mustTask(t, q, id)
		if len(ts.Runs) != len(runs) {
			t.Fatalf("task %s: %d runs, want %d", id, len(ts.Runs), len(runs))
		}
		for i, w := range runs {
			r := ts.Runs[i]
			if r.CreatedBy != w.CreatedBy || r.ClaimedBy != w.ClaimedBy || r.ResolvedBy != w.ResolvedBy {
				t.Errorf("task %s run %d: created by %q claimed by %q resolved by %q, want %q %q %q",
					id, i, r.CreatedBy, r.ClaimedBy, r.ResolvedBy, w.CreatedBy, w.ClaimedBy, w.ResolvedBy)
			}
		}
	}
}
