package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/af-project/af/internal/taskdef"
	bolt "go.etcd.io/bbolt"
)

// The outbox holds the owner's email of every graph resolution. The
// transaction that resolves a graph writes its entry (flush, below), so a
// resolution is never committed without one and no crash or relay fault
// can lose the email; a sender outside the queue (internal/outbox, in af
// serve) delivers the entries and marks them done in a transaction of its
// own. The queue only stores: it composes and sends nothing, and imports
// neither notify nor SMTP.
//
// One entry per resolution: its key is the graph id and the resolution's
// time, and the entry is written only by the transaction that resolved the
// graph, once (a key already present is left alone). A graph that a rerun
// re-opens and that resolves again is a new resolution with a new key, so
// the owner hears of the new outcome too.
//
// Buckets:
//
//	outbox     graphID 0 be64(resolved) -> outbox record (binary, below)
//	outboxdue  be64(next attempt) key   -> ""  (entries not done yet)
//
// The outbox counters (pending, sent, failed) live in the counts bucket
// under keys that are not task states.
var (
	bOutbox    = []byte("outbox")
	bOutboxDue = []byte("outboxdue")
	// addedBuckets were added to schema 1 after it shipped; an existing
	// file gets them on its first read-write open.
	addedBuckets = [][]byte{bOutbox, bOutboxDue, bProvenance}
)

// Outbox entry states.
const (
	// OutboxPending is waiting for (another) delivery attempt.
	OutboxPending = "pending"
	// OutboxSent was accepted by the relay.
	OutboxSent = "sent"
	// OutboxSkipped was done without sending: the graph has no owner, or
	// a rerun re-opened it before the email went out (its next resolution
	// has an entry of its own), or it is gone; LastError says which.
	OutboxSkipped = "skipped"
	// OutboxFailed was given up on (a recipient that is no address, or
	// retries past the sender's limit); LastError says why.
	OutboxFailed = "failed"
)

// outbox counters in bCounts, one per entry state.
var (
	cntOutboxPending = []byte("outbox:pending")
	cntOutboxSent    = []byte("outbox:sent")
	cntOutboxSkipped = []byte("outbox:skipped")
	cntOutboxFailed  = []byte("outbox:failed")
)

// OutboxEntry is one owner email to deliver.
type OutboxEntry struct {
	// ID names the entry (graph id and resolution time); it is stable, so
	// the sender derives the message's Message-ID from it.
	ID      string
	GraphID string
	// State is the graph's state when it resolved.
	State taskdef.GraphState
	// Created is when the graph resolved (the entry's transaction).
	Created time.Time
	// Attempts counts delivery attempts that failed.
	Attempts int
	// NextAttempt is when the sender may try again.
	NextAttempt time.Time
	// Done is when the entry stopped being pending (sent, no owner,
	// failed); zero while pending.
	Done time.Time
	// Status is OutboxPending, OutboxSent, OutboxSkipped or OutboxFailed.
	Status string
	// LastError is the last failed attempt's error, or why the entry was
	// skipped or given up on, for the operator.
	LastError string
	// Alert is empty for a resolution's email, or the kind of alert the
	// entry is (AlertLate: a scheduled run not completed in time), whose
	// Created is the time the alert was due rather than a resolution.
	Alert string
}

// Alert kinds of OutboxEntry.Alert.
const (
	// AlertLate: a schedule's run had not completed within the schedule's
	// expect-within of the time it fell due.
	AlertLate = "late"
)

// OutboxStats counts the entries by state.
type OutboxStats struct {
	Pending, Sent, Skipped, Failed int
}

// outboxRecVersion 2 added Alert; version 1 records (resolution emails)
// still decode.
const outboxRecVersion = 2

// maxOutboxError bounds the error text kept on an entry.
const maxOutboxError = 1000

func encodeOutbox(o *OutboxEntry) []byte {
	e := encoder{b: make([]byte, 0, 64+len(o.GraphID)+len(o.LastError))}
	e.b = append(e.b, outboxRecVersion)
	e.str(o.GraphID)
	e.str(string(o.State))
	e.time(o.Created)
	e.int(int64(o.Attempts))
	e.time(o.NextAttempt)
	e.time(o.Done)
	e.str(o.Status)
	e.str(o.LastError)
	e.str(o.Alert)
	return e.b
}

func decodeOutbox(b []byte, o *OutboxEntry) error {
	if len(b) == 0 || (b[0] != 1 && b[0] != outboxRecVersion) {
		return fmt.Errorf("outbox record has unknown encoding")
	}
	version := b[0]
	d := decoder{b: b[1:]}
	*o = OutboxEntry{}
	o.GraphID = d.str()
	o.State = taskdef.GraphState(d.str())
	o.Created = d.time()
	o.Attempts = int(d.int())
	o.NextAttempt = d.time()
	o.Done = d.time()
	o.Status = d.str()
	o.LastError = d.str()
	if version >= 2 {
		o.Alert = d.str()
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d bytes after the record", len(d.b))
	}
	if d.err == nil {
		switch o.Status {
		case OutboxPending, OutboxSent, OutboxSkipped, OutboxFailed:
		default:
			d.err = fmt.Errorf("outbox status %q is unknown", o.Status)
		}
	}
	return d.err
}

// outboxKey is graphID 0 be64(resolved). Graph ids never hold a NUL (they
// are slugs), so the key splits unambiguously.
func outboxKey(graphID string, resolved time.Time) []byte {
	k := make([]byte, 0, len(graphID)+9)
	k = append(k, graphID...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, uint64(resolved.UnixNano()))
}

// outboxID is the printable form of a key: graphID@unixnano.
func outboxID(key []byte) string {
	i := bytes.IndexByte(key, 0)
	if i < 0 || len(key) != i+9 {
		return string(key)
	}
	return fmt.Sprintf("%s@%d", key[:i], int64(binary.BigEndian.Uint64(key[i+1:])))
}

// parseOutboxID is outboxID's inverse.
func parseOutboxID(id string) ([]byte, error) {
	i := bytes.LastIndexByte([]byte(id), '@')
	if i <= 0 {
		return nil, invalidf("outbox entry %q: want graph@time", id)
	}
	n, err := strconv.ParseInt(id[i+1:], 10, 64)
	if err != nil {
		return nil, invalidf("outbox entry %q: time is not a number", id)
	}
	return outboxKey(id[:i], time.Unix(0, n)), nil
}

func outboxDueKey(next time.Time, key []byte) []byte {
	k := make([]byte, 8, 8+len(key))
	binary.BigEndian.PutUint64(k, uint64(next.UnixNano()))
	return append(k, key...)
}

// writeOutbox adds the entry of a graph this function resolved. It runs
// in flush, so a graph that a later transition of the same function
// re-opened (and so left w.resolved) gets none.
func (w *wtx) writeOutbox(graphID string, g *graphRec) error {
	if g == nil || g.Resolved == nil {
		return nil
	}
	ob, due := w.tx.Bucket(bOutbox), w.tx.Bucket(bOutboxDue)
	key := outboxKey(graphID, *g.Resolved)
	if ob.Get(key) != nil {
		return nil // this resolution already has its entry
	}
	e := OutboxEntry{GraphID: graphID, State: g.State, Created: *g.Resolved, NextAttempt: *g.Resolved, Status: OutboxPending}
	if err := ob.Put(key, encodeOutbox(&e)); err != nil {
		return err
	}
	if err := due.Put(outboxDueKey(e.NextAttempt, key), nil); err != nil {
		return err
	}
	w.outboxed = true
	return addCounter(w.cnts, cntOutboxPending, 1)
}

func addCounter(b *bolt.Bucket, k []byte, d int64) error {
	var n int64
	if v := b.Get(k); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(n+d))
	return b.Put(k, v[:])
}

func readCounter(b *bolt.Bucket, k []byte) int {
	if v := b.Get(k); len(v) == 8 {
		return int(int64(binary.BigEndian.Uint64(v)))
	}
	return 0
}

// OutboxAlert writes an alert's entry for a graph, due at at, once: the
// key is the graph and at, and an entry already there is left alone, so a
// caller that cannot tell whether an earlier call got through (the
// scheduler after a restart) calls again without a second email.
func (q *Queue) OutboxAlert(ctx context.Context, graphID, alert string, at time.Time) error {
	if alert != AlertLate {
		return invalidf("outbox alert %q: want %q", alert, AlertLate)
	}
	return q.write(ctx, func(w *wtx) error {
		ob, due := w.tx.Bucket(bOutbox), w.tx.Bucket(bOutboxDue)
		key := outboxKey(graphID, at)
		if ob.Get(key) != nil {
			return nil
		}
		e := OutboxEntry{GraphID: graphID, Created: at, NextAttempt: w.now, Status: OutboxPending, Alert: alert}
		if err := ob.Put(key, encodeOutbox(&e)); err != nil {
			return err
		}
		if err := due.Put(outboxDueKey(e.NextAttempt, key), nil); err != nil {
			return err
		}
		w.outboxed = true
		return addCounter(w.cnts, cntOutboxPending, 1)
	})
}

// OutboxSignal returns a channel that is closed when a commit writes an
// outbox entry, so the sender wakes at once instead of polling.
func (q *Queue) OutboxSignal() <-chan struct{} {
	q.wakeMu.Lock()
	defer q.wakeMu.Unlock()
	if q.outboxWake == nil {
		q.outboxWake = make(chan struct{})
	}
	return q.outboxWake
}

func (q *Queue) notifyOutbox() {
	q.wakeMu.Lock()
	if q.outboxWake != nil {
		close(q.outboxWake)
		q.outboxWake = nil
	}
	q.wakeMu.Unlock()
}

// OutboxDue returns up to limit pending entries whose next attempt is at or
// before now, oldest due first, and when the earliest pending entry not
// returned falls due (zero if none is pending).
func (q *Queue) OutboxDue(ctx context.Context, now time.Time, limit int) ([]OutboxEntry, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return nil, time.Time{}, err
	}
	var out []OutboxEntry
	var next time.Time
	err := q.db.View(func(tx *bolt.Tx) error {
		ob := tx.Bucket(bOutbox)
		c := tx.Bucket(bOutboxDue).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) < 8 {
				continue
			}
			at := keyTime(k)
			if at.After(now) || len(out) >= limit {
				next = at
				return nil
			}
			raw := ob.Get(k[8:])
			if raw == nil {
				continue
			}
			var e OutboxEntry
			if err := decodeOutbox(raw, &e); err != nil {
				return fmt.Errorf("decode outbox entry %s: %w", outboxID(k[8:]), err)
			}
			e.ID = outboxID(k[8:])
			out = append(out, e)
		}
		return nil
	})
	return out, next, err
}

// OutboxEntryByID returns one entry (ErrNotFound if absent).
func (q *Queue) OutboxEntryByID(ctx context.Context, id string) (OutboxEntry, error) {
	key, err := parseOutboxID(id)
	if err != nil {
		return OutboxEntry{}, err
	}
	var e OutboxEntry
	err = q.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bOutbox).Get(key)
		if raw == nil {
			return notFoundf("outbox entry %s not found", id)
		}
		return decodeOutbox(raw, &e)
	})
	e.ID = id
	return e, err
}

// OutboxEntries lists every entry of a graph, oldest resolution first.
func (q *Queue) OutboxEntries(ctx context.Context, graphID string) ([]OutboxEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []OutboxEntry
	prefix := append([]byte(graphID), 0)
	err := q.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bOutbox).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(k) != len(prefix)+8 {
				continue
			}
			var e OutboxEntry
			if err := decodeOutbox(v, &e); err != nil {
				return fmt.Errorf("decode outbox entry %s: %w", outboxID(k), err)
			}
			e.ID = outboxID(k)
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// OutboxStats counts the entries by state.
func (q *Queue) OutboxStats(ctx context.Context) (OutboxStats, error) {
	if err := ctx.Err(); err != nil {
		return OutboxStats{}, err
	}
	var s OutboxStats
	err := q.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bCounts)
		s = OutboxStats{
			Pending: readCounter(b, cntOutboxPending), Sent: readCounter(b, cntOutboxSent),
			Skipped: readCounter(b, cntOutboxSkipped), Failed: readCounter(b, cntOutboxFailed),
		}
		return nil
	})
	return s, err
}

// OutboxDone ends a pending entry: status is OutboxSent, OutboxSkipped or
// OutboxFailed (note says why for the last two). Ending an entry that is
// already done is a conflict, so two senders cannot both count one email.
func (q *Queue) OutboxDone(ctx context.Context, id, status, note string) error {
	counter := map[string][]byte{OutboxSent: cntOutboxSent, OutboxSkipped: cntOutboxSkipped, OutboxFailed: cntOutboxFailed}[status]
	if counter == nil {
		return invalidf("outbox status %q: want sent, skipped or failed", status)
	}
	key, err := parseOutboxID(id)
	if err != nil {
		return err
	}
	return q.write(ctx, func(w *wtx) error {
		e, err := w.pendingOutbox(id, key)
		if err != nil {
			return err
		}
		if err := w.tx.Bucket(bOutboxDue).Delete(outboxDueKey(e.NextAttempt, key)); err != nil {
			return err
		}
		e.Status, e.Done = status, w.now
		if note != "" {
			e.LastError = cut(note, maxOutboxError)
		}
		if err := w.tx.Bucket(bOutbox).Put(key, encodeOutbox(&e)); err != nil {
			return err
		}
		if err := addCounter(w.cnts, cntOutboxPending, -1); err != nil {
			return err
		}
		return addCounter(w.cnts, counter, 1)
	})
}

// OutboxRetry records a failed attempt of a pending entry and when to try
// again.
func (q *Queue) OutboxRetry(ctx context.Context, id string, next time.Time, errMsg string) error {
	key, err := parseOutboxID(id)
	if err != nil {
		return err
	}
	return q.write(ctx, func(w *wtx) error {
		e, err := w.pendingOutbox(id, key)
		if err != nil {
			return err
		}
		due := w.tx.Bucket(bOutboxDue)
		if err := due.Delete(outboxDueKey(e.NextAttempt, key)); err != nil {
			return err
		}
		e.Attempts++
		e.NextAttempt = next
		e.LastError = cut(errMsg, maxOutboxError)
		if err := due.Put(outboxDueKey(next, key), nil); err != nil {
			return err
		}
		return w.tx.Bucket(bOutbox).Put(key, encodeOutbox(&e))
	})
}

// pendingOutbox reads an entry that must still be pending (a refusal
// otherwise, before any write).
func (w *wtx) pendingOutbox(id string, key []byte) (OutboxEntry, error) {
	var e OutboxEntry
	raw := w.tx.Bucket(bOutbox).Get(key)
	if raw == nil {
		return e, notFoundf("outbox entry %s not found", id)
	}
	if err := decodeOutbox(raw, &e); err != nil {
		return e, fmt.Errorf("decode outbox entry %s: %w", id, err)
	}
	if e.Status != OutboxPending {
		return e, conflictf("outbox entry %s is %s already", id, e.Status)
	}
	return e, nil
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// deleteGraphOutbox removes every outbox entry of a graph (with its due
// key and its count); the expiry calls it when it deletes the graph
// record (markGraph): a pending entry of a graph that is gone could only
// be skipped.
func (w *wtx) deleteGraphOutbox(graphID string) error {
	ob, due := w.tx.Bucket(bOutbox), w.tx.Bucket(bOutboxDue)
	prefix := append([]byte(graphID), 0)
	var keys [][]byte
	var entries []OutboxEntry
	c := ob.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(k) != len(prefix)+8 {
			continue
		}
		var e OutboxEntry
		if err := decodeOutbox(v, &e); err != nil {
			return fmt.Errorf("decode outbox entry %s: %w", outboxID(k), err)
		}
		keys = append(keys, append([]byte(nil), k...))
		entries = append(entries, e)
	}
	for i, k := range keys {
		e := entries[i]
		counter := map[string][]byte{OutboxPending: cntOutboxPending, OutboxSent: cntOutboxSent, OutboxSkipped: cntOutboxSkipped, OutboxFailed: cntOutboxFailed}[e.Status]
		if e.Status == OutboxPending {
			if err := due.Delete(outboxDueKey(e.NextAttempt, k)); err != nil {
				return err
			}
		}
		if err := ob.Delete(k); err != nil {
			return err
		}
		if counter != nil {
			if err := addCounter(w.cnts, counter, -1); err != nil {
				return err
			}
		}
	}
	return nil
}
