package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/af-project/af/internal/taskdef"
	bolt "go.etcd.io/bbolt"
)

// Priorities, fair shares and per-owner caps.
//
// The pending index (bPendq) is keyed
//
//	rank(priority) | uvarint(len(owner)) | owner | be64(scheduled) | taskID
//
// so the pending tasks of one (priority, owner) form a contiguous run,
// oldest first, and a claim finds every owner's oldest task with one seek
// per owner instead of a scan of the tasks. The owner is the graph's owner
// string. bOwners keeps, per owner, how many of its tasks are unscheduled,
// pending and running; transition updates it in the transaction that
// changes the state, so the counts cannot drift from the tasks.
//
// A claim takes, among the (priority, owner) runs with a task: the highest
// priority; then (fair shares) the owner with the fewest running tasks, or
// (FIFO) nobody in particular; then the oldest task. An owner at its
// running cap is skipped.

// Scheduling configures claim order and the per-owner caps. The zero value
// is fair shares with no caps and high priority open to every owner.
type Scheduling struct {
	// FIFO hands out, within a priority, the oldest pending task whoever
	// owns it (af before fair shares); false shares the workers between
	// owners.
	FIFO bool
	// MaxRunningPerOwner caps an owner's running tasks; its other tasks
	// wait pending while it is at the cap (0: no cap).
	MaxRunningPerOwner int
	// MaxPendingPerOwner caps an owner's tasks waiting to run (pending or
	// unscheduled): a graph or task that would take the owner over it is
	// refused with ErrOverLimit (0: no cap).
	MaxPendingPerOwner int
	// HighOwners, when not nil, lists the owners who may ask for
	// priority high; any other owner asking for it gets ErrForbidden. Nil
	// lets everyone.
	HighOwners []string
}

// Config keys the errors name, so that a refusal says what to change.
const (
	keyMaxPending = "max_pending_per_owner"
	keyHighOwners = "priority.high_owners"
)

// rank orders priorities in keys: high first.
func rank(p taskdef.Priority) byte {
	switch p {
	case taskdef.PriorityHigh:
		return 0
	case taskdef.PriorityLow:
		return 2
	}
	return 1
}

// storedPriority is the priority as the queue stores it: "" for normal, so
// a definition that says normal and one that says nothing are equal.
func storedPriority(p taskdef.Priority) taskdef.Priority {
	if p == taskdef.PriorityNormal {
		return ""
	}
	return p
}

// checkPriority refuses a priority that is none of the three.
func checkPriority(field string, p taskdef.Priority) error {
	switch p {
	case "", taskdef.PriorityNormal, taskdef.PriorityHigh, taskdef.PriorityLow:
		return nil
	}
	return invalidf("%s %q must be high, normal or low (af submit --priority)", field, p)
}

// groupPrefix is the key prefix of one (priority, owner) run.
func groupPrefix(p taskdef.Priority, owner string) []byte {
	k := make([]byte, 0, 1+binary.MaxVarintLen64+len(owner)+8+32)
	k = append(k, rank(p))
	k = binary.AppendUvarint(k, uint64(len(owner)))
	return append(k, owner...)
}

// pendKey is a pending task's key.
func pendKey(p taskdef.Priority, owner string, scheduled time.Time, id string) []byte {
	k := groupPrefix(p, owner)
	k = binary.BigEndian.AppendUint64(k, uint64(scheduled.UnixNano()))
	return append(k, id...)
}

// splitPendKey returns the length of k's group prefix and its owner.
func splitPendKey(k []byte) (prefix int, owner string, err error) {
	if len(k) < 2 {
		return 0, "", fmt.Errorf("pending key %x is too short; the database is damaged", k)
	}
	n, m := binary.Uvarint(k[1:])
	if m <= 0 || uint64(len(k)-1-m) < n+8 {
		return 0, "", fmt.Errorf("pending key %x is malformed; the database is damaged", k)
	}
	end := 1 + m + int(n)
	return end, string(k[1+m : end]), nil
}

func ownerKey(s taskdef.TaskState, owner string) []byte {
	k := make([]byte, 0, len(s)+1+len(owner))
	k = append(k, s...)
	k = append(k, 0)
	return append(k, owner...)
}

func getCount(b *bolt.Bucket, k []byte) int {
	if v := b.Get(k); len(v) == 8 {
		return int(binary.BigEndian.Uint64(v))
	}
	return 0
}

// addOwnerCount adds d to owner's count of state s (once the function
// flushes); states other than the unresolved ones are not counted.
func (w *wtx) addOwnerCount(owner string, s taskdef.TaskState, d int) {
	if s.Resolved() || d == 0 {
		return
	}
	if w.ownerCounts == nil {
		w.ownerCounts = map[string]int{}
	}
	w.ownerCounts[string(ownerKey(s, owner))] += d
}

// ownerCount is owner's count of state s as this function sees it.
func (w *wtx) ownerCount(owner string, s taskdef.TaskState) int {
	k := ownerKey(s, owner)
	return getCount(w.owners, k) + w.ownerCounts[string(k)]
}

// flushOwnerCounts writes the function's owner count deltas; a count that
// reaches 0 is deleted, so the bucket holds only owners with live tasks.
func (w *wtx) flushOwnerCounts() error {
	for k, d := range w.ownerCounts {
		if d == 0 {
			continue
		}
		n := getCount(w.owners, []byte(k)) + d
		switch {
		case n < 0:
			return fmt.Errorf("owner count %q would be %d; the database is inconsistent", k, n)
		case n == 0:
			if err := w.owners.Delete([]byte(k)); err != nil {
				return err
			}
		default:
			if err := w.owners.Put([]byte(k), binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
				return err
			}
		}
	}
	w.ownerCounts = nil
	return nil
}

// checkAdmission refuses, before any write, n new tasks of owner at
// priority p: high when the config keeps it for others, and more waiting
// tasks than the owner's cap.
func (w *wtx) checkAdmission(owner string, p taskdef.Priority, n int) error {
	s := &w.q.sched
	if p == taskdef.PriorityHigh && s.HighOwners != nil && !slices.Contains(s.HighOwners, owner) {
		return forbiddenf("priority high is kept for the owners listed in %s of the server's config, and %q is not one of them: submit with --priority normal, or ask the server's admin to add the owner", keyHighOwners, owner)
	}
	if max := s.MaxPendingPerOwner; max > 0 {
		waiting := w.ownerCount(owner, sPending) + w.ownerCount(owner, sUnscheduled)
		if waiting+n > max {
			return overLimitf("owner %q has %d tasks waiting to run (pending or unscheduled) and this adds %d: over the limit of %d tasks per owner (%s in the server's config); wait for some to run, cancel a graph, or ask the server's admin to raise it", owner, waiting, n, max, keyMaxPending)
		}
	}
	return nil
}

// claimGroup is one (priority, owner) run of the pending index during a
// claim.
type claimGroup struct {
	prefix []byte
	owner  string
	head   []byte // the oldest key, nil once the run is empty
}

func (g *claimGroup) seek(c *bolt.Cursor) {
	k, _ := c.Seek(g.prefix)
	if k != nil && bytes.HasPrefix(k, g.prefix) {
		g.head = append(g.head[:0], k...)
		return
	}
	g.head = nil
}

// claimGroups lists the runs of the pending index with their oldest keys:
// one seek per (priority, owner).
func claimGroups(c *bolt.Cursor) ([]*claimGroup, error) {
	var gs []*claimGroup
	k, _ := c.First()
	for k != nil {
		n, owner, err := splitPendKey(k)
		if err != nil {
			return nil, err
		}
		g := &claimGroup{prefix: bytes.Clone(k[:n]), owner: owner, head: bytes.Clone(k)}
		gs = append(gs, g)
		// Every key of the run is prefix|time|id with a time below 2^63,
		// so prefix|0xff is past them all and before the next run.
		k, _ = c.Seek(append(bytes.Clone(g.prefix), 0xff))
	}
	return gs, nil
}

// pick chooses the run to claim from next, or nil.
func (q *Queue) pick(gs []*claimGroup, running map[string]int) *claimGroup {
	var best *claimGroup
	for _, g := range gs {
		if g.head == nil {
			continue
		}
		if max := q.sched.MaxRunningPerOwner; max > 0 && running[g.owner] >= max {
			continue
		}
		if best == nil || q.before(g, best, running) {
			best = g
		}
	}
	return best
}

// before says whether run a goes before run b.
func (q *Queue) before(a, b *claimGroup, running map[string]int) bool {
	if a.prefix[0] != b.prefix[0] {
		return a.prefix[0] < b.prefix[0]
	}
	if !q.sched.FIFO && running[a.owner] != running[b.owner] {
		return running[a.owner] < running[b.owner]
	}
	// Oldest first: the scheduled times, then the task ids.
	if c := bytes.Compare(a.head[len(a.prefix):], b.head[len(b.prefix):]); c != 0 {
		return c < 0
	}
	return a.owner < b.owner
}

// OwnerCount is one owner's unresolved tasks by state.
type OwnerCount struct {
	Owner                         string
	Unscheduled, Pending, Running int
}

// Total is the owner's unresolved tasks.
func (o OwnerCount) Total() int { return o.Unscheduled + o.Pending + o.Running }

// OwnerCounts returns every owner with unresolved tasks, the most tasks
// first (then by name), read from the counters transitions keep.
func (q *Queue) OwnerCounts(ctx context.Context) ([]OwnerCount, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	by := map[string]*OwnerCount{}
	err := q.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bOwners).ForEach(func(k, v []byte) error {
			i := bytes.IndexByte(k, 0)
			if i < 0 || len(v) != 8 {
				return fmt.Errorf("owner count %q is malformed; the database is damaged", k)
			}
			owner := string(k[i+1:])
			o := by[owner]
			if o == nil {
				o = &OwnerCount{Owner: owner}
				by[owner] = o
			}
			n := int(binary.BigEndian.Uint64(v))
			switch taskdef.TaskState(k[:i]) {
			case sUnscheduled:
				o.Unscheduled = n
			case sPending:
				o.Pending = n
			case sRunning:
				o.Running = n
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("owner counts: %w", err)
	}
	out := make([]OwnerCount, 0, len(by))
	for _, o := range by {
		out = append(out, *o)
	}
	slices.SortFunc(out, func(a, b OwnerCount) int {
		if a.Total() != b.Total() {
			return b.Total() - a.Total()
		}
		return bytes.Compare([]byte(a.Owner), []byte(b.Owner))
	})
	return out, nil
}

// ClaimObserver is told, after a claim commits, each claimed run's
// priority and how long it waited pending (scheduled to claimed).
type ClaimObserver func(p taskdef.Priority, wait time.Duration)

// ObserveClaims sets the claim observer (the server's claim-wait
// histogram); nil removes it.
func (q *Queue) ObserveClaims(f ClaimObserver) {
	if f == nil {
		q.claimObs.Store(nil)
		return
	}
	q.claimObs.Store(&f)
}

// migratePending turns a schema-1 file's pending index (be64(scheduled) |
// taskID, oldest first) into the prioritised, per-owner one and counts
// every owner's unresolved tasks; tasks of schema 1 have no priority, so
// they are normal. It runs once, in the transaction that opens the file
// read-write, and leaves schema 2.
func migratePending(tx *bolt.Tx) error {
	old := tx.Bucket(bPendingV1)
	if old == nil {
		return fmt.Errorf("bucket %q is missing; the file is damaged", bPendingV1)
	}
	pq, err := tx.CreateBucketIfNotExists(bPendq)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bPendq, err)
	}
	ob, err := tx.CreateBucketIfNotExists(bOwners)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bOwners, err)
	}
	graphs, tasks := tx.Bucket(bGraphs), tx.Bucket(bTasks)
	owners := map[string]string{} // graph id -> owner
	ownerOf := func(graphID string) (string, error) {
		if o, ok := owners[graphID]; ok {
			return o, nil
		}
		var g graphRec
		ok, err := getGraph(graphs, graphID, &g)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("graph %s of a task is missing; the database is inconsistent", graphID)
		}
		owners[graphID] = g.Owner
		return g.Owner, nil
	}
	err = old.ForEach(func(k, _ []byte) error {
		if len(k) < 9 {
			return fmt.Errorf("pending key %x is too short; the file is damaged", k)
		}
		id := string(k[8:])
		var t taskRec
		ok, err := getTask(tasks, id, &t)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("pending task %s has no record; the file is damaged", id)
		}
		owner, err := ownerOf(t.GraphID)
		if err != nil {
			return err
		}
		return pq.Put(pendKey(t.Priority, owner, keyTime(k), id), nil)
	})
	if err != nil {
		return fmt.Errorf("migrate the pending index: %w", err)
	}
	counts := map[string]int{}
	err = tasks.ForEach(func(k, v []byte) error {
		var t taskRec
		if err := decodeTask(v, &t); err != nil {
			return fmt.Errorf("decode task %s: %w", k, err)
		}
		if t.State.Resolved() {
			return nil
		}
		owner, err := ownerOf(t.GraphID)
		if err != nil {
			return err
		}
		counts[string(ownerKey(t.State, owner))]++
		return nil
	})
	if err != nil {
		return fmt.Errorf("count owners' tasks: %w", err)
	}
	for k, n := range counts {
		if err := ob.Put([]byte(k), binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
			return err
		}
	}
	if err := tx.DeleteBucket(bPendingV1); err != nil {
		return fmt.Errorf("drop the old pending index: %w", err)
	}
	return nil
}

// shownPriority names a stored priority in messages and answers.
func shownPriority(p taskdef.Priority) taskdef.Priority {
	if p == "" {
		return taskdef.PriorityNormal
	}
	return p
}
