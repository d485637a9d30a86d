package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/af-project/af/internal/taskdef"
	bolt "go.etcd.io/bbolt"
)

// TickReport says what one Tick resolved.
type TickReport struct {
	// ClaimsExpired counts runs whose lease passed; Retried those of them
	// that got a new pending run.
	ClaimsExpired int
	Retried       int
	// DeadlinesExceeded counts tasks resolved exception/deadline-exceeded.
	DeadlinesExceeded int
	// ResolvedGraphs are the graphs whose last task this tick resolved; no
	// worker report ended them, so no worker will notify their owners.
	ResolvedGraphs []string
}

// status builds a task's public status; deps is the definition's
// dependency list (nil when not loaded).
func status(id string, t *taskRec, deps []string) taskdef.TaskStatus {
	runs := make([]taskdef.Run, len(t.Runs))
	copy(runs, t.Runs)
	for i := range runs {
		runs[i].TokenHash = nil
	}
	return taskdef.TaskStatus{
		TaskID: id, GraphID: t.GraphID, State: t.State, RetriesLeft: t.RetriesLeft, Runs: runs,
		Deadline: t.Deadline, Expires: t.Expires, Name: t.Name, Kind: t.Kind,
		InputFiles: t.Files, InputBytes: t.Bytes, Dependencies: deps, CreatedBy: t.CreatedBy,
	}
}

// readStatus loads a task's status in a read transaction.
func readStatus(tx *bolt.Tx, id string) (taskdef.TaskStatus, error) {
	var t taskRec
	ok, err := getTask(tx.Bucket(bTasks), id, &t)
	if err != nil {
		return taskdef.TaskStatus{}, err
	}
	if !ok {
		return taskdef.TaskStatus{}, notFoundf("task %s does not exist", id)
	}
	var deps []string
	if t.NumDeps > 0 {
		var def struct {
			Dependencies []string `json:"dependencies"`
		}
		if err := json.Unmarshal(tx.Bucket(bDefs).Get([]byte(id)), &def); err != nil {
			return taskdef.TaskStatus{}, fmt.Errorf("decode task %s: %w", id, err)
		}
		deps = def.Dependencies
	}
	return status(id, &t, deps), nil
}

// Task returns a task's status and run history.
func (q *Queue) Task(ctx context.Context, taskID string) (taskdef.TaskStatus, error) {
	if err := ctx.Err(); err != nil {
		return taskdef.TaskStatus{}, err
	}
	var s taskdef.TaskStatus
	err := q.db.View(func(tx *bolt.Tx) (err error) {
		s, err = readStatus(tx, taskID)
		return err
	})
	return s, err
}

// TaskDefinition returns a task's definition as stored (normalized).
func (q *Queue) TaskDefinition(ctx context.Context, taskID string) (taskdef.Task, error) {
	if err := ctx.Err(); err != nil {
		return taskdef.Task{}, err
	}
	var t taskdef.Task
	err := q.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bDefs).Get([]byte(taskID))
		if raw == nil {
			return notFoundf("task %s does not exist", taskID)
		}
		return json.Unmarshal(raw, &t)
	})
	return t, err
}

// Graph returns a graph and the status of each of its tasks, in task id
// order.
func (q *Queue) Graph(ctx context.Context, graphID string) (taskdef.GraphStatus, error) {
	if err := ctx.Err(); err != nil {
		return taskdef.GraphStatus{}, err
	}
	var gs taskdef.GraphStatus
	err := q.db.View(func(tx *bolt.Tx) error {
		var g graphRec
		if err := viewGraph(tx, graphID, &g); err != nil {
			return err
		}
		gs = taskdef.GraphStatus{
			GraphID: graphID, Name: g.Name, Owner: g.Owner, Priority: shownPriority(g.Priority), State: g.State, Created: g.Created,
			Resolved: g.Resolved, ResultTaskID: g.ResultTaskID, Tasks: make([]taskdef.TaskStatus, 0, g.Tasks),
			CreatedBy: g.CreatedBy, CanceledBy: g.CanceledBy,
		}
		prefix := pairKey(graphID, "")
		c := tx.Bucket(bGraphTask).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			s, err := readStatus(tx, string(k[len(prefix):]))
			if err != nil {
				return err
			}
			gs.Tasks = append(gs.Tasks, s)
		}
		totals := taskdef.TotalsOf(gs.Tasks)
		gs.Totals = &totals
		return nil
	})
	return gs, err
}

// Graphs lists up to limit graphs, newest first (limit <= 0: 100), as
// GET /api/v1/graphs sends them.
func (q *Queue) Graphs(ctx context.Context, limit int) ([]taskdef.GraphSummary, error) {
	return q.GraphsWhere(ctx, limit, nil)
}

// GraphOwner returns a graph's owner without reading its tasks (the
// server's read checks).
func (q *Queue) GraphOwner(ctx context.Context, graphID string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	var owner string
	err := q.db.View(func(tx *bolt.Tx) error {
		var g graphRec
		if err := viewGraph(tx, graphID, &g); err != nil {
			return err
		}
		owner = g.Owner
		return nil
	})
	return owner, err
}

// GraphStates returns the state of each graph in ids that exists, from
// the graph records alone in one read transaction (a graph's status
// would decode every task). Graphs that do not exist are left out.
func (q *Queue) GraphStates(ctx context.Context, ids []string) (map[string]taskdef.GraphState, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make(map[string]taskdef.GraphState, len(ids))
	err := q.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bGraphs)
		for _, id := range ids {
			var g graphRec
			ok, err := getGraph(b, id, &g)
			if err != nil {
				return err
			}
			if ok {
				out[id] = g.State
			}
		}
		return nil
	})
	return out, err
}

// TaskOwner returns the graph and owner of a task.
func (q *Queue) TaskOwner(ctx context.Context, taskID string) (graphID, owner string, err error) {
	if err := ctx.Err(); err != nil {
		return "", "", err
	}
	err = q.db.View(func(tx *bolt.Tx) error {
		var t taskRec
		ok, err := getTask(tx.Bucket(bTasks), taskID, &t)
		if err != nil {
			return err
		}
		if !ok {
			return notFoundf("task %s does not exist", taskID)
		}
		var g graphRec
		if _, err := getGraph(tx.Bucket(bGraphs), t.GraphID, &g); err != nil {
			return err
		}
		graphID, owner = t.GraphID, g.Owner
		return nil
	})
	return graphID, owner, err
}

// GraphsWhere is Graphs keeping only the graphs whose owner keep accepts
// (nil: all); limit counts the kept ones.
func (q *Queue) GraphsWhere(ctx context.Context, limit int, keep func(owner string) bool) ([]taskdef.GraphSummary, error) {
	return q.ListGraphs(ctx, limit, GraphFilter{Keep: keep})
}

// GraphFilter selects graphs for ListGraphs; the zero value keeps all.
type GraphFilter struct {
	// Owner keeps the graphs of this owner only ("": any).
	Owner string
	// Name keeps the graphs whose name contains it, ignoring case ("":
	// any).
	Name string
	// States keeps the graphs in one of these states (empty: any).
	States []taskdef.GraphState
	// Keep, when set, must also accept the graph's owner (the server's
	// read rule).
	Keep func(owner string) bool
}

func (f GraphFilter) match(g *graphRec) bool {
	if f.Owner != "" && g.Owner != f.Owner {
		return false
	}
	if f.Name != "" && !strings.Contains(strings.ToLower(g.Name), strings.ToLower(f.Name)) {
		return false
	}
	if len(f.States) > 0 && !slices.Contains(f.States, g.State) {
		return false
	}
	return f.Keep == nil || f.Keep(g.Owner)
}

// ListGraphs lists up to limit graphs that f keeps, newest first (limit
// <= 0: 100); limit counts the kept ones. It reads graph records only,
// never their tasks.
func (q *Queue) ListGraphs(ctx context.Context, limit int, f GraphFilter) ([]taskdef.GraphSummary, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 100
	}
	out := []taskdef.GraphSummary{}
	err := q.db.View(func(tx *bolt.Tx) error {
		gb := tx.Bucket(bGraphs)
		c := tx.Bucket(bGraphTime).Cursor()
		for k, _ := c.Last(); k != nil && len(out) < limit; k, _ = c.Prev() {
			id := string(k[8:])
			var g graphRec
			ok, err := getGraph(gb, id, &g)
			if err != nil {
				return err
			}
			if !ok || !f.match(&g) {
				continue
			}
			out = append(out, taskdef.GraphSummary{
				GraphID: id, Name: g.Name, Owner: g.Owner, Priority: shownPriority(g.Priority), State: g.State, Created: g.Created,
				Resolved: g.Resolved, Tasks: g.Tasks, Counts: g.Counts,
			})
		}
		return nil
	})
	return out, err
}

// Counts returns how many tasks are in each state, across all graphs.
func (q *Queue) Counts(ctx context.Context) (map[taskdef.TaskState]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make(map[taskdef.TaskState]int, len(allStates))
	err := q.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bCounts)
		for _, s := range allStates {
			n := 0
			if v := b.Get([]byte(s)); len(v) == 8 {
				n = int(int64(binary.BigEndian.Uint64(v)))
			}
			out[s] = n
		}
		return nil
	})
	return out, err
}

// CancelGraph resolves every unresolved task of the graph
// exception/canceled and the graph canceled (taskdef.GraphCanceled). A
// running run is ended too: its worker's next reclaim or report gets
// ErrRunNotCurrent. Canceling a resolved graph changes nothing. A canceled
// graph's tasks cannot be rerun one by one; RerunFailed re-opens it.
func (q *Queue) CancelGraph(ctx context.Context, graphID string) (taskdef.GraphStatus, error) {
	err := q.write(ctx, func(w *wtx) error {
		g, err := w.graph(graphID)
		if err != nil {
			return err
		}
		if g == nil {
			return notFoundf("graph %s does not exist", graphID)
		}
		if err := w.mayChange(graphID, g.Owner); err != nil {
			return err
		}
		if !g.State.Resolved() {
			g.CanceledBy = w.actor.Name
			w.setGraph(graphID, g)
		}
		w.canceling = graphID
		var ids []string
		prefix := pairKey(graphID, "")
		c := w.graphTasks.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			ids = append(ids, string(k[len(prefix):]))
		}
		for _, id := range ids {
			var t taskRec
			if _, err := getTask(w.tasks, id, &t); err != nil {
				return err
			}
			if t.State.Resolved() {
				continue // resolved before, or by a cascade of this cancel
			}
			// No message per task: the graph's state (canceled) says
			// it once, and the run's reason says why this one ended.
			if err := w.transition(id, &t, move{to: sException, reason: taskdef.ReasonCanceled}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return taskdef.GraphStatus{}, fmt.Errorf("cancel graph %s: %w", graphID, err)
	}
	q.log.Info("graph canceled", "graph", graphID)
	return q.Graph(ctx, graphID)
}

// tickChunk bounds the work of one Tick transaction so a backlog after a
// long outage does not make one huge transaction.
const tickChunk = 512

// Tick resolves what time has ended: tasks past their deadline become
// exception/deadline-exceeded (and their all-completed dependents
// dependency-failed), runs whose lease passed become
// exception/claim-expired and retry while retries remain. The server calls
// it on a ticker; tests call it after advancing their clock.
func (q *Queue) Tick(ctx context.Context) (TickReport, error) {
	var total TickReport
	for {
		var rep TickReport
		var n int
		err := q.write(ctx, func(w *wtx) error {
			rep, n = TickReport{}, 0
			var ids []string
			c := w.deadlines.Cursor()
			for k, _ := c.First(); k != nil && len(ids) < tickChunk && !w.now.Before(keyTime(k)); k, _ = c.Next() {
				ids = append(ids, string(k[8:]))
			}
			n += len(ids)
			for _, id := range ids {
				var t taskRec
				if _, err := getTask(w.tasks, id, &t); err != nil {
					return err
				}
				if t.State.Resolved() {
					// A cascade of this tick got there first (and removed
					// the entry); drop any stale one so the loop ends.
					if err := w.deadlines.Delete(timeKey(t.Deadline, id)); err != nil {
						return err
					}
					continue
				}
				if err := w.transition(id, &t, move{to: sException, reason: taskdef.ReasonDeadlineExceeded,
					message: "deadline " + t.Deadline.Format(time.RFC3339) + " passed"}); err != nil {
					return err
				}
				rep.DeadlinesExceeded++
			}
			var keys [][]byte
			c = w.running.Cursor()
			for k, _ := c.First(); k != nil && len(keys) < tickChunk && keyTime(k).Before(w.now); k, _ = c.Next() {
				keys = append(keys, append([]byte(nil), k...))
			}
			n += len(keys)
			for _, k := range keys {
				id := string(k[8:])
				var t taskRec
				if _, err := getTask(w.tasks, id, &t); err != nil {
					return err
				}
				cur := t.current()
				if t.State != sRunning || cur == nil || cur.TakenUntil == nil || !cur.TakenUntil.Equal(keyTime(k)) {
					// Not this task's live lease: a stale entry, dropped
					// so the loop ends.
					if err := w.running.Delete(k); err != nil {
						return err
					}
					continue
				}
				m := move{to: sException, reason: taskdef.ReasonClaimExpired,
					message: fmt.Sprintf("lease expired at %s without a reclaim or report from %s/%s",
						cur.TakenUntil.Format(time.RFC3339), cur.WorkerGroup, cur.WorkerID)}
				if t.RetriesLeft > 0 {
					m.to = sPending
					rep.Retried++
				}
				if err := w.transition(id, &t, m); err != nil {
					return err
				}
				rep.ClaimsExpired++
			}
			for g := range w.resolved {
				rep.ResolvedGraphs = append(rep.ResolvedGraphs, g)
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("tick: %w", err)
		}
		total.ClaimsExpired += rep.ClaimsExpired
		total.Retried += rep.Retried
		total.DeadlinesExceeded += rep.DeadlinesExceeded
		total.ResolvedGraphs = append(total.ResolvedGraphs, rep.ResolvedGraphs...)
		if n < tickChunk {
			break
		}
	}
	if total.ClaimsExpired+total.DeadlinesExceeded > 0 {
		q.log.Info("tick", "claimsExpired", total.ClaimsExpired, "retried", total.Retried,
			"deadlinesExceeded", total.DeadlinesExceeded, "resolvedGraphs", total.ResolvedGraphs)
	}
	return total, nil
}

// Run calls Tick every interval (real time) until ctx ends or the queue is
// closed, logging errors; a tick's work is durable, so an error only delays
// it to the next tick.
func (q *Queue) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-q.stop:
			return
		default:
		}
		if _, err := q.Tick(ctx); err != nil && ctx.Err() == nil {
			q.log.Error("queue tick failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-q.stop:
			return
		case <-t.C:
		}
	}
}

// viewGraph reads a graph's record in a read transaction; a missing graph
// is ErrNotFound.
func viewGraph(tx *bolt.Tx, graphID string, g *graphRec) error {
	ok, err := getGraph(tx.Bucket(bGraphs), graphID, g)
	if err == nil && !ok {
		err = notFoundf("graph %s does not exist", graphID)
	}
	return err
}
