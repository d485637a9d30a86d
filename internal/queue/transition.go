package queue

import (
	"bytes"
	"errors"
	"fmt"

	"time"

	"github.com/af-project/af/internal/taskdef"
)

// Short names for the states, used in the transition table.
const (
	sUnscheduled = taskdef.StateUnscheduled
	sPending     = taskdef.StatePending
	sRunning     = taskdef.StateRunning
	sCompleted   = taskdef.StateCompleted
	sFailed      = taskdef.StateFailed
	sException   = taskdef.StateException
)

// allStates lists every task state, for exhaustive checks.
var allStates = []taskdef.TaskState{sUnscheduled, sPending, sRunning, sCompleted, sFailed, sException}

// reasonClaimed is the (internal) reason of pending -> running.
const reasonClaimed = "claimed"

// edge is a (from, to) pair of task states.
type edge struct{ from, to taskdef.TaskState }

// transitions is the whole task lifecycle: for each allowed edge, the
// reasons that may take it. Reason is the run's reasonResolved when the edge
// resolves or retries the current run, and the new run's reasonCreated
// otherwise (scheduled, rerun). Anything not listed is refused.
//
//   - unscheduled -> pending: every dependency satisfied (or none).
//   - unscheduled|pending -> exception: deadline, cancel; unscheduled also
//     when a dependency failed for good under all-completed.
//   - pending -> running: a worker claimed it.
//   - running -> completed|failed: the worker's report.
//   - running -> exception: the worker's exception report, a lost lease, a
//     deadline, a cancel; the retryable reasons only once no retries are
//     left.
//   - running -> pending: a retryable exception while retries remain; the
//     run ends exception and a new pending run starts.
//   - completed|failed|exception -> pending: rerun.
//   - completed|failed|exception -> unscheduled: rerun of a task that must
//     first wait for a dependency being rerun, or a dependent re-opened
//     because a dependency it consumed is rerun (it runs again on the new
//     output).
//   - pending|running -> unscheduled: superseded, because a dependency is
//     rerun: the current run ends exception/superseded (a running run's
//     late report is refused) and the task waits for the new output.
var transitions = map[edge][]string{
	{sUnscheduled, sPending}:   {taskdef.ReasonScheduled},
	{sUnscheduled, sException}: {taskdef.ReasonDeadlineExceeded, taskdef.ReasonCanceled, taskdef.ReasonDependencyFailed},
	{sPending, sRunning}:       {reasonClaimed},
	{sPending, sException}:     {taskdef.ReasonDeadlineExceeded, taskdef.ReasonCanceled},
	{sRunning, sCompleted}:     {taskdef.ReasonCompleted},
	{sRunning, sFailed}:        {taskdef.ReasonFailed},
	{sRunning, sException}: {
		taskdef.ReasonClaimExpired, taskdef.ReasonWorkerShutdown, taskdef.ReasonIntermittentTask,
		taskdef.ReasonMalformedPayload, taskdef.ReasonResourceUnavail, taskdef.ReasonInternalError,
		taskdef.ReasonSuperseded, taskdef.ReasonDeadlineExceeded, taskdef.ReasonCanceled,
	},
	{sRunning, sPending}:   {taskdef.ReasonClaimExpired, taskdef.ReasonWorkerShutdown, taskdef.ReasonIntermittentTask, taskdef.ReasonResourceUnavail},
	{sCompleted, sPending}: {taskdef.ReasonRerun},
	{sFailed, sPending}:    {taskdef.ReasonRerun},
	{sException, sPending}: {taskdef.ReasonRerun},
	// Reruns that keep a graph sound (rerun.go).
	{sCompleted, sUnscheduled}: {taskdef.ReasonRerun},
	{sFailed, sUnscheduled}:    {taskdef.ReasonRerun},
	{sException, sUnscheduled}: {taskdef.ReasonRerun},
	{sPending, sUnscheduled}:   {taskdef.ReasonSuperseded},
	{sRunning, sUnscheduled}:   {taskdef.ReasonSuperseded},
}

// retryable are the exception reasons that start a new run while retries
// remain: the infrastructure lost the run, not the job.
var retryable = map[string]bool{
	taskdef.ReasonClaimExpired:     true,
	taskdef.ReasonWorkerShutdown:   true,
	taskdef.ReasonIntermittentTask: true,
	// A fault of the worker's host or of a service it needs (S3, its
	// disk, a job image it lacks), reported after the worker's own
	// retries: another run, on another worker or later, may succeed.
	taskdef.ReasonResourceUnavail: true,
}

// errTransition marks a refused transition. Operations check their own
// preconditions first, so reaching it means the stored state and the caller
// disagree: it is not a refusal, and it rolls the transaction back.
var errTransition = errors.New("transition refused")

// checkTransition says whether t may move to `to` for reason.
func checkTransition(t *taskRec, to taskdef.TaskState, reason string) error {
	reasons, ok := transitions[edge{t.State, to}]
	if !ok {
		return fmt.Errorf("%w: %s -> %s is not a transition", errTransition, t.State, to)
	}
	found := false
	for _, r := range reasons {
		if r == reason {
			found = true
			break
		}
	}
	if !found {
		return fmt.Errorf("%w: %s -> %s does not happen for reason %q", errTransition, t.State, to, reason)
	}
	if t.State == sRunning && retryable[reason] {
		if to == sPending && t.RetriesLeft <= 0 {
			return fmt.Errorf("%w: no retries left for %s", errTransition, reason)
		}
		if to == sException && t.RetriesLeft > 0 {
			return fmt.Errorf("%w: %d retries left, %s must retry", errTransition, t.RetriesLeft, reason)
		}
	}
	return nil
}

// move is what a transition needs besides the target state.
type move struct {
	to      taskdef.TaskState
	reason  string
	message string
	// stats, when set, become the current run's stats.
	stats *taskdef.Stats
	// workerGroup and workerID own the run (claims only).
	workerGroup, workerID string
	// tokenHash is the SHA-256 of the run's token (claims only).
	tokenHash []byte
	// waiting is how many dependencies a task moved to unscheduled waits
	// for; the caller has set the dependency flags to match.
	waiting int
	// by is the identity making the change, for the audit trail; empty
	// means the transaction's actor (who asked for the operation: a
	// cascade is made by whoever started it).
	by string
}

// transition is the only code that changes a task's state. It checks the
// edge against the table, then updates the runs, the indexes (pending,
// running, deadlines), the state counts and the graph summary, resolves the
// graph when its last task resolves, and schedules or fails the dependents
// of a task that resolved, all inside the caller's transaction.
func (w *wtx) transition(id string, t *taskRec, m move) error {
	if err := checkTransition(t, m.to, m.reason); err != nil {
		return fmt.Errorf("task %s: %w", id, err)
	}
	from := t.State
	now := w.now
	cur := t.current()
	if m.by == "" {
		m.by = w.actor.Name
	}
	// The pending index and the owners' counts key on the graph's owner.
	g, err := w.graph(t.GraphID)
	if err != nil {
		return err
	}
	if g == nil {
		return fmt.Errorf("graph %s of task %s is missing; the database is inconsistent", t.GraphID, id)
	}
	owner := g.Owner

	// Leave the from-state's index.
	switch from {
	case sPending:
		if err := w.pendq.Delete(pendKey(t.Priority, owner, *cur.Scheduled, id)); err != nil {
			return err
		}
	case sRunning:
		if err := w.running.Delete(timeKey(*cur.TakenUntil, id)); err != nil {
			return err
		}
		if w.q.sched.MaxRunningPerOwner > 0 {
			// The owner may have been at its running cap: its pending
			// tasks may be claimable now, so wake the long-polls.
			w.woke = true
		}
	}

	switch m.to {
	case sPending:
		created := taskdef.ReasonScheduled
		switch {
		case from == sRunning:
			endRun(cur, sException, m, now)
			t.RetriesLeft--
			created = taskdef.ReasonRetry
			if m.reason == taskdef.ReasonIntermittentTask {
				created = taskdef.ReasonTaskRetry
			}
		case from.Resolved():
			// TaskCluster's rerun: a fresh retry budget, and the task is
			// unresolved again until its deadline.
			created = taskdef.ReasonRerun
			t.RetriesLeft = t.Retries
			if err := w.deadlines.Put(timeKey(t.Deadline, id), nil); err != nil {
				return err
			}
		}
		if from == sUnscheduled && len(t.Runs) > 0 {
			// Waited for a rerun dependency after it had run (or been
			// superseded, or rerun itself): this run is a rerun too.
			created = taskdef.ReasonRerun
		}
		t.Runs = append(t.Runs, taskdef.Run{
			RunID: len(t.Runs), State: sPending, ReasonCreated: created, Scheduled: tp(now), CreatedBy: m.by,
		})
		if err := w.pendq.Put(pendKey(t.Priority, owner, now, id), nil); err != nil {
			return err
		}
		w.woke = true
	case sUnscheduled:
		switch {
		case from == sPending || from == sRunning:
			// Superseded: the run ends, it is nobody's fault, so the
			// retry budget stays; a running run's worker learns it at
			// its next reclaim or report (ErrRunNotCurrent).
			endRun(cur, sException, m, now)
		case from.Resolved():
			t.RetriesLeft = t.Retries
			if err := w.deadlines.Put(timeKey(t.Deadline, id), nil); err != nil {
				return err
			}
		}
		t.Waiting = m.waiting
	case sRunning:
		until := now.Add(w.q.lease)
		cur.State = sRunning
		cur.WorkerGroup, cur.WorkerID = m.workerGroup, m.workerID
		cur.ClaimedBy = m.by
		cur.TokenHash = m.tokenHash
		cur.Started, cur.TakenUntil = tp(now), tp(until)
		if err := w.running.Put(timeKey(until, id), nil); err != nil {
			return err
		}
	default: // resolved
		if cur != nil && !cur.State.Resolved() {
			endRun(cur, m.to, m, now)
		} else {
			// An unscheduled task has no run to resolve: like TaskCluster,
			// record one created and resolved by the exception.
			r := taskdef.Run{RunID: len(t.Runs), ReasonCreated: taskdef.ReasonException, Scheduled: tp(now), CreatedBy: m.by}
			endRun(&r, m.to, m, now)
			t.Runs = append(t.Runs, r)
		}
		// The deadline entry stays until Tick passes it (and drops it
		// as stale): deleting it here dirtied one more page of the
		// deadline index per resolution, in a different place for each
		// graph, which made fair shares (completions of several graphs in
		// one commit) cost more than FIFO.
	}
	t.State = m.to
	if err := putTask(w.tasks, id, t); err != nil {
		return err
	}
	w.count(from, -1)
	w.count(m.to, 1)
	w.addOwnerCount(owner, from, -1)
	w.addOwnerCount(owner, m.to, 1)
	if err := w.updateGraph(t.GraphID, from, m.to); err != nil {
		return err
	}
	if m.to.Resolved() {
		return w.propagate(id, m.to)
	}
	return nil
}

// endRun resolves a run.
func endRun(r *taskdef.Run, state taskdef.TaskState, m move, now time.Time) {
	r.State = state
	r.ReasonResolved = m.reason
	r.Resolved = tp(now)
	r.ResolvedBy = m.by
	if m.message != "" {
		r.Message = m.message
	}
	if m.stats != nil {
		r.Stats = *m.stats
	}
}

// updateGraph moves one task of the graph from one state to another,
// resolving the graph when its last unresolved task
// resolves and reopening it when a rerun or new task makes it unresolved.
func (w *wtx) updateGraph(graphID string, from, to taskdef.TaskState) error {
	g, err := w.graph(graphID)
	if err != nil {
		return err
	}
	if g == nil {
		return fmt.Errorf("graph %s of a task is missing; the database is inconsistent", graphID)
	}
	if g.Counts == nil {
		g.Counts = map[taskdef.TaskState]int{}
	}
	g.Counts[from]--
	if g.Counts[from] == 0 {
		delete(g.Counts, from)
	}
	if !from.Resolved() {
		g.Unresolved--
	}
	g.Counts[to]++
	if !to.Resolved() {
		g.Unresolved++
	}
	switch {
	case g.Unresolved == 0 && g.Resolved == nil:
		g.Resolved = tp(w.now)
		g.State = taskdef.GraphFailed
		switch {
		case g.Counts[sCompleted] == g.Tasks:
			g.State = taskdef.GraphCompleted
		case w.canceling == graphID:
			g.State = taskdef.GraphCanceled
		}
		g.ResolvedBy, g.ResolvedRun = w.actorTask, w.actorRun
		if w.resolved == nil {
			w.resolved = map[string]bool{}
		}
		w.resolved[graphID] = true
	case g.Unresolved > 0 && g.Resolved != nil:
		g.Resolved = nil
		g.State = taskdef.GraphRunning
		g.ResolvedBy, g.ResolvedRun = "", 0
		delete(w.resolved, graphID)
	}
	w.setGraph(graphID, g)
	return nil
}

// propagate tells the unscheduled dependents of a task that just resolved:
// each dependency is counted once (the flag in the dependents bucket), so a
// rerun that resolves again does not count twice. Under all-completed a
// dependency that did not complete resolves the dependent
// exception/dependency-failed at once, which cascades further.
func (w *wtx) propagate(id string, to taskdef.TaskState) error {
	prefix := pairKey(id, "")
	var todo []string
	c := w.deps.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(v) == 1 && v[0] == 0 {
			todo = append(todo, string(k[len(prefix):]))
		}
	}
	for _, dep := range todo {
		var dt taskRec
		ok, err := getTask(w.tasks, dep, &dt)
		if err != nil {
			return err
		}
		if !ok || dt.State != sUnscheduled {
			continue
		}
		if err := w.deps.Put(pairKey(id, dep), []byte{1}); err != nil {
			return err
		}
		if dt.GraphID == w.canceling {
			// The whole graph is being canceled: say so, rather than
			// blame (or schedule after) the dependency.
			if err := w.transition(dep, &dt, move{to: sException, reason: taskdef.ReasonCanceled}); err != nil {
				return err
			}
			continue
		}
		if dt.Requires != taskdef.RequiresAllResolved && to != sCompleted {
			err := w.transition(dep, &dt, move{
				to: sException, reason: taskdef.ReasonDependencyFailed,
				message: fmt.Sprintf("dependency %s ended %s", id, to),
			})
			if err != nil {
				return err
			}
			continue
		}
		dt.Waiting--
		if dt.Waiting > 0 {
			if err := putTask(w.tasks, dep, &dt); err != nil {
				return err
			}
			continue
		}
		if err := w.transition(dep, &dt, move{to: sPending, reason: taskdef.ReasonScheduled}); err != nil {
			return err
		}
	}
	return nil
}
