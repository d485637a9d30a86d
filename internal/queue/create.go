package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

// Limits on definitions, so one request cannot make a transaction or a
// status page unbounded.
const (
	maxRetries      = 50
	maxGraphTasks   = 100_000
	maxDependencies = 100_000
	maxRuns         = 100
	// defaultExpiry is TaskCluster's default for a task without expires:
	// one year after created (deterministic, so re-creating stays
	// idempotent).
	defaultExpiry = 365 * 24 * time.Hour
	// maxDeadline bounds how long a task may stay unresolved.
	maxDeadline = 366 * 24 * time.Hour
	// MaxRunTime bounds payload.maxRunTime (seconds): no run outlives the
	// longest deadline, and seconds × time.Second cannot overflow.
	MaxRunTime = int(maxDeadline / time.Second)
	// MaxInputs bounds a task's payload.inputs.
	MaxInputs = 100_000
	// MaxInputSize bounds one input's size: 64 TiB, above any S3 object
	// (5 TiB on AWS), so a size past it is a forged number.
	MaxInputSize int64 = 1 << 46
	// MaxTaskInputBytes bounds the sum of a task's input sizes (1 PiB),
	// so the sums the queue keeps cannot overflow.
	MaxTaskInputBytes int64 = 1 << 50
	// MaxMemoryBytes, MaxCPUs and MaxPids bound payload.limits to what
	// no machine has (64 TiB, 4096 CPUs, Linux's pid_max ceiling): the
	// worker enforces its own, smaller ceilings; these only keep absurd
	// numbers out of the queue.
	MaxMemoryBytes int64 = 1 << 46
	MaxCPUs              = 4096
	MaxPids        int64 = 1 << 22
)

// Times are stored as Unix nanoseconds, which only span 1678..2262: keep
// definitions well inside.
var (
	minTime = time.Date(1971, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// normalize fills the defaults that make two equal definitions byte-equal
// once encoded: requires, expires, UTC times.
func normalize(t *taskdef.Task) {
	if t.Requires == "" {
		t.Requires = taskdef.RequiresAllCompleted
	}
	t.Created = t.Created.UTC()
	t.Deadline = t.Deadline.UTC()
	if t.Expires.IsZero() && !t.Created.IsZero() {
		t.Expires = t.Created.Add(defaultExpiry)
	}
	t.Expires = t.Expires.UTC()
	if len(t.Dependencies) == 0 {
		t.Dependencies = nil
	}
	if len(t.Payload.Env) == 0 {
		t.Payload.Env = nil
	}
	if len(t.Payload.Inputs) == 0 {
		t.Payload.Inputs = nil
	}
	t.Priority = storedPriority(t.Priority)
}

// validateTask checks a normalized definition on its own; where names the
// task in messages. Whether the deadline is still ahead is checked only for
// new tasks, so re-creating an old task stays idempotent.
func validateTask(where string, t *taskdef.Task) error {
	if err := taskdef.ValidID(t.GraphID); err != nil {
		return invalidf("%s: graphId: %v", where, err)
	}
	switch t.Requires {
	case taskdef.RequiresAllCompleted, taskdef.RequiresAllResolved:
	default:
		return invalidf("%s: requires %q must be %q or %q", where, t.Requires, taskdef.RequiresAllCompleted, taskdef.RequiresAllResolved)
	}
	if t.Retries < 0 || t.Retries > maxRetries {
		return invalidf("%s: retries %d must be between 0 and %d", where, t.Retries, maxRetries)
	}
	if t.Created.IsZero() {
		return invalidf("%s: created is required", where)
	}
	if t.Deadline.IsZero() {
		return invalidf("%s: deadline is required", where)
	}
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"created", t.Created}, {"deadline", t.Deadline}, {"expires", t.Expires}} {
		if f.t.Before(minTime) || f.t.After(maxTime) {
			return invalidf("%s: %s %s is outside %d..%d", where, f.name, f.t.Format(time.RFC3339), minTime.Year(), maxTime.Year())
		}
	}
	if t.Deadline.Sub(t.Created) > maxDeadline {
		return invalidf("%s: deadline is %s after created, at most %s", where, t.Deadline.Sub(t.Created), maxDeadline)
	}
	if !t.Deadline.After(t.Created) {
		return invalidf("%s: deadline %s must be after created %s", where, t.Deadline.Format(time.RFC3339), t.Created.Format(time.RFC3339))
	}
	if t.Expires.Before(t.Deadline) {
		return invalidf("%s: expires %s must not be before deadline %s", where, t.Expires.Format(time.RFC3339), t.Deadline.Format(time.RFC3339))
	}
	if strings.TrimSpace(t.Metadata.Name) == "" {
		return invalidf("%s: metadata.name is required", where)
	}
	if strings.TrimSpace(t.Metadata.Owner) == "" {
		return invalidf("%s: metadata.owner is required", where)
	}
	if err := checkPriority(where+": priority", t.Priority); err != nil {
		return err
	}
	switch t.Payload.Kind {
	case taskdef.KindMapper, taskdef.KindReducer:
	default:
		return invalidf("%s: payload.kind %q must be %q or %q", where, t.Payload.Kind, taskdef.KindMapper, taskdef.KindReducer)
	}
	if strings.TrimSpace(t.Payload.Image) == "" {
		return invalidf("%s: payload.image is required", where)
	}
	if t.Payload.MaxRunTime <= 0 || t.Payload.MaxRunTime > MaxRunTime {
		return invalidf("%s: payload.maxRunTime %d must be a positive number of seconds, at most %d (366 days)", where, t.Payload.MaxRunTime, MaxRunTime)
	}
	if l := t.Payload.Limits; l.MemoryBytes < 0 || l.MemoryBytes > MaxMemoryBytes {
		return invalidf("%s: payload.limits.memoryBytes %d must be between 0 (the worker's default) and %d", where, l.MemoryBytes, MaxMemoryBytes)
	}
	// !(a >= b) also catches NaN, which a Go caller can pass.
	if l := t.Payload.Limits; !(l.CPUs >= 0) || l.CPUs > MaxCPUs {
		return invalidf("%s: payload.limits.cpus %g must be between 0 (the worker's default) and %d", where, l.CPUs, MaxCPUs)
	}
	if l := t.Payload.Limits; l.Pids < 0 || l.Pids > MaxPids {
		return invalidf("%s: payload.limits.pids %d must be between 0 (the worker's default) and %d", where, l.Pids, MaxPids)
	}
	if len(t.Payload.Inputs) > MaxInputs {
		return invalidf("%s: payload.inputs: %d files, at most %d per task (split them over more tasks)", where, len(t.Payload.Inputs), MaxInputs)
	}
	var total int64
	for i, in := range t.Payload.Inputs {
		if in.Key == "" {
			return invalidf("%s: payload.inputs[%d].key is empty", where, i)
		}
		if in.Size < 0 || in.Size > MaxInputSize {
			return invalidf("%s: payload.inputs[%d].size %d must be between 0 and %d", where, i, in.Size, MaxInputSize)
		}
		// Both terms are at most 2^50, so the sum cannot overflow.
		if total += in.Size; total > MaxTaskInputBytes {
			return invalidf("%s: payload.inputs: more than %d bytes in one task (split them over more tasks)", where, MaxTaskInputBytes)
		}
	}
	if len(t.Payload.Inputs) > 0 && t.Payload.Bucket == "" {
		return invalidf("%s: payload.bucket is required with payload.inputs", where)
	}
	if len(t.Dependencies) > maxDependencies {
		return invalidf("%s: %d dependencies, at most %d", where, len(t.Dependencies), maxDependencies)
	}
	seen := make(map[string]bool, len(t.Dependencies))
	for _, d := range t.Dependencies {
		if err := taskdef.ValidID(d); err != nil {
			return invalidf("%s: dependencies: %v", where, err)
		}
		if seen[d] {
			return invalidf("%s: dependency %s is listed twice", where, d)
		}
		seen[d] = true
	}
	return nil
}

// diffTasks lists the fields in which two definitions differ, named by
// their JSON paths, e.g. `payload.image ("a" vs "b")`.
func diffTasks(stored, requested []byte) []string {
	var a, b any
	if json.Unmarshal(stored, &a) != nil || json.Unmarshal(requested, &b) != nil {
		return []string{"definition"}
	}
	var out []string
	diffValue("", a, b, &out)
	if len(out) == 0 {
		out = []string{"definition"}
	}
	return out
}

func diffValue(path string, a, b any, out *[]string) {
	name := path
	if name == "" {
		name = "definition"
	}
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := map[string]bool{}
		for k := range av {
			keys[k] = true
		}
		for k := range bv {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			p := k
			if path != "" {
				p = path + "." + k
			}
			diffValue(p, av[k], bv[k], out)
		}
		return
	case []any:
		bv, ok := b.([]any)
		if !ok {
			break
		}
		if len(av) != len(bv) {
			*out = append(*out, fmt.Sprintf("%s (%d items vs %d)", name, len(av), len(bv)))
			return
		}
		for i := range av {
			diffValue(fmt.Sprintf("%s[%d]", path, i), av[i], bv[i], out)
		}
		return
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) {
		*out = append(*out, fmt.Sprintf("%s (%s vs %s)", name, short(ja), short(jb)))
	}
}

func short(b []byte) string {
	if b == nil || string(b) == "null" {
		return "absent"
	}
	const max = 60
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}

// newTask is a validated definition ready to insert: raw is its encoding
// (what the queue stores and hands to workers); def keeps only the fields
// the queue indexes (no payload env or inputs: files and bytes summarise
// those), so a large graph is held once, encoded, while it is created.
type newTask struct {
	id    string
	def   taskdef.Task
	raw   []byte
	files int
	bytes int64
}

// prepare normalizes, validates and encodes a definition.
func prepare(where, id string, t taskdef.Task) (newTask, error) {
	if err := taskdef.ValidID(id); err != nil {
		return newTask{}, invalidf("%s: taskId: %v", where, err)
	}
	normalize(&t)
	if err := validateTask(where, &t); err != nil {
		return newTask{}, err
	}
	for _, d := range t.Dependencies {
		if d == id {
			return newTask{}, invalidf("%s: depends on itself", where)
		}
	}
	raw, err := json.Marshal(&t)
	if err != nil {
		return newTask{}, fmt.Errorf("encode task %s: %w", id, err)
	}
	nt := newTask{id: id, raw: raw, files: len(t.Payload.Inputs)}
	for _, in := range t.Payload.Inputs {
		nt.bytes += in.Size
	}
	t.Payload = taskdef.Payload{Kind: t.Payload.Kind}
	t.Metadata.Description, t.Metadata.Source = "", ""
	nt.def = t
	return nt, nil
}

// CreateGraph creates every task of a graph in one transaction. Creating the
// same graph again with the same tasks returns its status and changes
// nothing; a different definition under an existing graph or task id is a
// *ConflictError listing what differs. Dependencies must be tasks of the
// graph or tasks that already exist; cycles are refused.
func (q *Queue) CreateGraph(ctx context.Context, g taskdef.Graph) (taskdef.GraphStatus, error) {
	b := q.NewGraphBuilder()
	b.SetGraph(g.GraphID, g.Name, g.Owner)
	b.SetPriority(g.Priority)
	for _, gt := range g.Tasks {
		if err := b.Add(gt.TaskID, gt.Task); err != nil {
			return taskdef.GraphStatus{}, err
		}
	}
	return b.Create(ctx)
}

// GraphBuilder creates a graph whose tasks arrive one at a time, as a
// streamed request body decodes them: each task is validated and encoded
// as it comes (in batches, on every CPU), and only its encoding and the
// fields the queue indexes are kept, so the graph is never held decoded and
// encoded at once. Create then works as CreateGraph.
type GraphBuilder struct {
	q                    *Queue
	graphID, name, owner string
	priority             taskdef.Priority
	graphSet             bool
	tasks                []newTask
	index                map[string]int
	batch                []taskdef.GraphTask
	batchAt              int // index of batch[0] in the graph
	err                  error
}

// builderBatch is how many decoded tasks wait before they are encoded
// together: enough to spread over every CPU, few enough to keep decoded
// definitions a small share of the graph.
const builderBatch = 512

// NewGraphBuilder starts a graph; call SetGraph and Add in any order, then
// Create.
func (q *Queue) NewGraphBuilder() *GraphBuilder {
	return &GraphBuilder{q: q, index: map[string]int{}}
}

// SetGraph names the graph. Tasks added before it must carry the graph id
// themselves.
func (b *GraphBuilder) SetGraph(graphID, name, owner string) {
	b.graphID, b.name, b.owner, b.graphSet = graphID, name, owner, true
}

// SetPriority sets the graph's priority (high, normal or low; empty is
// normal). Its tasks take it; one that names another is refused.
func (b *GraphBuilder) SetPriority(p taskdef.Priority) { b.priority = p }

// Add adds the next task. The first invalid task's error is returned (by
// this call or a later one) and kept: the graph cannot be created any more.
func (b *GraphBuilder) Add(taskID string, t taskdef.Task) error {
	if b.err != nil {
		return b.err
	}
	i := len(b.index)
	if i >= maxGraphTasks {
		b.err = invalidf("graph %s: more than %d tasks", b.graphID, maxGraphTasks)
		return b.err
	}
	if j, dup := b.index[taskID]; dup {
		b.err = invalidf("tasks[%d] (%s): taskId appears twice in the graph (also tasks[%d])", i, taskID, j)
		return b.err
	}
	if t.GraphID == "" && !b.graphSet {
		b.err = invalidf("tasks[%d] (%s): no graphId, and the graph's graphId comes after its tasks: send graphId first or set each task's graphId", i, taskID)
		return b.err
	}
	b.index[taskID] = i
	b.batch = append(b.batch, taskdef.GraphTask{TaskID: taskID, Task: t})
	if len(b.batch) >= builderBatch {
		b.err = b.flush()
	}
	return b.err
}

// flush validates and encodes the waiting batch.
func (b *GraphBuilder) flush() error {
	if len(b.batch) == 0 {
		return nil
	}
	tasks, err := prepareAll(b.graphID, b.graphSet, b.batchAt, b.batch)
	clear(b.batch) // drop the decoded definitions now
	b.batchAt += len(b.batch)
	b.batch = b.batch[:0]
	if err != nil {
		return err
	}
	b.tasks = append(b.tasks, tasks...)
	return nil
}

// Create creates the graph in one transaction (see CreateGraph).
func (b *GraphBuilder) Create(ctx context.Context) (taskdef.GraphStatus, error) {
	if b.err != nil {
		return taskdef.GraphStatus{}, b.err
	}
	if err := taskdef.ValidID(b.graphID); err != nil {
		return taskdef.GraphStatus{}, invalidf("graphId: %v", err)
	}
	if err := b.flush(); err != nil {
		b.err = err
		return taskdef.GraphStatus{}, err
	}
	if len(b.tasks) == 0 {
		return taskdef.GraphStatus{}, invalidf("graph %s: tasks: a graph needs at least one task", b.graphID)
	}
	// Tasks added before SetGraph carried their own graph id.
	for i, nt := range b.tasks {
		if nt.def.GraphID != b.graphID {
			return taskdef.GraphStatus{}, invalidf("tasks[%d] (%s): graphId %q differs from the graph's %q", i, nt.id, nt.def.GraphID, b.graphID)
		}
	}
	if err := checkPriority("priority", b.priority); err != nil {
		return taskdef.GraphStatus{}, err
	}
	prio := storedPriority(b.priority)
	for i, nt := range b.tasks {
		if nt.def.Priority != "" && nt.def.Priority != prio {
			return taskdef.GraphStatus{}, invalidf("tasks[%d] (%s): priority %q differs from the graph's %q; leave a task's priority empty to take the graph's", i, nt.id, nt.def.Priority, shownPriority(prio))
		}
	}
	if err := checkCycles(b.tasks, b.index); err != nil {
		return taskdef.GraphStatus{}, err
	}
	g := taskdef.Graph{GraphID: b.graphID, Name: b.name, Owner: b.owner, Priority: prio}
	err := b.q.write(ctx, func(w *wtx) error {
		return w.createGraph(g, b.tasks, b.index)
	})
	if err != nil {
		return taskdef.GraphStatus{}, err
	}
	return b.q.Graph(ctx, b.graphID)
}

// prepareAll prepares a batch of a graph's tasks (batch[0] is the graph's
// task at), encoding large batches on every CPU (encoding is most of a
// large create's CPU outside the transaction). The first error in task
// order wins, so messages do not depend on scheduling.
func prepareAll(graphID string, graphSet bool, at int, batch []taskdef.GraphTask) ([]newTask, error) {
	tasks := make([]newTask, len(batch))
	errs := make([]error, len(batch))
	one := func(i int) {
		gt := batch[i]
		where := fmt.Sprintf("tasks[%d] (%s)", at+i, gt.TaskID)
		t := gt.Task
		switch {
		case t.GraphID == "": // Add made sure the graph's id was known

			t.GraphID = graphID
		case graphSet && t.GraphID != graphID:
			errs[i] = invalidf("%s: graphId %q differs from the graph's %q", where, t.GraphID, graphID)
			return
		}
		tasks[i], errs[i] = prepare(where, gt.TaskID, t)
	}
	workers := runtime.GOMAXPROCS(0)
	if len(tasks) < 256 || workers == 1 {
		for i := range tasks {
			one(i)
		}
	} else {
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := w; i < len(tasks); i += workers {
					one(i)
				}
			}(w)
		}
		wg.Wait()
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return tasks, nil
}

// checkCycles refuses dependency cycles among the graph's own tasks
// (dependencies on existing tasks cannot close a cycle: those never depend
// on tasks that do not exist yet).
func checkCycles(tasks []newTask, index map[string]int) error {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(tasks))
	var stack []int
	var visit func(i int) error
	visit = func(i int) error {
		color[i] = grey
		stack = append(stack, i)
		for _, d := range tasks[i].def.Dependencies {
			j, ok := index[d]
			if !ok {
				continue
			}
			switch color[j] {
			case grey:
				var ids []string
				for k := len(stack) - 1; k >= 0; k-- {
					ids = append(ids, tasks[stack[k]].id)
					if stack[k] == j {
						break
					}
				}
				return invalidf("dependency cycle: %s", strings.Join(ids, " -> "))
			case white:
				if err := visit(j); err != nil {
					return err
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
		return nil
	}
	for i := range tasks {
		if color[i] == white {
			if err := visit(i); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *wtx) createGraph(g taskdef.Graph, tasks []newTask, index map[string]int) error {
	// Read and check everything before the first write (see write).
	existing, err := w.graph(g.GraphID)
	if err != nil {
		return err
	}
	exists := existing != nil
	var diffs []string
	if exists {
		if existing.Name != g.Name {
			diffs = append(diffs, fmt.Sprintf("name (%q vs %q)", existing.Name, g.Name))
		}
		if existing.Owner != g.Owner {
			diffs = append(diffs, fmt.Sprintf("owner (%q vs %q)", existing.Owner, g.Owner))
		}
		if existing.Priority != g.Priority {
			diffs = append(diffs, fmt.Sprintf("priority (%q vs %q)", shownPriority(existing.Priority), shownPriority(g.Priority)))
		}
		if existing.Tasks != len(tasks) {
			diffs = append(diffs, fmt.Sprintf("tasks (%d tasks vs %d)", existing.Tasks, len(tasks)))
		}
	}
	for _, nt := range tasks {
		raw := w.defs.Get([]byte(nt.id))
		if raw == nil {
			if exists && len(diffs) == 0 {
				diffs = append(diffs, fmt.Sprintf("tasks (task %s is not in the stored graph)", nt.id))
			}
			continue
		}
		if !bytes.Equal(raw, nt.raw) {
			for _, d := range diffTasks(raw, nt.raw) {
				diffs = append(diffs, "task "+nt.id+": "+d)
			}
		} else if !exists {
			// An equal task in a graph that does not exist cannot happen:
			// tasks are created with their graph.
			diffs = append(diffs, fmt.Sprintf("task %s exists outside graph %s", nt.id, g.GraphID))
		}
	}
	if len(diffs) > 0 {
		return &ConflictError{What: "graph " + g.GraphID, Diffs: diffs}
	}
	if exists {
		return nil // idempotent: same graph, same tasks
	}
	if err := w.checkAdmission(g.Owner, g.Priority, len(tasks)); err != nil {
		return err
	}
	for _, nt := range tasks {
		if !nt.def.Deadline.After(w.now) {
			return invalidf("task %s: deadline %s is not in the future", nt.id, nt.def.Deadline.Format(time.RFC3339))
		}
		for _, d := range nt.def.Dependencies {
			if _, ok := index[d]; ok {
				continue
			}
			if w.defs.Get([]byte(d)) == nil {
				return invalidf("task %s: dependency %s does not exist (neither in the graph nor created before)", nt.id, d)
			}
			if err := w.mayDependOn(nt.id, d); err != nil {
				return err
			}
		}
	}

	// Writes.
	rec := graphRec{
		Name: g.Name, Owner: g.Owner, Created: w.now, State: taskdef.GraphRunning,
		Tasks: len(tasks), Unresolved: len(tasks), CreatedBy: w.actor.Name, Priority: g.Priority,
		Counts: map[taskdef.TaskState]int{sUnscheduled: len(tasks)},
	}
	for _, nt := range tasks {
		if nt.def.Payload.Kind == taskdef.KindReducer {
			rec.ResultTaskID = nt.id
			break
		}
	}
	w.setGraph(g.GraphID, &rec)
	if err := w.graphTime.Put(timeKey(w.now, g.GraphID), nil); err != nil {
		return err
	}
	w.count(sUnscheduled, len(tasks))
	w.addOwnerCount(g.Owner, sUnscheduled, len(tasks))
	return w.insertTasks(tasks, index, g.Priority)
}

// insertTasks writes new tasks as unscheduled, links them to their
// dependencies, then schedules those whose dependencies are satisfied and
// fails those whose dependency already failed for good. The graph record
// (with the tasks counted unscheduled) must already be written; prio is
// the priority of tasks that name none.
func (w *wtx) insertTasks(tasks []newTask, index map[string]int, prio taskdef.Priority) error {
	recs := make([]taskRec, len(tasks))
	failedDep := make([]string, len(tasks)) // per task: a dependency that already ended badly
	for i, nt := range tasks {
		t := &nt.def
		r := &recs[i]
		*r = taskRec{
			State: sUnscheduled, RetriesLeft: t.Retries, Retries: t.Retries, GraphID: t.GraphID,
			Requires: t.Requires, Deadline: t.Deadline, Expires: t.Expires, Name: t.Metadata.Name,
			Kind: t.Payload.Kind, Files: nt.files, Bytes: nt.bytes, NumDeps: len(t.Dependencies),
			CreatedBy: w.actor.Name,
			Priority:  prio,
		}
		if t.Priority != "" {
			r.Priority = t.Priority
		}
		for _, d := range t.Dependencies {
			flag := byte(0)
			if _, inGraph := index[d]; !inGraph {
				var dr taskRec
				if _, err := getTask(w.tasks, d, &dr); err != nil {
					return err
				}
				switch {
				case dr.State == sCompleted,
					dr.State.Resolved() && t.Requires == taskdef.RequiresAllResolved:
					flag = 1
				case dr.State.Resolved():
					flag = 1
					if failedDep[i] == "" {
						failedDep[i] = fmt.Sprintf("dependency %s ended %s", d, dr.State)
					}
				}
			}
			if flag == 0 {
				r.Waiting++
			}
			if err := w.deps.Put(pairKey(d, nt.id), []byte{flag}); err != nil {
				return err
			}
		}
		if err := w.defs.Put([]byte(nt.id), nt.raw); err != nil {
			return err
		}
		if err := putTask(w.tasks, nt.id, r); err != nil {
			return err
		}
		if err := w.deadlines.Put(timeKey(t.Deadline, nt.id), nil); err != nil {
			return err
		}
		if err := w.graphTasks.Put(pairKey(t.GraphID, nt.id), nil); err != nil {
			return err
		}
		if err := w.noteExpiry(t.GraphID, t.Expires); err != nil {
			return err
		}
	}
	for i, nt := range tasks {
		r := &recs[i]
		// A cascade from an earlier task may already have moved this one.
		if _, err := getTask(w.tasks, nt.id, r); err != nil {
			return err
		}
		if r.State != sUnscheduled {
			continue
		}
		switch {
		case failedDep[i] != "":
			if err := w.transition(nt.id, r, move{to: sException, reason: taskdef.ReasonDependencyFailed, message: failedDep[i]}); err != nil {
				return err
			}
		case r.Waiting == 0:
			if err := w.transition(nt.id, r, move{to: sPending, reason: taskdef.ReasonScheduled}); err != nil {
				return err
			}
		}
	}
	return nil
}

// CreateTask creates one task. Its graph is its GraphID (the task id when
// empty, as TaskCluster's taskGroupId); a graph that does not exist yet is
// created around it, one that exists gets the task added (and runs again if
// it had resolved; a canceled graph refuses it, ErrConflict). Re-creating
// an equal definition returns the status and changes nothing; a different
// one is a *ConflictError.
func (q *Queue) CreateTask(ctx context.Context, taskID string, t taskdef.Task) (taskdef.TaskStatus, error) {
	if t.GraphID == "" {
		t.GraphID = taskID
	}
	nt, err := prepare("task "+taskID, taskID, t)
	if err != nil {
		return taskdef.TaskStatus{}, err
	}
	err = q.write(ctx, func(w *wtx) error {
		if raw := w.defs.Get([]byte(taskID)); raw != nil {
			if bytes.Equal(raw, nt.raw) {
				return nil
			}
			return &ConflictError{What: "task " + taskID, Diffs: diffTasks(raw, nt.raw)}
		}
		if !nt.def.Deadline.After(w.now) {
			return invalidf("task %s: deadline %s is not in the future", taskID, nt.def.Deadline.Format(time.RFC3339))
		}
		for _, d := range nt.def.Dependencies {
			if w.defs.Get([]byte(d)) == nil {
				return invalidf("task %s: dependency %s does not exist; create it first", taskID, d)
			}
			if err := w.mayDependOn(taskID, d); err != nil {
				return err
			}
		}
		g, err := w.graph(nt.def.GraphID)
		if err != nil {
			return err
		}
		newGraph := g == nil
		if !newGraph {
			// Adding a task changes the graph (it re-opens a resolved
			// one and its owner is emailed again): the owner's call.
			if err := w.mayChange(nt.def.GraphID, g.Owner); err != nil {
				return err
			}
		}
		if newGraph {
			g = &graphRec{
				Name: nt.def.Metadata.Name, Owner: nt.def.Metadata.Owner, Created: w.now,
				State: taskdef.GraphRunning, Counts: map[taskdef.TaskState]int{}, CreatedBy: w.actor.Name,
				Priority: nt.def.Priority,
			}
		}
		if g.State == taskdef.GraphCanceled {
			// Adding a task would re-open it one task at a time, as a
			// single rerun would.
			return conflictf("graph %s was canceled: no task can be added to it; re-open it with `af rerun %s --failed`, or submit a new graph", nt.def.GraphID, nt.def.GraphID)
		}
		if !newGraph && nt.def.Priority != "" && nt.def.Priority != g.Priority {
			return invalidf("task %s: priority %q differs from its graph %s's %q; leave a task's priority empty to take the graph's", taskID, nt.def.Priority, nt.def.GraphID, shownPriority(g.Priority))
		}
		prio := g.Priority
		if newGraph {
			prio = nt.def.Priority
		}
		if err := w.checkAdmission(g.Owner, prio, 1); err != nil {
			return err
		}
		if newGraph {
			if err := w.graphTime.Put(timeKey(w.now, nt.def.GraphID), nil); err != nil {
				return err
			}
		}
		if g.Counts == nil {
			g.Counts = map[taskdef.TaskState]int{}
		}
		g.Tasks++
		g.Unresolved++
		g.Counts[sUnscheduled]++
		if g.Resolved != nil {
			g.Resolved, g.State, g.ResolvedBy, g.ResolvedRun = nil, taskdef.GraphRunning, "", 0
		}
		if g.ResultTaskID == "" && nt.def.Payload.Kind == taskdef.KindReducer {
			g.ResultTaskID = taskID
		}
		w.setGraph(nt.def.GraphID, g)
		w.count(sUnscheduled, 1)
		w.addOwnerCount(g.Owner, sUnscheduled, 1)
		return w.insertTasks([]newTask{nt}, map[string]int{taskID: 0}, g.Priority)
	})
	if err != nil {
		return taskdef.TaskStatus{}, err
	}
	return q.Task(ctx, taskID)
}
