package queue

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/clocktest"
	"github.com/af-project/af/internal/taskdef"
	bolt "go.etcd.io/bbolt"
)

// expiring is mapReduce with every task's deadline and expiry set.
func expiring(g string, n int, deadline, expires time.Duration) taskdef.Graph {
	gr := mapReduce(g, n, 0)
	for i := range gr.Tasks {
		gr.Tasks[i].Task.Deadline = t0.Add(deadline)
		gr.Tasks[i].Task.Expires = t0.Add(expires)
	}
	return gr
}

// batchRecorder is a BeforeDelete that records each batch and checks the
// batch's records still exist when it is called (artifacts go first).
type batchRecorder struct {
	t       *testing.T
	q       *Queue
	batches [][]string
	failAt  int // the call (1-based) that fails; 0: none
}

func (b *batchRecorder) before(ctx context.Context, ids []string) error {
	b.batches = append(b.batches, append([]string(nil), ids...))
	for _, id := range ids {
		if _, err := b.q.Task(ctx, id); err != nil {
			b.t.Errorf("task %s is gone before its artifacts were deleted: %v", id, err)
		}
	}
	if len(b.batches) == b.failAt {
		return errors.New("S3 is down")
	}
	return nil
}

func (b *batchRecorder) ids() map[string]int {
	out := map[string]int{}
	for _, batch := range b.batches {
		for _, id := range batch {
			out[id]++
		}
	}
	return out
}

func wantExpired(t *testing.T, q *Queue, kind, id string) *ExpiredError {
	t.Helper()
	ctx := context.Background()
	var err error
	if kind == "graph" {
		_, err = q.Graph(ctx, id)
	} else {
		_, err = q.Task(ctx, id)
	}
	err = q.ExpiredOr(ctx, err, kind, id)
	var ee *ExpiredError
	if !errors.As(err, &ee) || !errors.Is(err, ErrExpired) {
		t.Fatalf("%s %s: %v, want expired", kind, id, err)
	}
	return ee
}

func TestSweepDeletesExpiredGraphsInBatches(t *testing.T) {
	t.Parallel()
	q, clk := newQueue(t)
	ctx := context.Background()
	// A expires 2h after t0; B in 30 days; C's deadline and expiry are
	// 3h and 3h30m after t0.
	a := mustCreate(t, q, expiring("graph-aa", 12, time.Hour, 2*time.Hour))
	mustCreate(t, q, expiring("graph-bb", 2, time.Hour, 30*24*time.Hour))
	mustCreate(t, q, expiring("graph-cc", 1, 3*time.Hour, 3*time.Hour+30*time.Minute))
	// One run of A completes, so A has runs to delete.
	c := claimOne(t, q)
	if _, err := q.ReportCompleted(ctx, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{}); err != nil {
		t.Fatal(err)
	}

	clk.Advance(2*time.Hour + time.Minute)
	if _, err := q.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	// The deadline ended A: its owner's email is in the outbox, and the
	// sweep deletes it with the graph.
	if es, _ := q.OutboxEntries(ctx, "graph-aa"); len(es) != 1 {
		t.Fatalf("graph-aa outbox before the sweep: %+v", es)
	}
	rec := &batchRecorder{t: t, q: q}
	rep, err := q.Sweep(ctx, SweepOptions{Batch: 5, BeforeDelete: rec.before, TombstoneTTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Graphs != 1 || rep.Tasks != 13 || rep.Batches != 3 || rep.MaxBatch != 5 || len(rep.Done) != 1 || rep.Done[0] != "graph-aa" {
		t.Fatalf("sweep %+v, want graph ga's 13 tasks in batches of at most 5", rep)
	}
	for _, b := range rec.batches {
		if len(b) > 5 {
			t.Errorf("batch of %d tasks, more than 5", len(b))
		}
	}
	got := rec.ids()
	if len(got) != 13 {
		t.Fatalf("BeforeDelete saw %d tasks, want 13", len(got))
	}
	for _, ts := range a.Tasks {
		if got[ts.TaskID] != 1 {
			t.Errorf("task %s passed to BeforeDelete %d times", ts.TaskID, got[ts.TaskID])
		}
		ee := wantExpired(t, q, "task", ts.TaskID)
		if ee.Tombstone.GraphID != "graph-aa" || !ee.Tombstone.Expires.Equal(t0.Add(2*time.Hour)) {
			t.Errorf("task tombstone %+v", ee.Tombstone)
		}
	}
	if es, _ := q.OutboxEntries(ctx, "graph-aa"); len(es) != 0 {
		t.Errorf("graph-aa outbox after the sweep: %+v", es)
	}
	ee := wantExpired(t, q, "graph", "graph-aa")
	if msg := ee.Error(); !strings.Contains(msg, "graph graph-aa expired at "+t0.Add(2*time.Hour).Format(time.RFC3339)) {
		t.Errorf("message %q", msg)
	}
	// B (not expired) and C (not expired, still running) stay whole.
	for _, g := range []string{"graph-bb", "graph-cc"} {
		if gs, err := q.Graph(ctx, g); err != nil || len(gs.Tasks) == 0 {
			t.Fatalf("graph %s after the sweep: %v", g, err)
		}
	}
	list, err := q.Graphs(ctx, 10)
	if err != nil || len(list) != 2 {
		t.Fatalf("graph list %+v %v, want gb and gc", list, err)
	}
	counts, _ := q.Counts(ctx)
	total := 0
	for _, n := range counts {
		total += n
	}
	if total != 5 {
		t.Errorf("counts %v, want the 5 tasks of gb and gc", counts)
	}

	// C is past its expiry but its deadline exceeded only on the clock:
	// no tick resolved it, so it is running and stays.
	clk.Advance(2 * time.Hour)
	if rep, err := q.Sweep(ctx, SweepOptions{Margin: 30 * time.Minute, TombstoneTTL: 24 * time.Hour}); err != nil || rep.Graphs != 0 {
		t.Fatalf("sweep of a running graph: %+v %v", rep, err)
	}
	if _, err := q.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	// Resolved now: kept for the margin (late artifact uploads), then
	// deleted.
	if rep, err := q.Sweep(ctx, SweepOptions{Margin: 30 * time.Minute, TombstoneTTL: 24 * time.Hour}); err != nil || rep.Graphs != 0 {
		t.Fatalf("sweep within the margin: %+v %v", rep, err)
	}
	clk.Advance(31 * time.Minute)
	if rep, err := q.Sweep(ctx, SweepOptions{Margin: 30 * time.Minute, TombstoneTTL: 24 * time.Hour}); err != nil || rep.Graphs != 1 || rep.Tasks != 2 {
		t.Fatalf("sweep after the margin: %+v %v", rep, err)
	}
	wantExpired(t, q, "graph", "graph-cc")

	// Tombstones expire too: then the ids are simply unknown.
	clk.Advance(48 * time.Hour)
	rep, err = q.Sweep(ctx, SweepOptions{TombstoneTTL: 24 * time.Hour, Batch: 4})
	if err != nil || rep.Tombstones != 1+13+1+2 {
		t.Fatalf("tombstone sweep %+v %v, want 17 dropped", rep, err)
	}
	_, err = q.Graph(ctx, "graph-aa")
	if err = q.ExpiredOr(ctx, err, "graph", "graph-aa"); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrExpired) {
		t.Fatalf("graph graph-aa after its tombstone expired: %v, want not found", err)
	}
	if _, err := q.Graph(ctx, "graph-bb"); err != nil {
		t.Fatal(err)
	}
}

func TestSweepResumesAfterInterruption(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "queue.db")
	clk := clocktest.New(t0)
	q, err := Open(path, Options{Clock: clk, LeaseDuration: testLease})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	g := mustCreate(t, q, expiring("graph-rr", 9, time.Hour, 2*time.Hour))
	clk.Advance(3 * time.Hour)
	if _, err := q.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	// The second batch's artifact deletion fails (S3 down, or the
	// process dies there): the sweep stops with that batch's records.
	rec := &batchRecorder{t: t, q: q, failAt: 2}
	rep, err := q.Sweep(ctx, SweepOptions{Batch: 3, BeforeDelete: rec.before})
	if err == nil || !strings.Contains(err.Error(), "S3 is down") || rep.Tasks != 3 || rep.Graphs != 1 {
		t.Fatalf("interrupted sweep: %+v %v", rep, err)
	}
	wantExpired(t, q, "graph", "graph-rr")
	failed := rec.batches[1]
	for _, id := range failed {
		if _, err := q.Task(ctx, id); err != nil {
			t.Fatalf("task %s of the failed batch: %v, want kept", id, err)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	// A restarted server's next sweep finishes the graph, starting with
	// the batch that failed.
	q, err = Open(path, Options{Clock: clk, LeaseDuration: testLease})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	rec2 := &batchRecorder{t: t, q: q}
	rep, err = q.Sweep(ctx, SweepOptions{Batch: 3, BeforeDelete: rec2.before})
	if err != nil || rep.Tasks != 7 || rep.Graphs != 0 || len(rep.Done) != 1 {
		t.Fatalf("resumed sweep: %+v %v, want the other 7 tasks", rep, err)
	}
	if fmt.Sprint(rec2.batches[0]) != fmt.Sprint(failed) {
		t.Errorf("resumed with %v, want the failed batch %v first", rec2.batches[0], failed)
	}
	for _, ts := range g.Tasks {
		wantExpired(t, q, "task", ts.TaskID)
	}
	checkConsistent(t, q)
	// Nothing is left to sweep.
	if rep, err := q.Sweep(ctx, SweepOptions{Batch: 3, BeforeDelete: rec2.before}); err != nil || rep.Tasks+rep.Graphs != 0 {
		t.Fatalf("sweep after: %+v %v", rep, err)
	}
}

// TestExpiryIndexOfAnOlderFile opens a file written before the expiry
// buckets existed: its graphs are indexed on open and expire.
func TestExpiryIndexOfAnOlderFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "queue.db")
	clk := clocktest.New(t0)
	q, err := Open(path, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, q, expiring("graph-old", 2, time.Hour, 2*time.Hour))
	err = q.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bExpiry, bGraphExp, bExpired, bExpiredAt, bSweeping} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	q, err = Open(path, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	clk.Advance(3 * time.Hour)
	ctx := context.Background()
	if _, err := q.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if rep, err := q.Sweep(ctx, SweepOptions{}); err != nil || rep.Graphs != 1 || rep.Tasks != 3 {
		t.Fatalf("sweep %+v %v", rep, err)
	}
	wantExpired(t, q, "graph", "graph-old")
}
