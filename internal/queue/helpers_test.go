package queue

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"testing"
	"time"

	"github.com/af-project/af/internal/clocktest"
	"github.com/af-project/af/internal/taskdef"
	bolt "go.etcd.io/bbolt"
)

// t0 is the fake clock's start; task definitions are made relative to it.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// testLease is the claim lease of test queues; their clock is a
// clocktest.Fake that tests move before calling Tick.
const testLease = time.Minute

// newQueue opens a queue on a real bbolt file in a temp dir with a fake
// clock at t0.
func newQueue(t testing.TB) (*Queue, *clocktest.Fake) {
	t.Helper()
	clk := clocktest.New(t0)
	q, err := Open(filepath.Join(t.TempDir(), "queue.db"), Options{Clock: clk, LeaseDuration: testLease})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		q.closeMu.RLock()
		closed := q.closed
		q.closeMu.RUnlock()
		if closed {
			return
		}
		checkConsistent(t, q)
		if err := q.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return q, clk
}

// mkTask is a valid definition in graph g.
func mkTask(g string, kind taskdef.Kind, retries int, deps ...string) taskdef.Task {
	return taskdef.Task{
		GraphID: g, Dependencies: deps, Retries: retries,
		Created: t0, Deadline: t0.Add(time.Hour),
		Metadata: taskdef.Metadata{Name: "job " + string(kind), Owner: "owner@example.com"},
		Payload: taskdef.Payload{
			Kind: kind, Image: "af/example:1", MaxRunTime: 600, Bucket: "in",
			Inputs: []taskdef.InputFile{{Key: "a/b.log.gz", Size: 100}, {Key: "a/c.log.gz", Size: 50}},
			Env:    map[string]string{taskdef.EnvOwner: "owner@example.com"},
		},
	}
}

// mapReduce is a graph of n mappers and one reducer depending on them all.
func mapReduce(g string, n, retries int) taskdef.Graph {
	gr := taskdef.Graph{GraphID: g, Name: "job", Owner: "owner@example.com"}
	var ids []string
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s-m%05d", g, i)
		ids = append(ids, id)
		gr.Tasks = append(gr.Tasks, taskdef.GraphTask{TaskID: id, Task: mkTask(g, taskdef.KindMapper, retries)})
	}
	red := mkTask(g, taskdef.KindReducer, retries, ids...)
	red.Payload.Inputs, red.Payload.Bucket = nil, ""
	gr.Tasks = append(gr.Tasks, taskdef.GraphTask{TaskID: g + "-reduce", Task: red})
	return gr
}

var worker = taskdef.ClaimRequest{WorkerGroup: "grp", WorkerID: "w1", Tasks: 1}

func mustCreate(t testing.TB, q *Queue, g taskdef.Graph) taskdef.GraphStatus {
	t.Helper()
	s, err := q.CreateGraph(context.Background(), g)
	if err != nil {
		t.Fatalf("CreateGraph %s: %v", g.GraphID, err)
	}
	return s
}

// claimOne claims exactly one task and fails otherwise.
func claimOne(t testing.TB, q *Queue) taskdef.Claim {
	t.Helper()
	cs, err := q.Claim(context.Background(), worker)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if len(cs) != 1 {
		t.Fatalf("Claim got %d tasks, want 1", len(cs))
	}
	return cs[0]
}

func mustTask(t testing.TB, q *Queue, id string) taskdef.TaskStatus {
	t.Helper()
	s, err := q.Task(context.Background(), id)
	if err != nil {
		t.Fatalf("Task %s: %v", id, err)
	}
	return s
}

// runSummary renders runs as "state/reasonCreated/reasonResolved" for
// compact assertions.
func runSummary(s taskdef.TaskStatus) []string {
	var out []string
	for _, r := range s.Runs {
		out = append(out, fmt.Sprintf("%d:%s/%s/%s", r.RunID, r.State, r.ReasonCreated, r.ReasonResolved))
	}
	return out
}

func eqStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkConsistent verifies, on the file, that every index agrees with the
// task records: pending and running entries exactly for tasks in those
// states (with the current run's times), deadline entries exactly for
// unresolved tasks, the global counters and each graph's counters.
func checkConsistent(t testing.TB, q *Queue) {
	t.Helper()
	err := q.db.View(func(tx *bolt.Tx) error {
		counts := map[taskdef.TaskState]int{}
		graphCounts := map[string]map[taskdef.TaskState]int{}
		wantPending, wantRunning, wantDeadline := map[string]bool{}, map[string]bool{}, map[string]bool{}
		staleDeadline := map[string]bool{}
		ownerCounts := map[string]int{}
		err := tx.Bucket(bTasks).ForEach(func(k, v []byte) error {
			var r taskRec
			if _, err := getTask(tx.Bucket(bTasks), string(k), &r); err != nil {
				return err
			}
			id := string(k)
			counts[r.State]++
			if graphCounts[r.GraphID] == nil {
				graphCounts[r.GraphID] = map[taskdef.TaskState]int{}
			}
			graphCounts[r.GraphID][r.State]++
			cur := r.current()
			var g graphRec
			if !r.State.Resolved() {
				if ok, err := getGraph(tx.Bucket(bGraphs), r.GraphID, &g); err != nil || !ok {
					return fmt.Errorf("task %s: graph %s: %v (found %v)", id, r.GraphID, err, ok)
				}
				ownerCounts[string(ownerKey(r.State, g.Owner))]++
			}
			switch r.State {
			case sPending:
				wantPending[string(pendKey(r.Priority, g.Owner, *cur.Scheduled, id))] = true
			case sRunning:
				wantRunning[string(timeKey(*cur.TakenUntil, id))] = true
			}
			if !r.State.Resolved() {
				wantDeadline[string(timeKey(r.Deadline, id))] = true
			} else {
				// Resolved tasks' entries stay until Tick passes them.
				staleDeadline[string(timeKey(r.Deadline, id))] = true
			}
			if r.State != sUnscheduled && (cur == nil || cur.State != r.State) {
				return fmt.Errorf("task %s is %s but its current run is %+v", id, r.State, cur)
			}
			for i, run := range r.Runs {
				if run.RunID != i {
					return fmt.Errorf("task %s run %d has id %d", id, i, run.RunID)
				}
				if i < len(r.Runs)-1 && !run.State.Resolved() {
					return fmt.Errorf("task %s has unresolved earlier run %d", id, i)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		gotOwners := map[string]int{}
		_ = tx.Bucket(bOwners).ForEach(func(k, v []byte) error { gotOwners[string(k)] = getCount(tx.Bucket(bOwners), k); return nil })
		if !maps.Equal(gotOwners, ownerCounts) {
			return fmt.Errorf("owner counts %v, want %v", gotOwners, ownerCounts)
		}
		for name, want := range map[string]map[string]bool{string(bPendq): wantPending, "running": wantRunning, "deadlines": wantDeadline} {
			got := map[string]bool{}
			_ = tx.Bucket([]byte(name)).ForEach(func(k, _ []byte) error {
				if name != "deadlines" || !staleDeadline[string(k)] {
					got[string(k)] = true
				}
				return nil
			})
			if len(got) != len(want) {
				return fmt.Errorf("index %s has %d entries, want %d", name, len(got), len(want))
			}
			for k := range want {
				if !got[k] {
					return fmt.Errorf("index %s lacks %x", name, k)
				}
			}
		}
		for _, s := range allStates {
			var n int64
			if v := tx.Bucket(bCounts).Get([]byte(s)); len(v) == 8 {
				n = int64(uint64(v[0])<<56 | uint64(v[1])<<48 | uint64(v[2])<<40 | uint64(v[3])<<32 | uint64(v[4])<<24 | uint64(v[5])<<16 | uint64(v[6])<<8 | uint64(v[7]))
			}
			if int(n) != counts[s] {
				return fmt.Errorf("counter %s = %d, want %d", s, n, counts[s])
			}
		}
		if err := checkOutbox(tx); err != nil {
			return err
		}
		return tx.Bucket(bGraphs).ForEach(func(k, _ []byte) error {
			var g graphRec
			if _, err := getGraph(tx.Bucket(bGraphs), string(k), &g); err != nil {
				return err
			}
			if g.Resolved != nil && tx.Bucket(bOutbox).Get(outboxKey(string(k), *g.Resolved)) == nil {
				return fmt.Errorf("graph %s resolved at %v has no outbox entry", k, g.Resolved)
			}
			want := graphCounts[string(k)]
			unresolved, total := 0, 0
			for s, n := range want {
				total += n
				if !s.Resolved() {
					unresolved += n
				}
				if g.Counts[s] != n {
					return fmt.Errorf("graph %s counts %s = %d, want %d", k, s, g.Counts[s], n)
				}
			}
			if g.Tasks != total || g.Unresolved != unresolved {
				return fmt.Errorf("graph %s tasks/unresolved = %d/%d, want %d/%d", k, g.Tasks, g.Unresolved, total, unresolved)
			}
			if (unresolved == 0) != (g.Resolved != nil) {
				return fmt.Errorf("graph %s resolved=%v with %d unresolved tasks", k, g.Resolved, unresolved)
			}
			n := 0
			prefix := pairKey(string(k), "")
			c := tx.Bucket(bGraphTask).Cursor()
			for gk, _ := c.Seek(prefix); gk != nil && bytes.HasPrefix(gk, prefix); gk, _ = c.Next() {
				n++
			}
			if n != total {
				return fmt.Errorf("graph %s lists %d tasks, has %d", k, n, total)
			}
			return nil
		})
	})
	if err != nil {
		t.Errorf("database inconsistent: %v", err)
	}
}

// checkOutbox verifies that the due index lists exactly the pending
// entries, at their next attempt, and that the counters match the entries.
func checkOutbox(tx *bolt.Tx) error {
	want := map[string]bool{}
	counts := map[string]int{}
	err := tx.Bucket(bOutbox).ForEach(func(k, v []byte) error {
		var e OutboxEntry
		if err := decodeOutbox(v, &e); err != nil {
			return fmt.Errorf("outbox entry %s: %w", outboxID(k), err)
		}
		counts[e.Status]++
		if e.Status == OutboxPending {
			want[string(outboxDueKey(e.NextAttempt, k))] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	got := 0
	err = tx.Bucket(bOutboxDue).ForEach(func(k, _ []byte) error {
		got++
		if !want[string(k)] {
			return fmt.Errorf("outbox due index has %x, no pending entry at that time", k)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if got != len(want) {
		return fmt.Errorf("outbox due index has %d entries, %d pending", got, len(want))
	}
	for st, key := range map[string][]byte{OutboxPending: cntOutboxPending, OutboxSent: cntOutboxSent, OutboxSkipped: cntOutboxSkipped, OutboxFailed: cntOutboxFailed} {
		if n := readCounter(tx.Bucket(bCounts), key); n != counts[st] {
			return fmt.Errorf("outbox counter %s = %d, want %d", st, n, counts[st])
		}
	}
	return nil
}
