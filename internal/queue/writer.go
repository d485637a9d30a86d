package queue

import (
	"context"
	"errors"
	"time"

	"github.com/af-project/af/internal/taskdef"
	bolt "go.etcd.io/bbolt"
)

// Group commit. Every state change is a function run inside a bbolt write
// transaction by one writer goroutine. The writer takes every request that
// is waiting when it starts a transaction and commits them together, so
// concurrent claims and reports share one fsync instead of queueing for one
// each; nothing waits for a timer, so a lone request commits at once.
//
// A function must not have side effects outside the transaction because it
// may run more than once, and it must return a refusal (ErrNotFound,
// ErrInvalid, ErrConflict and their kin) only before its first write: a
// refusal leaves the rest of the batch to commit, any other error rolls the
// whole batch back and the others run again without the failing one.

// maxBatch bounds how many requests share one transaction.
const maxBatch = 256

type writeReq struct {
	fn    func(*wtx) error
	done  chan error
	actor Actor
}

// errAbort rolls back a batch in which one function failed.
var errAbort = errors.New("abort batch")

// write runs fn in a write transaction (shared with other concurrent
// writes) and returns its error, or the commit's. Once queued the write is
// waited for even if ctx ends, so the caller never reports failure for a
// change that was committed.
func (q *Queue) write(ctx context.Context, fn func(*wtx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &writeReq{fn: fn, done: make(chan error, 1), actor: actorFrom(ctx)}
	q.closeMu.RLock()
	if q.closed {
		q.closeMu.RUnlock()
		return ErrClosed
	}
	q.writes <- r
	q.closeMu.RUnlock()
	return <-r.done
}

// writer is the single goroutine that commits writes.
func (q *Queue) writer() {
	defer close(q.done)
	batch := make([]*writeReq, 0, maxBatch)
	for {
		var first *writeReq
		select {
		case first = <-q.writes:
		case <-q.stop:
			// Close set closed before closing stop, so nothing more can be
			// queued: finish what is there.
			for {
				select {
				case r := <-q.writes:
					q.commit([]*writeReq{r})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-q.writes:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		q.commit(batch)
	}
}

// commit runs a batch in one transaction and answers every request.
func (q *Queue) commit(batch []*writeReq) {
	errs := make([]error, len(batch))
	bad := -1
	woke, outboxed := false, false
	err := q.db.Update(func(tx *bolt.Tx) error {
		woke, outboxed = false, false
		now := q.clock.Now()
		for i, r := range batch {
			w := newWtx(tx, q, now)
			w.actor = r.actor
			errs[i] = r.fn(w)
			if errs[i] == nil {
				errs[i] = w.flush()
			}
			if errs[i] != nil && !refusal(errs[i]) {
				bad = i
				return errAbort
			}
			if errs[i] == nil && w.woke {
				woke = true
			}
			if errs[i] == nil && w.outboxed {
				outboxed = true
			}
		}
		return nil
	})
	if bad >= 0 && errors.Is(err, errAbort) {
		batch[bad].done <- errs[bad]
		rest := make([]*writeReq, 0, len(batch)-1)
		rest = append(rest, batch[:bad]...)
		rest = append(rest, batch[bad+1:]...)
		if len(rest) > 0 {
			q.commit(rest)
		}
		return
	}
	if err != nil {
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	q.commits.Add(1)
	q.committed.Add(int64(len(batch)))
	if woke {
		q.notify()
	}
	if outboxed {
		q.notifyOutbox()
	}
	for i, r := range batch {
		r.done <- errs[i]
	}
}

// wtx is one write function's view of the transaction: the buckets, the
// time of the transaction, and what happened that callers care about after
// the commit.
type wtx struct {
	tx                                                  *bolt.Tx
	q                                                   *Queue
	now                                                 time.Time
	defs, tasks, running, deadlines, deps, graphs, cnts *bolt.Bucket
	graphTasks, graphTime, pendq, owners                *bolt.Bucket
	// woke is set when a task became pending.
	woke bool
	// outboxed is set when an outbox entry was written.
	outboxed bool
	// resolved lists the graphs this function's changes resolved.
	resolved map[string]bool
	// actorTask and actorRun name the report being processed, recorded on
	// a graph it resolves.
	actorTask string
	actorRun  int
	// canceling is the graph CancelGraph is resolving.
	canceling string
	// actor is who asked for this change (the audit trail's "by").
	actor Actor
	// graphCache holds the graph records this function read, dirty the
	// ones it changed, and counts the state counter deltas; flush writes
	// them once at the end instead of on every transition.
	graphCache map[string]*graphRec
	dirty      map[string]bool
	counts     map[taskdef.TaskState]int
	// ownerCounts are the deltas of the owners' counts (ownerKey ->
	// delta), written at flush.
	ownerCounts map[string]int
}

// graph returns the graph record (nil if absent), cached for the function.
func (w *wtx) graph(id string) (*graphRec, error) {
	if g, ok := w.graphCache[id]; ok {
		return g, nil
	}
	var g graphRec
	ok, err := getGraph(w.graphs, id, &g)
	if err != nil || !ok {
		return nil, err
	}
	if w.graphCache == nil {
		w.graphCache = map[string]*graphRec{}
	}
	w.graphCache[id] = &g
	return &g, nil
}

// setGraph stores a (new or changed) graph record at flush.
func (w *wtx) setGraph(id string, g *graphRec) {
	if w.graphCache == nil {
		w.graphCache = map[string]*graphRec{}
	}
	if w.dirty == nil {
		w.dirty = map[string]bool{}
	}
	w.graphCache[id] = g
	w.dirty[id] = true
}

// count adds d to the number of tasks in state s, at flush.
func (w *wtx) count(s taskdef.TaskState, d int) {
	if w.counts == nil {
		w.counts = map[taskdef.TaskState]int{}
	}
	w.counts[s] += d
}

// flush writes what the function changed in the graph records and
// counters, and the outbox entry of every graph it resolved (in the same
// transaction as the resolution: see outbox.go).
func (w *wtx) flush() error {
	for id := range w.resolved {
		if err := w.writeOutbox(id, w.graphCache[id]); err != nil {
			return err
		}
	}
	for id := range w.dirty {
		if err := w.graphs.Put([]byte(id), encodeGraph(w.graphCache[id])); err != nil {
			return err
		}
	}
	for s, d := range w.counts {
		if d == 0 {
			continue
		}
		if err := addCount(w.cnts, s, d); err != nil {
			return err
		}
	}
	w.dirty, w.counts = nil, nil
	return w.flushOwnerCounts()
}

func newWtx(tx *bolt.Tx, q *Queue, now time.Time) *wtx {
	return &wtx{
		tx: tx, q: q, now: now,
		defs: tx.Bucket(bDefs), tasks: tx.Bucket(bTasks), pendq: tx.Bucket(bPendq), owners: tx.Bucket(bOwners),
		running: tx.Bucket(bRunning), deadlines: tx.Bucket(bDeadlines), deps: tx.Bucket(bDeps),
		graphs: tx.Bucket(bGraphs), cnts: tx.Bucket(bCounts),
		graphTasks: tx.Bucket(bGraphTask), graphTime: tx.Bucket(bGraphTime),
	}
}
