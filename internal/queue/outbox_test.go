package queue

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/clocktest"
	"github.com/af-project/af/internal/taskdef"
	bolt "go.etcd.io/bbolt"
)

// completeAll claims and completes every task of the queue in turn and
// returns how many reports said they resolved a graph.
func completeAll(t *testing.T, q *Queue) int {
	t.Helper()
	resolved := 0
	for {
		cs, err := q.Claim(bg, worker)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			return resolved
		}
		r, err := q.ReportCompleted(bg, cs[0].TaskID, cs[0].RunID, cs[0].RunToken, taskdef.ReportRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if r.GraphResolved {
			resolved++
		}
	}
}

func mustEntries(t *testing.T, q *Queue, graphID string) []OutboxEntry {
	t.Helper()
	es, err := q.OutboxEntries(bg, graphID)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// TestOutboxEntryPerResolution: whatever resolves a graph (the last
// report, a cancel, a deadline tick) writes exactly one pending outbox
// entry in that transaction; a retried report of the resolving run adds
// none; a rerun that re-opens the graph and a second resolution add a
// second entry, for the new outcome.
func TestOutboxEntryPerResolution(t *testing.T) {
	t.Parallel()
	q, clk := newQueue(t)

	mustCreate(t, q, mapReduce("graph-ob01", 2, 0))
	sig := q.OutboxSignal()
	if n := completeAll(t, q); n != 1 {
		t.Fatalf("%d reports resolved the graph", n)
	}
	select {
	case <-sig:
	default:
		t.Error("writing the outbox entry did not signal the sender")
	}
	es := mustEntries(t, q, "graph-ob01")
	if len(es) != 1 {
		t.Fatalf("entries after the resolution: %+v", es)
	}
	e := es[0]
	gs, _ := q.Graph(bg, "graph-ob01")
	if e.State != taskdef.GraphCompleted || e.Status != OutboxPending || !e.Created.Equal(*gs.Resolved) || !e.NextAttempt.Equal(e.Created) || e.Attempts != 0 {
		t.Errorf("entry %+v, graph resolved %v", e, gs.Resolved)
	}

	// The resolution's entry is written once: writing it again (as a
	// function run twice by the group commit would) adds none.
	err := q.write(bg, func(w *wtx) error {
		g, err := w.graph("graph-ob01")
		if err != nil {
			return err
		}
		return w.writeOutbox("graph-ob01", g)
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(mustEntries(t, q, "graph-ob01")); n != 1 {
		t.Errorf("%d entries after writing the resolution's entry again", n)
	}

	// A rerun re-opens the graph; the next resolution is a new entry.
	clk.Advance(time.Minute)
	if _, err := q.Rerun(bg, "graph-ob01-reduce"); err != nil {
		t.Fatal(err)
	}
	if n := len(mustEntries(t, q, "graph-ob01")); n != 1 {
		t.Errorf("rerun wrote an entry: %d", n)
	}
	completeAll(t, q)
	es = mustEntries(t, q, "graph-ob01")
	if len(es) != 2 || es[0].ID == es[1].ID || !es[1].Created.Equal(t0.Add(time.Minute)) {
		t.Fatalf("entries after the second resolution: %+v", es)
	}

	// A cancel ends a graph: one entry, from the cancel's transaction.
	mustCreate(t, q, mapReduce("graph-ob02", 3, 0))
	if _, err := q.CancelGraph(bg, "graph-ob02"); err != nil {
		t.Fatal(err)
	}
	if _, err := q.CancelGraph(bg, "graph-ob02"); err != nil {
		t.Fatal(err)
	}
	if es := mustEntries(t, q, "graph-ob02"); len(es) != 1 || es[0].State == taskdef.GraphCompleted || es[0].State == taskdef.GraphRunning {
		t.Errorf("entries after cancel: %+v", es)
	}

	// A deadline tick ends a graph: one entry.
	mustCreate(t, q, mapReduce("graph-ob03", 1, 0))
	clk.Advance(2 * time.Hour)
	var rep TickReport
	rep, err = q.Tick(bg)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rep.ResolvedGraphs) != "[graph-ob03]" {
		t.Errorf("tick resolved %v", rep.ResolvedGraphs)
	}
	if es := mustEntries(t, q, "graph-ob03"); len(es) != 1 || es[0].State != taskdef.GraphFailed {
		t.Errorf("entries after the deadline: %+v", es)
	}
	st, err := q.OutboxStats(bg)
	if err != nil || st != (OutboxStats{Pending: 4}) {
		t.Errorf("stats %+v %v", st, err)
	}
}

// TestOutboxRetryAndDone: a failed attempt moves the entry's next attempt
// (it is not due before it), done ends it once (a second mark is a
// conflict, so two senders cannot both count it), and the counters follow.
func TestOutboxRetryAndDone(t *testing.T) {
	t.Parallel()
	q, clk := newQueue(t)
	for _, g := range []string{"graph-or01", "graph-or02", "graph-or03"} {
		mustCreate(t, q, mapReduce(g, 1, 0))
		completeAll(t, q)
		clk.Advance(time.Second)
	}
	now := clk.Now()
	due, next, err := q.OutboxDue(bg, now, 10)
	if err != nil || len(due) != 3 || !next.IsZero() {
		t.Fatalf("due %+v next %v err %v", due, next, err)
	}
	if due[0].GraphID != "graph-or01" || due[2].GraphID != "graph-or03" {
		t.Errorf("due order %s %s %s", due[0].GraphID, due[1].GraphID, due[2].GraphID)
	}
	if lim, next, _ := q.OutboxDue(bg, now, 2); len(lim) != 2 || next.IsZero() {
		t.Errorf("limit 2: %d entries, next %v", len(lim), next)
	}

	a, b, c := due[0], due[1], due[2]
	if err := q.OutboxRetry(bg, a.ID, now.Add(time.Minute), "451 try later"); err != nil {
		t.Fatal(err)
	}
	if err := q.OutboxDone(bg, b.ID, OutboxSent, ""); err != nil {
		t.Fatal(err)
	}
	if err := q.OutboxDone(bg, c.ID, OutboxSkipped, "graph has no owner"); err != nil {
		t.Fatal(err)
	}
	due, next, _ = q.OutboxDue(bg, now, 10)
	if len(due) != 0 || !next.Equal(now.Add(time.Minute)) {
		t.Fatalf("after retry: due %+v next %v", due, next)
	}
	due, _, _ = q.OutboxDue(bg, now.Add(time.Minute), 10)
	if len(due) != 1 || due[0].ID != a.ID || due[0].Attempts != 1 || due[0].LastError != "451 try later" {
		t.Fatalf("due after the backoff: %+v", due)
	}
	if err := q.OutboxDone(bg, b.ID, OutboxSent, ""); !errors.Is(err, ErrConflict) {
		t.Errorf("second done: %v, want ErrConflict", err)
	}
	if err := q.OutboxRetry(bg, b.ID, now, "x"); !errors.Is(err, ErrConflict) {
		t.Errorf("retry of a sent entry: %v, want ErrConflict", err)
	}
	if err := q.OutboxDone(bg, "graph-none@1", OutboxSent, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("done of a missing entry: %v", err)
	}
	if err := q.OutboxDone(bg, a.ID, "maybe", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad status: %v", err)
	}
	if err := q.OutboxDone(bg, a.ID, OutboxFailed, strings.Repeat("e", 5000)); err != nil {
		t.Fatal(err)
	}
	got, err := q.OutboxEntryByID(bg, a.ID)
	if err != nil || got.Status != OutboxFailed || len(got.LastError) > maxOutboxError+4 || !got.Done.Equal(now) {
		t.Errorf("failed entry %+v %v", got, err)
	}
	st, _ := q.OutboxStats(bg)
	if st != (OutboxStats{Sent: 1, Skipped: 1, Failed: 1}) {
		t.Errorf("stats %+v", st)
	}
}

// TestOutboxEntriesSurviveReopen: entries are in the file: a queue opened
// again on it (a restart) finds them pending.
func TestOutboxEntriesSurviveReopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "queue.db")
	clk := clocktest.New(t0)
	q, err := Open(path, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, q, mapReduce("graph-os01", 1, 0))
	completeAll(t, q)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = Open(path, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	due, _, err := q.OutboxDue(bg, clk.Now(), 10)
	if err != nil || len(due) != 1 || due[0].GraphID != "graph-os01" {
		t.Fatalf("after reopen: %+v %v", due, err)
	}
}

// TestOutboxOldFile: a schema-1 file written before the outbox existed
// opens, gets the outbox buckets, and records resolutions from then on.
func TestOutboxOldFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "queue.db")
	clk := clocktest.New(t0)
	q, err := Open(path, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, q, mapReduce("graph-of01", 1, 0))
	q.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range addedBuckets {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	q, err = Open(path, Options{Clock: clk})
	if err != nil {
		t.Fatalf("open a file without the outbox: %v", err)
	}
	defer q.Close()
	completeAll(t, q)
	if es := mustEntries(t, q, "graph-of01"); len(es) != 1 {
		t.Errorf("entries %+v", es)
	}
}

// TestDeleteGraphOutbox: the expiry's hook removes a graph's entries,
// pending or done, with their due keys and counts, and no other graph's.
func TestDeleteGraphOutbox(t *testing.T) {
	t.Parallel()
	q, clk := newQueue(t)
	mustCreate(t, q, mapReduce("graph-od01", 1, 0))
	completeAll(t, q)
	clk.Advance(time.Minute)
	if _, err := q.Rerun(bg, "graph-od01-reduce"); err != nil {
		t.Fatal(err)
	}
	completeAll(t, q)
	mustCreate(t, q, mapReduce("graph-od02", 1, 0))
	completeAll(t, q)
	es := mustEntries(t, q, "graph-od01")
	if len(es) != 2 {
		t.Fatalf("entries %+v", es)
	}
	if err := q.OutboxDone(bg, es[0].ID, OutboxSkipped, "re-opened"); err != nil {
		t.Fatal(err)
	}
	if err := q.write(bg, func(w *wtx) error { return w.deleteGraphOutbox("graph-od01") }); err != nil {
		t.Fatal(err)
	}
	if es := mustEntries(t, q, "graph-od01"); len(es) != 0 {
		t.Errorf("left %+v", es)
	}
	if st, _ := q.OutboxStats(bg); st != (OutboxStats{Pending: 1}) {
		t.Errorf("stats %+v", st)
	}
	// The graph itself stays here (resolved, without its entry), which
	// checkConsistent would flag: delete its record as the expiry does.
	err := q.write(bg, func(w *wtx) error {
		if err := w.graphs.Delete([]byte("graph-od01")); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOutboxCodec(t *testing.T) {
	t.Parallel()
	for _, e := range []OutboxEntry{
		{GraphID: "g", State: taskdef.GraphCompleted, Created: t0, NextAttempt: t0, Status: OutboxPending},
		{GraphID: "graph-x", State: taskdef.GraphFailed, Created: t0, Attempts: 7, NextAttempt: t0.Add(time.Hour), Done: t0.Add(2 * time.Hour), Status: OutboxFailed, LastError: "451 4.3.0 later\nüñï"},
		{GraphID: "", Status: OutboxSent},
	} {
		var got OutboxEntry
		if err := decodeOutbox(encodeOutbox(&e), &got); err != nil {
			t.Fatalf("decode %+v: %v", e, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, e)
		}
	}
	good := encodeOutbox(&OutboxEntry{GraphID: "g", Status: OutboxSent})
	for name, b := range map[string][]byte{
		"empty":          nil,
		"version":        append([]byte{9}, good[1:]...),
		"truncated":      good[:len(good)-2],
		"trailing bytes": append(append([]byte(nil), good...), 0),
		"bad status":     encodeOutbox(&OutboxEntry{GraphID: "g", Status: "lost"}),
		"huge length":    {outboxRecVersion, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		var got OutboxEntry
		if err := decodeOutbox(b, &got); err == nil {
			t.Errorf("%s: decoded %+v", name, got)
		}
	}
	for _, id := range []string{"graph-a@123", "g@-5"} {
		k, err := parseOutboxID(id)
		if err != nil || outboxID(k) != id {
			t.Errorf("id %s: %q %v", id, outboxID(k), err)
		}
	}
	for _, id := range []string{"", "nograph", "@12", "g@x"} {
		if _, err := parseOutboxID(id); !errors.Is(err, ErrInvalid) {
			t.Errorf("id %q parsed: %v", id, err)
		}
	}
}

// FuzzDecodeOutbox: no input makes the decoder panic, and whatever it
// accepts encodes back to the same bytes.
func FuzzDecodeOutbox(f *testing.F) {
	f.Add(encodeOutbox(&OutboxEntry{GraphID: "g", State: taskdef.GraphCompleted, Created: t0, NextAttempt: t0, Status: OutboxPending}))
	f.Add(encodeOutbox(&OutboxEntry{GraphID: "g2", Attempts: 3, Status: OutboxFailed, LastError: "x"}))
	f.Add([]byte{outboxRecVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e OutboxEntry
		if err := decodeOutbox(b, &e); err != nil {
			return
		}
		var again OutboxEntry
		if err := decodeOutbox(encodeOutbox(&e), &again); err != nil || !reflect.DeepEqual(again, e) {
			t.Fatalf("re-encode of %+v: %+v %v", e, again, err)
		}
	})
}
