package queue

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/af-project/af/internal/taskdef"
	bolt "go.etcd.io/bbolt"
)

// Run tokens. Every holder of the shared work token may call the worker
// routes, so the work token alone cannot tell the worker that claimed a
// run from another one (or from a job that stole the token). A claim
// therefore hands the claiming worker a secret for that run; the queue
// keeps only its SHA-256 (a database copy holds nothing that authorizes),
// and the run-scoped calls (reclaim, reports, artifact creation) must
// present it.

// runTokenBytes is the token's randomness: 256 bits.
const runTokenBytes = 32

// newRunToken returns a fresh run token and its hash.
func newRunToken() (string, []byte, error) {
	var b [runTokenBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, fmt.Errorf("run token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	return tok, hashRunToken(tok), nil
}

func hashRunToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// checkRunToken is the one check of a run-scoped call: token must be the
// token handed out with the claim of run r of task taskID. The comparison
// of the hashes is constant-time. A run stored before run tokens existed
// has no hash and no token matches it: its worker (an old one) cannot
// report it, so it expires at the end of its lease and the task runs
// again, which is the cost of opening an old database.
//
// A run never claimed (pending, or resolved before a claim) has no owner
// and no token; the check leaves it to the caller, which refuses it as not
// running.
func checkRunToken(taskID string, r *taskdef.Run, token string) error {
	if r.Started == nil {
		return nil
	}
	owner := "the worker that claimed it"
	if r.WorkerID != "" {
		owner = fmt.Sprintf("the worker that claimed it (%s/%s)", r.WorkerGroup, r.WorkerID)
	}
	switch {
	case len(r.TokenHash) == 0:
		return notOwner("task %s run %d belongs to %s and was claimed before run tokens existed, so no call may act for it; it expires and the task runs again",
			taskID, r.RunID, owner)
	case token == "":
		return notOwner("task %s run %d belongs to %s; this call carried no run token (the %s header with the runToken of the claim)",
			taskID, r.RunID, owner, taskdef.RunTokenHeader)
	case subtle.ConstantTimeCompare(hashRunToken(token), r.TokenHash) != 1:
		return notOwner("task %s run %d belongs to %s; this call's run token is not that run's",
			taskID, r.RunID, owner)
	}
	return nil
}

// checkRunOf checks token against run runID of t when that run exists. A
// run that does not exist is left to the caller's not-current answer: it
// has no owner to protect.
func checkRunOf(taskID string, t *taskRec, runID int, token string) error {
	if runID < 0 || runID >= len(t.Runs) {
		return nil
	}
	return checkRunToken(taskID, &t.Runs[runID], token)
}

// AuthorizeRun checks that token is the run token of run runID of task
// taskID, for the run-scoped calls outside the queue (artifact creation).
// A missing task or run is ErrNotFound, a wrong token ErrNotRunOwner.
func (q *Queue) AuthorizeRun(ctx context.Context, taskID string, runID int, token string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return q.db.View(func(tx *bolt.Tx) error {
		var t taskRec
		ok, err := getTask(tx.Bucket(bTasks), taskID, &t)
		if err != nil {
			return err
		}
		if !ok {
			return notFoundf("task %s does not exist", taskID)
		}
		if runID < 0 || runID >= len(t.Runs) {
			return notFoundf("task %s has no run %d", taskID, runID)
		}
		r := &t.Runs[runID]
		if r.Started == nil {
			return fmt.Errorf("%w: task %s run %d was never claimed (it is %s), so no worker may create its artifacts",
				ErrRunNotCurrent, taskID, runID, r.State)
		}
		return checkRunToken(taskID, r, token)
	})
}

// notOwnerError is an ErrNotRunOwner whose message says whose run it is
// and what the call lacked, without the sentinel's words repeated.
type notOwnerError struct{ msg string }

func (e *notOwnerError) Error() string        { return e.msg }
func (e *notOwnerError) Is(target error) bool { return target == ErrNotRunOwner }

func notOwner(format string, args ...any) error {
	return &notOwnerError{msg: fmt.Sprintf(format, args...)}
}

// AuthorizeInputRead checks a worker's read of task target's status or
// artifacts for the run it holds: token must be the token of the current,
// running run runID of task reader, and target must be reader itself or
// one of its dependencies (a reducer fetches its mappers' results). This
// is all a worker identity may read: its claims' inputs, not any graph.
// A refusal is ErrNotRunOwner (with why), a missing reader ErrNotFound.
func (q *Queue) AuthorizeInputRead(ctx context.Context, reader string, runID int, token, target string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return q.db.View(func(tx *bolt.Tx) error {
		var t taskRec
		ok, err := getTask(tx.Bucket(bTasks), reader, &t)
		if err != nil {
			return err
		}
		if !ok {
			return notFoundf("task %s does not exist", reader)
		}
		cur := t.current()
		if t.State != sRunning || cur == nil || cur.RunID != runID {
			return notOwner("a worker reads only for a run it holds: task %s run %d is not running", reader, runID)
		}
		if err := checkRunToken(reader, cur, token); err != nil {
			return err
		}
		if target == reader {
			return nil
		}
		var def struct {
			Dependencies []string `json:"dependencies"`
		}
		if err := json.Unmarshal(tx.Bucket(bDefs).Get([]byte(reader)), &def); err != nil {
			return fmt.Errorf("decode task %s: %w", reader, err)
		}
		for _, d := range def.Dependencies {
			if d == target {
				return nil
			}
		}
		return notOwner("task %s is not an input of task %s: a worker reads only its own task and that task's dependencies", target, reader)
	})
}
