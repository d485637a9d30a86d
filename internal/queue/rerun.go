package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

// Reruns that keep a graph sound. TaskCluster's rerunTask gives one task a
// new run and looks at nothing else; in a MapReduce graph that lets a
// reducer start (or have finished) on a mapper output that is about to be
// replaced. Here a rerun also moves the tasks that depend on the rerun
// task, in the same transaction:
//
//   - a dependent that has not run on the old output (unscheduled, pending,
//     or ended dependency-failed) waits: it is, or goes back to,
//     unscheduled until every dependency completed again;
//   - a dependent that ran on it (completed or failed, or running now: its
//     run ends exception/superseded and its late report is refused) is
//     re-opened as unscheduled and runs again, as a new run, once the new
//     output is there; its own dependents follow the same rules;
//   - a resolved dependent that another dependency failed for good is left
//     as it is: it could not run anyway.
//
// A rerun task whose own dependencies are not all completed (because they
// are rerun with it) waits unscheduled too. Everything is planned first
// from what is stored, so every refusal (not resolved, deadline passed, too
// many runs, canceled graph, a dependency failed for good) comes before the
// first write, as the group commit requires; then the moves are made
// through transition.

// rerunPlan is what one rerun will do.
type rerunPlan struct {
	w *wtx
	// recs caches every task record read, by id.
	recs map[string]*taskRec
	// reopen holds the tasks that are resolved now and will not be after.
	reopen map[string]bool
	// rerun are the tasks asked for, in order; dependents the tasks moved
	// (or left alone) because of them, in the order found.
	rerun, dependents []string
	// action and effect per dependent.
	action map[string]int
	effect map[string]*taskdef.RerunEffect
}

// Actions on a dependent.
const (
	actUncount   = iota // unscheduled: stays, its flags for rerun tasks are cleared
	actSupersede        // pending or running -> unscheduled
	actReopen           // resolved -> unscheduled
	actCandidate        // resolved, not decided yet
	actLeave            // resolved, left as it is
)

func (w *wtx) newRerunPlan() *rerunPlan {
	return &rerunPlan{w: w, recs: map[string]*taskRec{}, reopen: map[string]bool{},
		action: map[string]int{}, effect: map[string]*taskdef.RerunEffect{}}
}

// rec loads a task record once.
func (p *rerunPlan) rec(id string) (*taskRec, error) {
	if t, ok := p.recs[id]; ok {
		return t, nil
	}
	t, err := p.w.loadTask(id)
	if err != nil {
		return nil, err
	}
	p.recs[id] = &t
	return &t, nil
}

// dependencies reads a task's dependency list from its definition.
func (w *wtx) dependencies(id string, t *taskRec) ([]string, error) {
	if t.NumDeps == 0 {
		return nil, nil
	}
	var def struct {
		Dependencies []string `json:"dependencies"`
	}
	if err := json.Unmarshal(w.defs.Get([]byte(id)), &def); err != nil {
		return nil, fmt.Errorf("decode task %s: %w", id, err)
	}
	return def.Dependencies, nil
}

// dependentsOf lists the tasks that depend on id.
func (w *wtx) dependentsOf(id string) []string {
	prefix := pairKey(id, "")
	var out []string
	c := w.deps.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out = append(out, string(k[len(prefix):]))
	}
	return out
}

// unresolvedAfter says whether a task will be unresolved once the plan is
// carried out.
func (p *rerunPlan) unresolvedAfter(id string, t *taskRec) bool {
	return !t.State.Resolved() || p.reopen[id]
}

// blocking returns the first dependency of t (requires all-completed) that
// will stay resolved without completing: t cannot run while it stands.
func (p *rerunPlan) blocking(id string, t *taskRec) (string, taskdef.TaskState, error) {
	if t.Requires == taskdef.RequiresAllResolved {
		return "", "", nil
	}
	deps, err := p.w.dependencies(id, t)
	if err != nil {
		return "", "", err
	}
	for _, d := range deps {
		dt, err := p.rec(d)
		if err != nil {
			return "", "", err
		}
		if !p.unresolvedAfter(d, dt) && dt.State != sCompleted {
			return d, dt.State, nil
		}
	}
	return "", "", nil
}

// waiting counts t's dependencies that will not be satisfied after the
// plan, and sets each (dependency, t) flag to match.
func (p *rerunPlan) waiting(id string, t *taskRec) (int, error) {
	deps, err := p.w.dependencies(id, t)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range deps {
		dt, err := p.rec(d)
		if err != nil {
			return 0, err
		}
		flag := byte(1)
		if p.unresolvedAfter(d, dt) || (dt.State != sCompleted && t.Requires != taskdef.RequiresAllResolved) {
			flag = 0
			n++
		}
		if err := p.w.deps.Put(pairKey(d, id), []byte{flag}); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// canRunAgain refuses a task that may not get another run.
func (p *rerunPlan) canRunAgain(id string, t *taskRec, why string) error {
	if !p.w.now.Before(t.Deadline) {
		return fmt.Errorf("%w: task %s%s: its deadline %s has passed; submit the job again", ErrDeadlineExceeded, id, why, t.Deadline.Format(time.RFC3339))
	}
	if len(t.Runs) >= maxRuns {
		return conflictf("task %s%s: it already has %d runs, the most allowed; submit the job again", id, why, len(t.Runs))
	}
	return nil
}

// add plans a rerun of a resolved task.
func (p *rerunPlan) add(id string) error {
	t, err := p.rec(id)
	if err != nil {
		return err
	}
	if err := p.canRunAgain(id, t, ""); err != nil {
		return err
	}
	p.reopen[id] = true
	p.rerun = append(p.rerun, id)
	return nil
}

// cascade plans what becomes of the dependents of the rerun tasks. It only
// reads; every refusal happens here.
func (p *rerunPlan) cascade() error {
	todo := append([]string(nil), p.rerun...)
	for len(todo) > 0 || p.decide(&todo) {
		src := todo[0]
		todo = todo[1:]
		for _, d := range p.w.dependentsOf(src) {
			if p.reopen[d] {
				continue
			}
			if _, seen := p.action[d]; seen {
				continue
			}
			dt, err := p.rec(d)
			if err != nil {
				return err
			}
			e := &taskdef.RerunEffect{TaskID: d, Name: dt.Name, Kind: dt.Kind, From: dt.State, To: dt.State}
			p.effect[d] = e
			p.dependents = append(p.dependents, d)
			switch dt.State {
			case sUnscheduled:
				p.action[d], e.Effect = actUncount, taskdef.RerunWaits
			case sPending:
				p.action[d], e.Effect, e.To = actSupersede, taskdef.RerunWaits, sUnscheduled
			case sRunning:
				p.action[d], e.Effect, e.To = actSupersede, taskdef.RerunRunsAgain, sUnscheduled
			default:
				p.action[d] = actCandidate
			}
			if p.action[d] == actSupersede {
				if err := p.canRunAgain(d, dt, fmt.Sprintf(" (which depends on %s) would run again", src)); err != nil {
					return err
				}
			}
		}
	}
	for _, d := range p.dependents {
		if p.action[d] == actCandidate {
			p.action[d] = actLeave
		}
	}
	for _, d := range p.dependents {
		if p.action[d] != actLeave {
			continue
		}
		dep, st, err := p.blocking(d, p.recs[d])
		if err != nil {
			return err
		}
		e := p.effect[d]
		e.Effect = taskdef.RerunUnchanged
		e.Message = fmt.Sprintf("dependency %s ended %s; rerun it too", dep, st)
	}
	return nil
}

// decide re-opens the resolved dependents that nothing blocks any more
// (the reopen set only grows, so this reaches a fixpoint), queueing their
// own dependents; it reports whether it found any.
func (p *rerunPlan) decide(todo *[]string) bool {
	found := false
	for _, d := range p.dependents {
		if p.action[d] != actCandidate {
			continue
		}
		dt := p.recs[d]
		dep, _, err := p.blocking(d, dt)
		if err != nil || dep != "" {
			continue // an error shows again when the plan reports it
		}
		if err := p.canRunAgain(d, dt, " would run again"); err != nil {
			continue // refused in apply's check below
		}
		p.action[d] = actReopen
		p.reopen[d] = true
		e := p.effect[d]
		e.To = sUnscheduled
		e.Effect = taskdef.RerunWaits
		if cur := dt.current(); cur != nil && cur.Started != nil {
			e.Effect = taskdef.RerunRunsAgain
		}
		*todo = append(*todo, d)
		found = true
	}
	return found
}

// apply makes the planned moves. It returns the effects on the rerun
// tasks.
func (p *rerunPlan) apply() ([]taskdef.RerunEffect, error) {
	// Refusals first: a dependent that must run again but may not.
	for _, d := range p.dependents {
		if p.action[d] == actLeave {
			if err := p.canRunAgain(d, p.recs[d], " would run again"); err != nil {
				if dep, _, _ := p.blocking(d, p.recs[d]); dep == "" {
					return nil, err
				}
			}
		}
	}
	for _, id := range p.rerun {
		t := p.recs[id]
		if dep, st, err := p.blocking(id, t); err != nil {
			return nil, err
		} else if dep != "" {
			return nil, conflictf("task %s cannot run: its dependency %s ended %s; rerun that one first (af rerun %s), or every failed task of the graph (af rerun %s --failed)", id, dep, st, dep, t.GraphID)
		}
	}
	// Writes.
	out := make([]taskdef.RerunEffect, 0, len(p.rerun))
	for _, id := range p.rerun {
		t := p.recs[id]
		e := taskdef.RerunEffect{TaskID: id, Name: t.Name, Kind: t.Kind, From: t.State, Effect: taskdef.RerunScheduled}
		n, err := p.waiting(id, t)
		if err != nil {
			return nil, err
		}
		m := move{to: sPending, reason: taskdef.ReasonRerun}
		if n > 0 {
			m = move{to: sUnscheduled, reason: taskdef.ReasonRerun, waiting: n}
			e.Message = fmt.Sprintf("waits for %d dependencies that are rerun too", n)
		}
		if err := p.w.transition(id, t, m); err != nil {
			return nil, err
		}
		e.To = t.State
		out = append(out, e)
	}
	for _, d := range p.dependents {
		t := p.recs[d]
		switch p.action[d] {
		case actUncount:
			n, err := p.waiting(d, t)
			if err != nil {
				return nil, err
			}
			t.Waiting = n
			if err := putTask(p.w.tasks, d, t); err != nil {
				return nil, err
			}
		case actSupersede, actReopen:
			n, err := p.waiting(d, t)
			if err != nil {
				return nil, err
			}
			m := move{to: sUnscheduled, reason: taskdef.ReasonRerun, waiting: n}
			if p.action[d] == actSupersede {
				m.reason = taskdef.ReasonSuperseded
				m.message = "superseded: a dependency is being rerun; the task runs again on its new output"
			}
			if err := p.w.transition(d, t, m); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// effects lists what became of the dependents.
func (p *rerunPlan) effects() []taskdef.RerunEffect {
	out := make([]taskdef.RerunEffect, 0, len(p.dependents))
	for _, d := range p.dependents {
		out = append(out, *p.effect[d])
	}
	return out
}

// Rerun gives a resolved task a new run (reasonCreated rerun) with a fresh
// retry budget, as TaskCluster's rerunTask, and keeps its graph sound: the
// tasks that depend on it wait for the new run or run again on its new
// output (see rerun.go), and the graph is running again. A task whose own
// dependencies are being rerun waits for them, unscheduled.
//
// Refused: a task that is still unscheduled, pending or running, or whose
// graph was canceled (ErrConflict: rerun the graph with RerunFailed);
// one past its deadline (ErrDeadlineExceeded) or with too many runs, or
// whose dependent would have to run again and may not; one that depends
// on a task that failed for good (ErrConflict: rerun that first).
func (q *Queue) Rerun(ctx context.Context, taskID string) (taskdef.RerunResponse, error) {
	var deps []taskdef.RerunEffect
	err := q.write(ctx, func(w *wtx) error {
		t, err := w.loadTask(taskID)
		if err != nil {
			return err
		}
		g, err := w.graph(t.GraphID)
		if err != nil {
			return err
		}
		// Whose it is comes before what state it is in: another owner
		// learns nothing of it.
		if g != nil {
			if err := w.mayChange(t.GraphID, g.Owner); err != nil {
				return err
			}
		}
		switch t.State {
		case sUnscheduled:
			return conflictf("task %s is unscheduled: it runs once its dependencies complete; only a resolved task can be rerun", taskID)
		case sPending, sRunning:
			return conflictf("task %s is %s; only a resolved task can be rerun", taskID, t.State)
		}
		if g != nil && g.State == taskdef.GraphCanceled {
			return conflictf("task %s belongs to graph %s, which was canceled: its tasks cannot be rerun one by one; rerun every failed and canceled task with `af rerun %s --failed`, or submit the job again", taskID, t.GraphID, t.GraphID)
		}
		p := w.newRerunPlan()
		if err := p.add(taskID); err != nil {
			return err
		}
		if err := p.cascade(); err != nil {
			return err
		}
		if _, err := p.apply(); err != nil {
			return err
		}
		deps = p.effects()
		return nil
	})
	if err != nil {
		return taskdef.RerunResponse{}, fmt.Errorf("rerun task %s: %w", taskID, err)
	}
	st, err := q.Task(ctx, taskID)
	if err != nil {
		return taskdef.RerunResponse{}, err
	}
	return taskdef.RerunResponse{TaskStatus: st, Dependents: deps}, nil
}

// RerunFailed reruns every failed or exception task of a graph, in one
// transaction, and re-opens the graph: tasks whose dependencies are rerun
// with them wait unscheduled, the others get a pending run, and their
// other dependents follow Rerun's rules. It works on a canceled graph too
// (its canceled tasks are exception): that is how a canceled graph is
// re-opened. A graph with no failed or exception task is refused
// (ErrConflict), as is one whose such task is past its deadline
// (ErrDeadlineExceeded).
func (q *Queue) RerunFailed(ctx context.Context, graphID string) (taskdef.GraphRerunResponse, error) {
	var resp taskdef.GraphRerunResponse
	err := q.write(ctx, func(w *wtx) error {
		resp = taskdef.GraphRerunResponse{}
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
		p := w.newRerunPlan()
		prefix := pairKey(graphID, "")
		c := w.graphTasks.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			id := string(k[len(prefix):])
			t, err := p.rec(id)
			if err != nil {
				return err
			}
			if t.State == sFailed || t.State == sException {
				if err := p.add(id); err != nil {
					return err
				}
			}
		}
		if len(p.rerun) == 0 {
			return conflictf("graph %s is %s and has no failed or exception task to rerun; rerun a single task with `af rerun TASK`", graphID, g.State)
		}
		if err := p.cascade(); err != nil {
			return err
		}
		rerun, err := p.apply()
		if err != nil {
			return err
		}
		resp.Rerun, resp.Dependents = rerun, p.effects()
		return nil
	})
	if err != nil {
		return taskdef.GraphRerunResponse{}, fmt.Errorf("rerun the failed tasks of graph %s: %w", graphID, err)
	}
	gs, err := q.Graph(ctx, graphID)
	if err != nil {
		return taskdef.GraphRerunResponse{}, err
	}
	resp.Graph = gs
	q.log.Info("graph rerun", "graph", graphID, "tasks", len(resp.Rerun), "dependents", len(resp.Dependents))
	return resp, nil
}
