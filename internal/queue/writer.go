package queue

import (
	"context"
	"errors"
	"time"

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
	fn   func(*wtx) error
	done chan error
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
	r := &writeReq{fn: fn, done: make(chan error, 1)}
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
	woke := false
	err := q.db.Update(func(tx *bolt.Tx) error {
		woke = false
		now := q.clock.Now()
		for i, r := range batch {
			w := newWtx(tx, q, now)
			errs[i] = r.fn(w)
			if errs[i] != nil && !refusal(errs[i]) {
				bad = i
				return errAbort
			}
			if errs[i] == nil && w.woke {
				woke = true
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
	if woke {
		q.notify()
	}
	for i, r := range batch {
		r.done <- errs[i]
	}
}

// wtx is one write function's view of the transaction: the buckets, the
// time of the transaction, and what happened that callers care about after
// the commit.
type wtx struct {
	tx                                                           *bolt.Tx
	q                                                            *Queue
	now                                                          time.Time
	defs, tasks, pending, running, deadlines, deps, graphs, cnts *bolt.Bucket
	graphTasks, graphTime                                        *bolt.Bucket
	// woke is set when a task became pending.
	woke bool
	// resolved lists the graphs this function's changes resolved.
	resolved map[string]bool
	// actorTask and actorRun name the report being processed, recorded on
	// a graph it resolves.
	actorTask string
	actorRun  int
}

func newWtx(tx *bolt.Tx, q *Queue, now time.Time) *wtx {
	return &wtx{
		tx: tx, q: q, now: now,
		defs: tx.Bucket(bDefs), tasks: tx.Bucket(bTasks), pending: tx.Bucket(bPending),
		running: tx.Bucket(bRunning), deadlines: tx.Bucket(bDeadlines), deps: tx.Bucket(bDeps),
		graphs: tx.Bucket(bGraphs), cnts: tx.Bucket(bCounts),
		graphTasks: tx.Bucket(bGraphTask), graphTime: tx.Bucket(bGraphTime),
	}
}
