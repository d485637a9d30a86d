package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/af-project/af/internal/taskdef"
	bolt "go.etcd.io/bbolt"
)

// Expiry. Every task has an expires time (at or after its deadline, so a
// task past it has resolved); af serve deletes what is past it, in bounded
// batches, with Sweep.
//
// The unit is the graph: a graph's tasks are deleted once every task of
// the graph has expired and the graph has resolved (a reducer's rerun
// reads its mappers' outputs, and a graph missing some of its tasks would
// show counts that do not add up). `af submit` gives every task of a graph
// the same expiry, so this is each task's own expiry there.
//
// A sweep first marks the graphs that are due: in one transaction per
// batch of graphs it deletes each graph's record, writes its tombstone and
// lists it under "sweeping". Then it deletes their tasks, Batch per
// transaction, calling SweepOptions.BeforeDelete (the artifacts in S3)
// first: a crash between the two leaves records whose artifacts are gone,
// and the next sweep deletes them again (deleting nothing in S3) and then
// the records; it never leaves artifacts that no record points to.
//
// Tombstones answer "expired" instead of "not found" for a graph or task
// id (the server's 410), until they expire themselves TombstoneTTL later.
//
// The buckets are created on open if missing, so a queue file written
// before expiry existed gains them (and its graphs are indexed once).
var (
	bExpiry    = []byte("expiry")      // be64(expires) graphID -> "": each graph's latest task expiry (and stale earlier ones)
	bGraphExp  = []byte("graphexpiry") // graphID -> be64(latest task expiry)
	bExpired   = []byte("expired")     // kind 0 id -> tombstone JSON ("g" graphs, "t" tasks)
	bExpiredAt = []byte("expiredtime") // be64(drop at) kind 0 id -> "": tombstones by their own expiry
	bSweeping  = []byte("sweeping")    // graphID -> "": graphs whose tasks are being deleted
)

// ErrExpired: the graph or task existed and was deleted because it
// expired (HTTP 410). An *ExpiredError carries when.
var ErrExpired = errors.New("expired")

// Defaults of SweepOptions.
const (
	// DefaultSweepBatch bounds the tasks (and graphs, and tombstones) one
	// sweep transaction deletes, so a sweep never holds the writer for
	// long: claims and reports go on between its batches.
	DefaultSweepBatch = 500
	// DefaultTombstoneTTL is how long "expired" is said about an id
	// before it becomes "not found".
	DefaultTombstoneTTL = 90 * 24 * time.Hour
)

// Tombstone is what remains of an expired graph or task.
type Tombstone struct {
	// Kind is "graph" or "task".
	Kind string `json:"kind"`
	ID   string `json:"id"`
	// GraphID is the task's graph (tasks only).
	GraphID string `json:"graphId,omitempty"`
	// Expires is when the graph's last task expired; Deleted when the
	// sweep deleted it.
	Expires time.Time `json:"expires"`
	Deleted time.Time `json:"deleted"`
}

// ExpiredError is ErrExpired for one id.
type ExpiredError struct{ Tombstone Tombstone }

func (e *ExpiredError) Error() string {
	t := e.Tombstone
	when := t.Expires.UTC().Format(time.RFC3339)
	if t.Kind == "graph" {
		return fmt.Sprintf("graph %s expired at %s: af serve deleted its tasks, runs, logs and results (a graph is kept until its tasks' expires time, a week after the deadline for `af submit`)", t.ID, when)
	}
	return fmt.Sprintf("task %s (graph %s) expired at %s: af serve deleted its runs, logs and artifacts", t.ID, t.GraphID, when)
}

// Is makes errors.Is(err, ErrExpired) true.
func (e *ExpiredError) Is(target error) bool { return target == ErrExpired }

// SweepOptions configure Sweep.
type SweepOptions struct {
	// Batch bounds the graphs marked, the tasks deleted and the
	// tombstones dropped per transaction (default DefaultSweepBatch).
	Batch int
	// Margin is how long after a graph resolved it must stay even when
	// expired: artifacts may still be uploaded for a while after a run
	// resolved (the server's artifact_grace plus the life of an upload
	// URL), and deleting before that could leave an object behind.
	Margin time.Duration
	// TombstoneTTL is how long tombstones stay (default
	// DefaultTombstoneTTL).
	TombstoneTTL time.Duration
	// BeforeDelete is called with each batch of task ids before their
	// records are deleted (the server deletes their artifacts); an error
	// ends the sweep with that batch's records kept, for the next sweep.
	BeforeDelete func(ctx context.Context, taskIDs []string) error
}

// SweepReport says what one Sweep deleted.
type SweepReport struct {
	// Graphs counts graphs marked expired (their records deleted and
	// tombstoned), Tasks the tasks deleted, Tombstones the tombstones
	// dropped.
	Graphs, Tasks, Tombstones int
	// Batches counts the task batches; MaxBatch is the largest.
	Batches, MaxBatch int
	// Done lists the graphs whose last task this sweep deleted.
	Done []string
}

func tombKey(kind byte, id string) []byte { return append([]byte{kind, 0}, id...) }

// initExpiry creates the expiry buckets of a file that lacks them, and
// then indexes the expiry of the graphs already in it, once.
func initExpiry(tx *bolt.Tx) error {
	for _, name := range [][]byte{bExpired, bExpiredAt, bSweeping} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	if tx.Bucket(bGraphExp) != nil && tx.Bucket(bExpiry) != nil {
		return nil
	}
	for _, name := range [][]byte{bExpiry, bGraphExp} {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return fmt.Errorf("rebuild bucket %s: %w", name, err)
			}
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	tasks := tx.Bucket(bTasks)
	if tasks == nil {
		return nil
	}
	return tasks.ForEach(func(k, v []byte) error {
		var t taskRec
		if err := decodeTask(v, &t); err != nil {
			return fmt.Errorf("index expiry: decode task %s: %w", k, err)
		}
		return noteExpiry(tx, t.GraphID, t.Expires)
	})
}

// noteExpiry records that graphID has a task expiring at t, when that is
// later than its latest so far; insertTasks calls it for every new task.
// Most tasks of a graph share one expiry, so most calls only read.
func noteExpiry(tx *bolt.Tx, graphID string, t time.Time) error {
	ge := tx.Bucket(bGraphExp)
	if v := ge.Get([]byte(graphID)); len(v) == 8 && !t.After(keyTime(v)) {
		return nil
	}
	if err := ge.Put([]byte(graphID), timeKey(t, "")); err != nil {
		return err
	}
	return tx.Bucket(bExpiry).Put(timeKey(t, graphID), nil)
}

func (w *wtx) noteExpiry(graphID string, t time.Time) error { return noteExpiry(w.tx, graphID, t) }

// Expired returns the tombstone of an expired graph (kind "graph") or task
// (kind "task"), if there is one.
func (q *Queue) Expired(ctx context.Context, kind, id string) (Tombstone, bool, error) {
	if err := ctx.Err(); err != nil {
		return Tombstone{}, false, err
	}
	var t Tombstone
	var ok bool
	err := q.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bExpired).Get(tombKey(kind[0], id))
		if raw == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(raw, &t)
	})
	return t, ok, err
}

// ExpiredOr returns err, or an *ExpiredError when err is ErrNotFound and
// the graph or task (kind "graph" or "task") id has a tombstone.
func (q *Queue) ExpiredOr(ctx context.Context, err error, kind, id string) error {
	if !errors.Is(err, ErrNotFound) || id == "" {
		return err
	}
	t, ok, terr := q.Expired(ctx, kind, id)
	if terr != nil || !ok {
		return err
	}
	return &ExpiredError{Tombstone: t}
}

// Sweep deletes what has expired: it marks due graphs, deletes their
// tasks batch by batch (each batch after BeforeDelete), then drops expired
// tombstones. It resumes whatever an earlier, interrupted sweep left
// (graphs under "sweeping"). ctx ends it between batches.
func (q *Queue) Sweep(ctx context.Context, o SweepOptions) (SweepReport, error) {
	if o.Batch <= 0 {
		o.Batch = DefaultSweepBatch
	}
	if o.TombstoneTTL <= 0 {
		o.TombstoneTTL = DefaultTombstoneTTL
	}
	var rep SweepReport
	// Mark.
	var after []byte
	for {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		n := 0
		var last []byte
		err := q.write(ctx, func(w *wtx) error {
			var err error
			n, last, err = w.markExpired(o, after)
			return err
		})
		if err != nil {
			return rep, fmt.Errorf("sweep: mark expired graphs: %w", err)
		}
		rep.Graphs += n
		if last == nil {
			break
		}
		after = last
	}
	// Delete the tasks of every graph being swept.
	for {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		graphID, ids, err := q.nextSweepBatch(o.Batch)
		if err != nil {
			return rep, fmt.Errorf("sweep: %w", err)
		}
		if graphID == "" {
			break
		}
		if len(ids) > 0 && o.BeforeDelete != nil {
			if err := o.BeforeDelete(ctx, ids); err != nil {
				return rep, fmt.Errorf("sweep: graph %s: %w (its records are kept for the next sweep)", graphID, err)
			}
		}
		deleted := 0
		err = q.write(ctx, func(w *wtx) error {
			var err error
			deleted, err = w.deleteExpiredTasks(graphID, ids, o.TombstoneTTL)
			if err != nil || len(ids) > 0 {
				return err
			}
			// Nothing left to delete: the graph is done.
			return w.tx.Bucket(bSweeping).Delete([]byte(graphID))
		})
		if err != nil {
			return rep, fmt.Errorf("sweep: graph %s: %w", graphID, err)
		}
		if len(ids) == 0 {
			rep.Done = append(rep.Done, graphID)
			continue
		}
		rep.Tasks += deleted
		rep.Batches++
		rep.MaxBatch = max(rep.MaxBatch, len(ids))
	}
	// Drop old tombstones.
	for {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		n := 0
		err := q.write(ctx, func(w *wtx) error {
			var err error
			n, err = w.dropTombstones(o.Batch)
			return err
		})
		if err != nil {
			return rep, fmt.Errorf("sweep: drop tombstones: %w", err)
		}
		rep.Tombstones += n
		if n < o.Batch {
			return rep, nil
		}
	}
}

// markExpired looks at up to o.Batch expiry entries due now, after the
// key after (nil: from the first), and marks the graphs among them that
// are due. last is the last entry looked at, nil when no entry remains.
func (w *wtx) markExpired(o SweepOptions, after []byte) (marked int, last []byte, err error) {
	exp := w.tx.Bucket(bExpiry)
	var due [][]byte
	c := exp.Cursor()
	k, _ := c.First()
	if after != nil {
		k, _ = c.Seek(after)
		if k != nil && bytes.Equal(k, after) {
			k, _ = c.Next()
		}
	}
	for ; k != nil && len(due) < o.Batch && !keyTime(k).After(w.now); k, _ = c.Next() {
		due = append(due, bytes.Clone(k))
	}
	for _, k := range due {
		verdict, err := w.markGraph(string(k[8:]), o)
		if err != nil {
			return marked, nil, err
		}
		switch verdict {
		case notYet:
			// Still running, or within the margin: the entry stays for
			// the next sweep.
			continue
		case markedNow:
			marked++
		}
		if err := exp.Delete(k); err != nil {
			return marked, nil, err
		}
	}
	if len(due) < o.Batch {
		return marked, nil, nil
	}
	return marked, due[len(due)-1], nil
}

// What markGraph decided about an expiry entry.
const (
	notYet    = iota // the graph is not due yet: keep the entry
	stale            // the graph is gone, or a later expiry has its own entry
	markedNow        // the graph is marked: its tasks are to be deleted
)

// markGraph marks graphID for deletion if all its tasks have expired and
// it resolved more than o.Margin ago.
func (w *wtx) markGraph(graphID string, o SweepOptions) (int, error) {
	g, err := w.graph(graphID)
	if err != nil {
		return notYet, err
	}
	if g == nil {
		return stale, nil
	}
	if g.State == taskdef.GraphRunning || g.Resolved == nil || g.Resolved.Add(o.Margin).After(w.now) {
		return notYet, nil
	}
	// The graph's latest task expiry, kept up to date by noteExpiry, so
	// marking reads one key however large the graph.
	ge := w.tx.Bucket(bGraphExp)
	v := ge.Get([]byte(graphID))
	if len(v) != 8 {
		return notYet, fmt.Errorf("graph %s has no expiry recorded (damaged file?)", graphID)
	}
	last := keyTime(v).UTC()
	if last.After(w.now) {
		// A later expiry has an entry of its own.
		return stale, nil
	}
	if err := ge.Delete([]byte(graphID)); err != nil {
		return notYet, err
	}
	tomb, err := json.Marshal(Tombstone{Kind: "graph", ID: graphID, Expires: last, Deleted: w.now})
	if err != nil {
		return notYet, err
	}
	if err := w.putTombstone('g', graphID, tomb, last, o.TombstoneTTL); err != nil {
		return notYet, err
	}
	if err := w.tx.Bucket(bSweeping).Put([]byte(graphID), nil); err != nil {
		return notYet, err
	}
	if err := w.graphTime.Delete(timeKey(g.Created, graphID)); err != nil {
		return notYet, err
	}
	// Its owner emails go with it: a pending one could only be skipped
	// (there is no status left to compose it from).
	if err := w.deleteGraphOutbox(graphID); err != nil {
		return notYet, err
	}
	if err := w.deleteProvenance(graphID); err != nil {
		return notYet, err
	}
	// The record goes now, so the graph reads as expired from this
	// transaction on; its tasks follow batch by batch.
	delete(w.graphCache, graphID)
	delete(w.dirty, graphID)
	return markedNow, w.graphs.Delete([]byte(graphID))
}

// putTombstone writes a tombstone that itself expires ttl after expires.
func (w *wtx) putTombstone(kind byte, id string, tomb []byte, expires time.Time, ttl time.Duration) error {
	k := tombKey(kind, id)
	if err := w.tx.Bucket(bExpired).Put(k, tomb); err != nil {
		return err
	}
	drop := expires.Add(ttl)
	if drop.Before(w.now) {
		drop = w.now.Add(ttl)
	}
	return w.tx.Bucket(bExpiredAt).Put(append(timeKey(drop, ""), k...), nil)
}

// nextSweepBatch returns a graph being swept and up to batch of its tasks
// that may be deleted (resolved and expired); none means the graph is
// done. An empty graphID means nothing is being swept.
func (q *Queue) nextSweepBatch(batch int) (graphID string, ids []string, err error) {
	now := q.clock.Now()
	err = q.db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bSweeping).Cursor().First()
		if k == nil {
			return nil
		}
		graphID = string(k)
		tasks := tx.Bucket(bTasks)
		prefix := pairKey(graphID, "")
		c := tx.Bucket(bGraphTask).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(ids) < batch; k, _ = c.Next() {
			id := string(k[len(prefix):])
			var t taskRec
			ok, err := getTask(tasks, id, &t)
			if err != nil {
				return err
			}
			if ok && !deletable(&t, graphID, now) {
				// Added to the graph id after it expired: it stays.
				continue
			}
			ids = append(ids, id)
		}
		return nil
	})
	return graphID, ids, err
}

// deletable says whether a task of a graph being swept may go: it must be
// resolved, past its expiry and still in that graph.
func deletable(t *taskRec, graphID string, now time.Time) bool {
	return t.State.Resolved() && !t.Expires.After(now) && t.GraphID == graphID
}

// deleteExpiredTasks deletes the tasks ids of graphID (checked again: the
// batch was chosen outside this transaction) and tombstones each.
func (w *wtx) deleteExpiredTasks(graphID string, ids []string, ttl time.Duration) (int, error) {
	n := 0
	for _, id := range ids {
		var t taskRec
		ok, err := getTask(w.tasks, id, &t)
		if err != nil {
			return n, err
		}
		if ok && !deletable(&t, graphID, w.now) {
			continue
		}
		if ok {
			if err := w.deleteTask(id, &t); err != nil {
				return n, err
			}
			tomb, err := json.Marshal(Tombstone{Kind: "task", ID: id, GraphID: graphID, Expires: t.Expires, Deleted: w.now})
			if err != nil {
				return n, err
			}
			if err := w.putTombstone('t', id, tomb, t.Expires, ttl); err != nil {
				return n, err
			}
			n++
		}
		if err := w.graphTasks.Delete(pairKey(graphID, id)); err != nil {
			return n, err
		}
	}
	return n, nil
}

// deleteTask removes a resolved task's records: definition, state, its
// dependency links both ways, and its deadline entry (already gone for a
// resolved task; deleted to be sure).
func (w *wtx) deleteTask(id string, t *taskRec) error {
	if t.NumDeps > 0 {
		var def struct {
			Dependencies []string `json:"dependencies"`
		}
		if err := json.Unmarshal(w.defs.Get([]byte(id)), &def); err != nil {
			return fmt.Errorf("decode task %s: %w", id, err)
		}
		for _, d := range def.Dependencies {
			if err := w.deps.Delete(pairKey(d, id)); err != nil {
				return err
			}
		}
	}
	prefix := pairKey(id, "")
	var links [][]byte
	c := w.deps.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		links = append(links, bytes.Clone(k))
	}
	for _, k := range links {
		if err := w.deps.Delete(k); err != nil {
			return err
		}
	}
	if err := w.deadlines.Delete(timeKey(t.Deadline, id)); err != nil {
		return err
	}
	if err := w.defs.Delete([]byte(id)); err != nil {
		return err
	}
	w.count(t.State, -1)
	return w.tasks.Delete([]byte(id))
}

// dropTombstones deletes up to batch tombstones whose own expiry passed.
func (w *wtx) dropTombstones(batch int) (int, error) {
	at := w.tx.Bucket(bExpiredAt)
	var keys [][]byte
	c := at.Cursor()
	for k, _ := c.First(); k != nil && len(keys) < batch && !keyTime(k).After(w.now); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	tombs := w.tx.Bucket(bExpired)
	for _, k := range keys {
		if err := tombs.Delete(k[8:]); err != nil {
			return 0, err
		}
		if err := at.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}
