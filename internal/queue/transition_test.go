package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/af-project/af/internal/taskdef"
	bolt "go.etcd.io/bbolt"
)

// allowedSpec is the lifecycle as the issue states it, written out
// independently of the table in transition.go: from state, retries left
// ("any", "some" > 0, "none" = 0), to state, reason.
var allowedSpec = []struct {
	from    taskdef.TaskState
	retries string
	to      taskdef.TaskState
	reason  string
}{
	{sUnscheduled, "any", sPending, taskdef.ReasonScheduled},
	{sUnscheduled, "any", sException, taskdef.ReasonDeadlineExceeded},
	{sUnscheduled, "any", sException, taskdef.ReasonCanceled},
	{sUnscheduled, "any", sException, taskdef.ReasonDependencyFailed},
	{sPending, "any", sRunning, reasonClaimed},
	{sPending, "any", sException, taskdef.ReasonDeadlineExceeded},
	{sPending, "any", sException, taskdef.ReasonCanceled},
	{sRunning, "any", sCompleted, taskdef.ReasonCompleted},
	{sRunning, "any", sFailed, taskdef.ReasonFailed},
	{sRunning, "some", sPending, taskdef.ReasonClaimExpired},
	{sRunning, "some", sPending, taskdef.ReasonWorkerShutdown},
	{sRunning, "some", sPending, taskdef.ReasonIntermittentTask},
	{sRunning, "none", sException, taskdef.ReasonClaimExpired},
	{sRunning, "none", sException, taskdef.ReasonWorkerShutdown},
	{sRunning, "none", sException, taskdef.ReasonIntermittentTask},
	{sRunning, "some", sPending, taskdef.ReasonResourceUnavail},
	{sRunning, "none", sException, taskdef.ReasonResourceUnavail},
	{sRunning, "any", sException, taskdef.ReasonMalformedPayload},
	{sRunning, "any", sException, taskdef.ReasonInternalError},
	{sRunning, "any", sException, taskdef.ReasonSuperseded},
	{sRunning, "any", sException, taskdef.ReasonDeadlineExceeded},
	{sRunning, "any", sException, taskdef.ReasonCanceled},
	{sCompleted, "any", sPending, taskdef.ReasonRerun},
	{sFailed, "any", sPending, taskdef.ReasonRerun},
	{sException, "any", sPending, taskdef.ReasonRerun},
	// A rerun that must wait for a dependency, or a dependent re-opened
	// by a dependency's rerun; a pending or running dependent superseded.
	{sCompleted, "any", sUnscheduled, taskdef.ReasonRerun},
	{sFailed, "any", sUnscheduled, taskdef.ReasonRerun},
	{sException, "any", sUnscheduled, taskdef.ReasonRerun},
	{sPending, "any", sUnscheduled, taskdef.ReasonSuperseded},
	{sRunning, "any", sUnscheduled, taskdef.ReasonSuperseded},
}

// allReasons is every reason the queue knows, created and resolved.
var allReasons = []string{
	taskdef.ReasonScheduled, taskdef.ReasonRetry, taskdef.ReasonTaskRetry, taskdef.ReasonRerun,
	taskdef.ReasonException, taskdef.ReasonDependencies, reasonClaimed,
	taskdef.ReasonCompleted, taskdef.ReasonFailed, taskdef.ReasonDeadlineExceeded, taskdef.ReasonCanceled,
	taskdef.ReasonSuperseded, taskdef.ReasonClaimExpired, taskdef.ReasonWorkerShutdown,
	taskdef.ReasonMalformedPayload, taskdef.ReasonResourceUnavail, taskdef.ReasonInternalError,
	taskdef.ReasonIntermittentTask, taskdef.ReasonDependencyFailed,
}

func specAllows(from taskdef.TaskState, retriesLeft int, to taskdef.TaskState, reason string) bool {
	for _, a := range allowedSpec {
		if a.from != from || a.to != to || a.reason != reason {
			continue
		}
		switch a.retries {
		case "any":
			return true
		case "some":
			return retriesLeft > 0
		case "none":
			return retriesLeft == 0
		}
	}
	return false
}

// fixture puts one task of a fresh queue into a state through the public
// API and returns its id.
type fixture struct {
	name    string
	state   taskdef.TaskState
	retries int
	setup   func(t *testing.T, q *Queue) string
}

var errRollback = errors.New("rollback")

func TestTransitionTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	report := func(kind string) func(t *testing.T, q *Queue) string {
		return func(t *testing.T, q *Queue) string {
			mustCreate(t, q, taskdef.Graph{GraphID: "graph-aaaa", Tasks: []taskdef.GraphTask{{TaskID: "task-aaaa", Task: mkTask("graph-aaaa", taskdef.KindMapper, 2)}}})
			c := claimOne(t, q)
			var err error
			switch kind {
			case "completed":
				_, err = q.ReportCompleted(ctx, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{})
			case "failed":
				_, err = q.ReportFailed(ctx, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{})
			case "exception":
				_, err = q.ReportException(ctx, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{Reason: taskdef.ReasonMalformedPayload})
			}
			if err != nil {
				t.Fatal(err)
			}
			return c.TaskID
		}
	}
	running := func(retries int) func(t *testing.T, q *Queue) string {
		return func(t *testing.T, q *Queue) string {
			mustCreate(t, q, taskdef.Graph{GraphID: "graph-aaaa", Tasks: []taskdef.GraphTask{{TaskID: "task-aaaa", Task: mkTask("graph-aaaa", taskdef.KindMapper, retries)}}})
			return claimOne(t, q).TaskID
		}
	}
	fixtures := []fixture{
		{"unscheduled", sUnscheduled, 2, func(t *testing.T, q *Queue) string {
			mustCreate(t, q, taskdef.Graph{GraphID: "graph-aaaa", Tasks: []taskdef.GraphTask{
				{TaskID: "task-aaaa", Task: mkTask("graph-aaaa", taskdef.KindMapper, 2)},
				{TaskID: "task-bbbb", Task: mkTask("graph-aaaa", taskdef.KindReducer, 2, "task-aaaa")},
			}})
			return "task-bbbb"
		}},
		{"pending", sPending, 2, func(t *testing.T, q *Queue) string {
			mustCreate(t, q, taskdef.Graph{GraphID: "graph-aaaa", Tasks: []taskdef.GraphTask{{TaskID: "task-aaaa", Task: mkTask("graph-aaaa", taskdef.KindMapper, 2)}}})
			return "task-aaaa"
		}},
		{"running-retries-left", sRunning, 2, running(2)},
		{"running-no-retries", sRunning, 0, running(0)},
		{"completed", sCompleted, 2, report("completed")},
		{"failed", sFailed, 2, report("failed")},
		{"exception", sException, 2, report("exception")},
	}
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			q, _ := newQueue(t)
			id := f.setup(t, q)
			if s := mustTask(t, q, id); s.State != f.state || s.RetriesLeft != f.retries {
				t.Fatalf("fixture %s: task is %s with %d retries left, want %s with %d", f.name, s.State, s.RetriesLeft, f.state, f.retries)
			}
			for _, to := range allStates {
				for _, reason := range allReasons {
					want := specAllows(f.state, f.retries, to, reason)
					name := fmt.Sprintf("%s->%s/%s", f.state, to, reason)
					// Each case runs in its own transaction on the real
					// file and is rolled back, so all start from the
					// fixture.
					err := q.db.Update(func(tx *bolt.Tx) error {
						w := newWtx(tx, q, q.clock.Now())
						var rec taskRec
						if _, err := getTask(w.tasks, id, &rec); err != nil {
							return err
						}
						runsBefore := len(rec.Runs)
						err := w.transition(id, &rec, move{to: to, reason: reason, workerGroup: "g", workerID: "w"})
						switch {
						case want && err != nil:
							t.Errorf("%s: refused, want allowed: %v", name, err)
						case !want && err == nil:
							t.Errorf("%s: allowed, want refused", name)
						case !want && !errors.Is(err, errTransition):
							t.Errorf("%s: refused with %v, want errTransition", name, err)
						case want:
							var after taskRec
							if _, err := getTask(w.tasks, id, &after); err != nil {
								return err
							}
							if after.State != to {
								t.Errorf("%s: stored state %s", name, after.State)
							}
							cur := after.current()
							switch {
							case to == sUnscheduled:
								// Waiting has no run: the last one, if
								// any, is resolved.
								if cur != nil && !cur.State.Resolved() {
									t.Errorf("%s: current run state %s", name, cur.State)
								}
								if cur != nil && (f.state == sPending || f.state == sRunning) && cur.ReasonResolved != taskdef.ReasonSuperseded {
									t.Errorf("%s: superseded run resolved %q", name, cur.ReasonResolved)
								}
							case cur.State != to:
								t.Errorf("%s: current run state %s", name, cur.State)
							}
							if to == sPending && f.state != sUnscheduled && len(after.Runs) != runsBefore+1 {
								t.Errorf("%s: %d runs, want a new one after %d", name, len(after.Runs), runsBefore)
							}
							if to == sPending && f.state == sRunning && after.Runs[runsBefore-1].ReasonResolved != reason {
								t.Errorf("%s: retried run resolved %q", name, after.Runs[runsBefore-1].ReasonResolved)
							}
							if to.Resolved() && cur.ReasonResolved != reason {
								t.Errorf("%s: run resolved %q", name, cur.ReasonResolved)
							}
						}
						if err == nil {
							// The refused cases wrote nothing; the
							// allowed ones leave indexes consistent.
							for _, ix := range []struct {
								name string
								b    *bolt.Bucket
								want bool
							}{{"pending", w.pendq, to == sPending}, {"running", w.running, to == sRunning}, {"deadlines", w.deadlines, !to.Resolved()}} {
								if got := indexHas(ix.b, id); got != ix.want && (ix.name != "deadlines" || ix.want) {
									t.Errorf("%s: index %s has task=%v, want %v", name, ix.name, got, ix.want)
								}
							}
						}
						return errRollback
					})
					if !errors.Is(err, errRollback) {
						t.Fatalf("%s: %v", name, err)
					}
				}
			}
		})
	}
}

// The table and the spec must agree in size too: every listed edge is
// reachable in the spec and vice versa.
func TestTransitionTableMatchesSpec(t *testing.T) {
	t.Parallel()
	n := 0
	for e, reasons := range transitions {
		for _, r := range reasons {
			n++
			if !specAllows(e.from, 1, e.to, r) && !specAllows(e.from, 0, e.to, r) {
				t.Errorf("table allows %s->%s/%s, the spec does not", e.from, e.to, r)
			}
		}
	}
	// running->exception lists the three retryable reasons once, the spec
	// twice (some/none): 29 spec rows, 29 table entries.
	if n != len(allowedSpec) {
		t.Errorf("table has %d (edge, reason) entries, spec %d", n, len(allowedSpec))
	}
}

// indexHas reports whether a time-ordered index holds an entry for id.
func indexHas(b *bolt.Bucket, id string) bool {
	found := false
	_ = b.ForEach(func(k, _ []byte) error {
		if bytes.HasSuffix(k, []byte(id)) {
			found = true
		}
		return nil
	})
	return found
}
