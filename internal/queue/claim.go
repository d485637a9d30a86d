package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
	"unicode"

	"github.com/af-project/af/internal/elide"
	"github.com/af-project/af/internal/redact"
	"github.com/af-project/af/internal/taskdef"
	bolt "go.etcd.io/bbolt"
)

// maxClaim bounds the tasks one claim may take.
const maxClaim = 100

// maxMessage bounds the message stored on a run.
const maxMessage = 4096

func checkWorker(req *taskdef.ClaimRequest) error {
	for _, f := range []struct{ name, v string }{{"workerGroup", req.WorkerGroup}, {"workerId", req.WorkerID}} {
		if f.v == "" {
			return invalidf("%s is required", f.name)
		}
		if len(f.v) > 128 {
			return invalidf("%s is longer than 128 bytes", f.name)
		}
		for _, r := range f.v {
			if !unicode.IsPrint(r) {
				return invalidf("%s %q has a non-printable character", f.name, f.v)
			}
		}
	}
	if req.Tasks < 0 {
		return invalidf("tasks %d must not be negative", req.Tasks)
	}
	if req.Tasks == 0 {
		req.Tasks = 1
	}
	if req.Tasks > maxClaim {
		req.Tasks = maxClaim
	}
	return nil
}

// Claim takes up to req.Tasks pending tasks and makes each a running run
// owned by the worker with takenUntil = now + LeaseDuration. Tasks of a
// higher priority go first; within a priority the owner with the fewest
// running tasks (Scheduling.FIFO: any owner), then the oldest task (see
// fair.go); an owner at Scheduling.MaxRunningPerOwner is skipped. It does
// not wait: with nothing claimable it returns an empty slice. Pending
// tasks found past their deadline are resolved instead of handed out.
func (q *Queue) Claim(ctx context.Context, req taskdef.ClaimRequest) ([]taskdef.Claim, error) {
	raw, err := q.ClaimRaw(ctx, req)
	if err != nil {
		return nil, err
	}
	return decodeClaims(raw)
}

func decodeClaims(raw []taskdef.RawClaim) ([]taskdef.Claim, error) {
	claims := make([]taskdef.Claim, len(raw))
	for i, r := range raw {
		claims[i] = taskdef.Claim{TaskID: r.TaskID, RunID: r.RunID, TakenUntil: r.TakenUntil, RunToken: r.RunToken}
		if err := json.Unmarshal(r.Task, &claims[i].Task); err != nil {
			return nil, fmt.Errorf("claim: decode task %s: %w", r.TaskID, err)
		}
	}
	return claims, nil
}

// claimWait is one claimed run's wait, for the observer.
type claimWait struct {
	p    taskdef.Priority
	wait time.Duration
}

// ClaimRaw is Claim that hands out each task definition as the JSON stored
// at creation. The server passes it straight into the claim answer: a
// decode and re-encode of every definition was a tenth of a claim's CPU.
func (q *Queue) ClaimRaw(ctx context.Context, req taskdef.ClaimRequest) ([]taskdef.RawClaim, error) {
	if err := checkWorker(&req); err != nil {
		return nil, err
	}
	// Most claims against an idle queue find nothing: answer those from a
	// read transaction instead of queueing for the writer.
	var any bool
	if err := q.db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bPendq).Cursor().First()
		any = k != nil
		return nil
	}); err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	if !any {
		return []taskdef.RawClaim{}, nil
	}
	var claims []taskdef.RawClaim
	var waits []claimWait
	err := q.write(ctx, func(w *wtx) error {
		claims, waits = claims[:0], waits[:0]
		c := w.pendq.Cursor()
		groups, err := claimGroups(c)
		if err != nil {
			return err
		}
		running := make(map[string]int, len(groups))
		for _, g := range groups {
			if _, ok := running[g.owner]; !ok {
				running[g.owner] = w.ownerCount(g.owner, sRunning)
			}
		}
		for len(claims) < req.Tasks {
			g := q.pick(groups, running)
			if g == nil {
				break
			}
			id := string(g.head[len(g.prefix)+8:])
			var t taskRec
			ok, err := getTask(w.tasks, id, &t)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("pending task %s has no record; the database is inconsistent", id)
			}
			if !w.now.Before(t.Deadline) {
				if err := w.transition(id, &t, move{to: sException, reason: taskdef.ReasonDeadlineExceeded,
					message: "deadline passed before a worker claimed the task"}); err != nil {
					return err
				}
				g.seek(w.pendq.Cursor())
				continue
			}
			// The token is drawn here, and its hash stored by the same
			// transaction that makes the run running: there is no moment
			// when the run runs without an owner's secret.
			tok, hash, err := newRunToken()
			if err != nil {
				return err
			}
			scheduled := *t.current().Scheduled
			if err := w.transition(id, &t, move{to: sRunning, reason: reasonClaimed,
				workerGroup: req.WorkerGroup, workerID: req.WorkerID, tokenHash: hash}); err != nil {
				return err
			}
			running[g.owner]++
			g.seek(w.pendq.Cursor())
			def := w.defs.Get([]byte(id))
			if len(def) == 0 {
				// Only a damaged database lacks one. Hand out null: the
				// worker reports the run malformed-payload, the task ends,
				// and claims of the tasks behind it go on (refusing the
				// claim would refuse every claim from now on).
				q.log.Error("pending task has no definition; the database is damaged", "task", id)
				def = []byte("null")
			}
			cur := t.current()
			// bbolt's bytes live only as long as the transaction.
			raw := append(json.RawMessage(nil), def...)
			claims = append(claims, taskdef.RawClaim{TaskID: id, RunID: cur.RunID, TakenUntil: *cur.TakenUntil, RunToken: tok, Task: raw})
			waits = append(waits, claimWait{p: t.Priority, wait: w.now.Sub(scheduled)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	if claims == nil {
		claims = []taskdef.RawClaim{}
	}
	if len(claims) > 0 {
		q.log.Debug("claimed", "worker", req.WorkerGroup+"/"+req.WorkerID, "tasks", len(claims))
		if f := q.claimObs.Load(); f != nil {
			for _, cw := range waits {
				p := cw.p
				if p == "" {
					p = taskdef.PriorityNormal
				}
				(*f)(p, cw.wait)
			}
		}
	}
	return claims, nil
}

// ClaimWait is claimWork's long-poll: it claims at once if anything is
// pending, otherwise waits until a task becomes pending (creation,
// dependencies, retry, rerun wake it; there is no polling), the wait passes
// (an empty slice, no error) or ctx ends (ctx's error). The wait is real
// time: it bounds an HTTP request, not task state.
func (q *Queue) ClaimWait(ctx context.Context, req taskdef.ClaimRequest, wait time.Duration) ([]taskdef.Claim, error) {
	raw, err := q.ClaimWaitRaw(ctx, req, wait)
	if err != nil {
		return nil, err
	}
	return decodeClaims(raw)
}

// ClaimWaitRaw is ClaimWait with the definitions left as stored JSON (see
// ClaimRaw).
func (q *Queue) ClaimWaitRaw(ctx context.Context, req taskdef.ClaimRequest, wait time.Duration) ([]taskdef.RawClaim, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		// Take the wake channel before looking, so a task made pending
		// between the look and the wait still wakes us.
		ch := q.waitCh()
		claims, err := q.ClaimRaw(ctx, req)
		if err != nil || len(claims) > 0 {
			return claims, err
		}
		select {
		case <-ch:
		case <-timer.C:
			return []taskdef.RawClaim{}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-q.stop:
			return nil, ErrClosed
		}
	}
}

// loadTask reads a task's record; a missing task is ErrNotFound.
func (w *wtx) loadTask(taskID string) (taskRec, error) {
	var t taskRec
	ok, err := getTask(w.tasks, taskID, &t)
	if err == nil && !ok {
		err = notFoundf("task %s does not exist", taskID)
	}
	return t, err
}

// loadRunning finds a task and checks that token is run runID's and that
// runID is its current running run.
func (w *wtx) loadRunning(taskID string, runID int, token string) (taskRec, error) {
	t, err := w.loadTask(taskID)
	if err != nil {
		return t, err
	}
	if err := checkRunOf(taskID, &t, runID, token); err != nil {
		return t, err
	}
	cur := t.current()
	if cur == nil || runID != cur.RunID || cur.State != sRunning {
		return t, runNotCurrent(taskID, runID, &t)
	}
	return t, nil
}

func runNotCurrent(taskID string, runID int, t *taskRec) error {
	if runID < 0 || runID >= len(t.Runs) {
		return fmt.Errorf("%w: task %s has no run %d (it is %s)", ErrRunNotCurrent, taskID, runID, t.State)
	}
	r := t.Runs[runID]
	state := string(r.State)
	if r.ReasonResolved != "" {
		state += "/" + r.ReasonResolved
	}
	return fmt.Errorf("%w: task %s run %d is %s; the task is %s with current run %d",
		ErrRunNotCurrent, taskID, runID, state, t.State, len(t.Runs)-1)
}

// Reclaim renews the lease of the current running run and records its
// progress. token is the run's token from the claim (ErrNotRunOwner
// otherwise). A run that is no longer current gets ErrRunNotCurrent (stop
// working on it); a task past its deadline gets ErrDeadlineExceeded.
func (q *Queue) Reclaim(ctx context.Context, taskID string, runID int, token string, stats taskdef.Stats) (taskdef.ReclaimResponse, error) {
	var until time.Time
	err := q.write(ctx, func(w *wtx) error {
		t, err := w.loadRunning(taskID, runID, token)
		if err != nil {
			return err
		}
		if !w.now.Before(t.Deadline) {
			return fmt.Errorf("%w: task %s deadline %s has passed", ErrDeadlineExceeded, taskID, t.Deadline.Format(time.RFC3339))
		}
		cur := t.current()
		if err := w.running.Delete(timeKey(*cur.TakenUntil, taskID)); err != nil {
			return err
		}
		until = w.now.Add(w.q.lease)
		cur.TakenUntil = tp(until)
		cur.Stats = stats
		if err := w.running.Put(timeKey(until, taskID), nil); err != nil {
			return err
		}
		return putTask(w.tasks, taskID, &t)
	})
	if err != nil {
		return taskdef.ReclaimResponse{}, fmt.Errorf("reclaim task %s run %d: %w", taskID, runID, err)
	}
	return taskdef.ReclaimResponse{TakenUntil: until}, nil
}

// ReportCompleted resolves the current running run completed. Like every
// report, it needs the run's token from the claim (ErrNotRunOwner
// otherwise, and nothing changes).
func (q *Queue) ReportCompleted(ctx context.Context, taskID string, runID int, token string, r taskdef.ReportRequest) (taskdef.ReportResponse, error) {
	return q.report(ctx, taskID, runID, token, sCompleted, taskdef.ReasonCompleted, r)
}

// ReportFailed resolves the current running run failed: the job's own code
// failed, so it is final (no automatic retry).
func (q *Queue) ReportFailed(ctx context.Context, taskID string, runID int, token string, r taskdef.ReportRequest) (taskdef.ReportResponse, error) {
	return q.report(ctx, taskID, runID, token, sFailed, taskdef.ReasonFailed, r)
}

// reportableExceptions are the reasons a worker may report, and whether
// each retries while retries remain.
var reportableExceptions = map[string]bool{
	taskdef.ReasonWorkerShutdown:   true,
	taskdef.ReasonIntermittentTask: true,
	taskdef.ReasonMalformedPayload: false,
	taskdef.ReasonResourceUnavail:  true,
	taskdef.ReasonInternalError:    false,
	taskdef.ReasonSuperseded:       false,
}

// ReportException resolves the current running run exception. Reasons
// worker-shutdown, intermittent-task and resource-unavailable (a fault of
// the worker's host or of a service it needs: S3 after the worker's own
// retries, its disk, a job image it lacks) start a new pending run at once
// while retries remain, which another worker may claim; malformed-payload,
// internal-error and superseded are final.
func (q *Queue) ReportException(ctx context.Context, taskID string, runID int, token string, r taskdef.ReportRequest) (taskdef.ReportResponse, error) {
	if _, ok := reportableExceptions[r.Reason]; !ok {
		return taskdef.ReportResponse{}, invalidf("reason %q is not one a worker may report; use worker-shutdown, intermittent-task, malformed-payload, resource-unavailable, internal-error or superseded", r.Reason)
	}
	return q.report(ctx, taskID, runID, token, sException, r.Reason, r)
}

func (q *Queue) report(ctx context.Context, taskID string, runID int, token string, to taskdef.TaskState, reason string, r taskdef.ReportRequest) (taskdef.ReportResponse, error) {
	// A worker's message may quote an error with a presigned URL in it
	// (an old worker, a job's output): the message is read by anyone who
	// may read the queue and goes into the owner's email, so the query of
	// such a URL is dropped before it is stored.
	// A long one keeps its head and its tail, where a traceback's last
	// frames (the user's file and line) are.
	msg := elide.Middle(redact.Text(r.Message), maxMessage)
	var resp taskdef.ReportResponse
	var hasDeps bool
	err := q.write(ctx, func(w *wtx) error {
		resp = taskdef.ReportResponse{}
		t, err := w.loadTask(taskID)
		if err != nil {
			return err
		}
		hasDeps = t.NumDeps > 0
		// The token first, so that another worker learns nothing of the
		// run, not even whether a repeated report would match.
		if err := checkRunOf(taskID, &t, runID, token); err != nil {
			return err
		}
		cur := t.current()
		if cur == nil || runID != cur.RunID || cur.State != sRunning {
			// A repeated report (the worker retrying after a lost
			// response) finds its run resolved the same way: answer as
			// the first time, without changing anything.
			if runID >= 0 && runID < len(t.Runs) && t.Runs[runID].State == to && t.Runs[runID].ReasonResolved == reason {
				g, err := w.graph(t.GraphID)
				if err != nil || g == nil {
					return fmt.Errorf("graph %s of task %s: missing or unreadable: %v", t.GraphID, taskID, err)
				}
				resp.Status = status(taskID, &t, nil)
				resp.GraphState = g.State
				resp.GraphResolved = g.Resolved != nil && g.ResolvedBy == taskID && g.ResolvedRun == runID
				return nil
			}
			return runNotCurrent(taskID, runID, &t)
		}
		w.actorTask, w.actorRun = taskID, runID
		m := move{to: to, reason: reason, message: msg, stats: &r.Stats}
		if to == sException && retryable[reason] && t.RetriesLeft > 0 {
			m.to = sPending
		}
		if err := w.transition(taskID, &t, m); err != nil {
			return err
		}
		g, err := w.graph(t.GraphID)
		if err != nil || g == nil {
			return fmt.Errorf("graph %s of task %s: missing or unreadable: %v", t.GraphID, taskID, err)
		}
		resp.Status = status(taskID, &t, nil)
		resp.GraphState = g.State
		resp.GraphResolved = w.resolved[t.GraphID]
		return nil
	})
	if err != nil {
		return taskdef.ReportResponse{}, fmt.Errorf("report task %s run %d %s: %w", taskID, runID, to, err)
	}
	if hasDeps {
		// Dependencies live in the definition, read outside the writer.
		if err := q.db.View(func(tx *bolt.Tx) error {
			s, err := readStatus(tx, taskID)
			resp.Status.Dependencies = s.Dependencies
			return err
		}); err != nil {
			return taskdef.ReportResponse{}, fmt.Errorf("report task %s run %d %s: %w", taskID, runID, to, err)
		}
	}
	if resp.GraphResolved {
		q.log.Info("graph resolved", "graph", resp.Status.GraphID, "state", resp.GraphState, "by", taskID)
	}
	return resp, nil
}
