package queue

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/clocktest"
	"github.com/af-project/af/internal/taskdef"
	bolt "go.etcd.io/bbolt"
)

// stripTokenHash rewrites a task's record as version 1 (no run token
// hashes), as a database written before run tokens holds it.
func stripTokenHash(t *testing.T, q *Queue, id string) {
	t.Helper()
	err := q.db.Update(func(tx *bolt.Tx) error {
		var rec taskRec
		if _, err := getTask(tx.Bucket(bTasks), id, &rec); err != nil {
			return err
		}
		return tx.Bucket(bTasks).Put([]byte(id), encodeTaskVersion(&rec, taskRecVersionV1))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRunTokenCheck runs every run-scoped call with a missing, a wrong and
// the right run token, and against a run stored before run tokens: only
// the right token acts, and a refused call changes nothing (task, runs,
// graph) and says whose run it is.
func TestRunTokenCheck(t *testing.T) {
	t.Parallel()
	ops := map[string]func(q *Queue, c taskdef.Claim, tok string) error{
		"reclaim": func(q *Queue, c taskdef.Claim, tok string) error {
			_, err := q.Reclaim(bg, c.TaskID, c.RunID, tok, taskdef.Stats{Files: 9})
			return err
		},
		"completed": func(q *Queue, c taskdef.Claim, tok string) error {
			_, err := q.ReportCompleted(bg, c.TaskID, c.RunID, tok, taskdef.ReportRequest{Stats: taskdef.Stats{Files: 9}})
			return err
		},
		"failed": func(q *Queue, c taskdef.Claim, tok string) error {
			_, err := q.ReportFailed(bg, c.TaskID, c.RunID, tok, taskdef.ReportRequest{Message: "forged"})
			return err
		},
		"exception": func(q *Queue, c taskdef.Claim, tok string) error {
			_, err := q.ReportException(bg, c.TaskID, c.RunID, tok, taskdef.ReportRequest{Reason: taskdef.ReasonMalformedPayload, Message: "forged"})
			return err
		},
		"artifact": func(q *Queue, c taskdef.Claim, tok string) error {
			return q.AuthorizeRun(bg, c.TaskID, c.RunID, tok)
		},
	}
	other, _, err := newRunToken()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		token func(c taskdef.Claim) string
		old   bool   // the run was stored without a token hash
		want  string // "" means allowed; else a substring of the refusal
	}{
		{"missing", func(taskdef.Claim) string { return "" }, false, "carried no run token"},
		{"wrong", func(taskdef.Claim) string { return other }, false, "is not that run's"},
		{"right", func(c taskdef.Claim) string { return c.RunToken }, false, ""},
		{"old run, no token", func(taskdef.Claim) string { return "" }, true, "claimed before run tokens existed"},
		{"old run, claim's token", func(c taskdef.Claim) string { return c.RunToken }, true, "claimed before run tokens existed"},
	}
	for opName, op := range ops {
		for _, tc := range cases {
			t.Run(opName+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				q, _ := newQueue(t)
				id := oneTask(t, q, 2)
				c := claimOne(t, q)
				if tc.old {
					stripTokenHash(t, q, id)
				}
				before := mustTask(t, q, id)
				gBefore, err := q.Graph(bg, before.GraphID)
				if err != nil {
					t.Fatal(err)
				}
				err = op(q, c, tc.token(c))
				if tc.want == "" {
					if err != nil {
						t.Fatalf("right token refused: %v", err)
					}
					return
				}
				if !errors.Is(err, ErrNotRunOwner) || !strings.Contains(err.Error(), "belongs to the worker that claimed it (grp/w1)") ||
					!strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want ErrNotRunOwner saying %q", err, tc.want)
				}
				if !refusal(err) {
					t.Errorf("a token refusal must be a refusal (it writes nothing): %v", err)
				}
				if after := mustTask(t, q, id); !reflect.DeepEqual(before, after) {
					t.Errorf("refused call changed the task:\n%+v\n%+v", before, after)
				}
				if gAfter, _ := q.Graph(bg, before.GraphID); !reflect.DeepEqual(gBefore, gAfter) {
					t.Errorf("refused call changed the graph")
				}
			})
		}
	}
}

// TestRunTokenClaims checks the tokens claims hand out: 32 random bytes in
// unpadded base64url, different for every run, and never in a status.
func TestRunTokenClaims(t *testing.T) {
	t.Parallel()
	q, clk := newQueue(t)
	id := oneTask(t, q, 3)
	seen := map[string]bool{}
	for run := 0; run < 3; run++ {
		c := claimOne(t, q)
		b, err := base64.RawURLEncoding.DecodeString(c.RunToken)
		if err != nil || len(b) != 32 {
			t.Fatalf("run %d token %q: %d bytes, %v", run, c.RunToken, len(b), err)
		}
		if seen[c.RunToken] {
			t.Fatalf("run %d token repeats", run)
		}
		seen[c.RunToken] = true
		s := mustTask(t, q, id)
		for _, r := range s.Runs {
			if r.TokenHash != nil {
				t.Fatalf("status run %d carries its token hash", r.RunID)
			}
		}
		js, _ := json.Marshal(s)
		if strings.Contains(string(js), c.RunToken) {
			t.Fatalf("status JSON has the run token: %s", js)
		}
		// A run before this one, now resolved, keeps its own token: its
		// token does not act for the new run.
		clk.Advance(testLease + time.Second)
		if _, err := q.Tick(bg); err != nil {
			t.Fatal(err)
		}
		if _, err := q.ReportCompleted(bg, id, c.RunID, c.RunToken, taskdef.ReportRequest{}); !errors.Is(err, ErrRunNotCurrent) {
			t.Fatalf("expired run's report with its own token: %v, want ErrRunNotCurrent", err)
		}
	}
	// Run 3 is pending; run 2's token does not act for it once claimed.
	c := claimOne(t, q)
	for old := range seen {
		if _, err := q.ReportCompleted(bg, id, c.RunID, old, taskdef.ReportRequest{}); !errors.Is(err, ErrNotRunOwner) {
			t.Fatalf("an earlier run's token reported run %d: %v", c.RunID, err)
		}
	}
	// A repeated report is answered only to the run's own token.
	if _, err := q.ReportCompleted(bg, id, c.RunID, c.RunToken, taskdef.ReportRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.ReportCompleted(bg, id, c.RunID, "", taskdef.ReportRequest{}); !errors.Is(err, ErrNotRunOwner) {
		t.Fatalf("repeated report without the token: %v", err)
	}
	if _, err := q.ReportCompleted(bg, id, c.RunID, c.RunToken, taskdef.ReportRequest{}); err != nil {
		t.Fatalf("repeated report with the token: %v", err)
	}
}

// TestOldRunExpiresAndReruns opens a database written before run tokens
// (a running run whose record has no token hash, rewritten as version 1
// and the file reopened, as an upgrade does): it opens, the run cannot be
// reported, it expires at the end of its lease, and the task's next run
// works with its token.
func TestOldRunExpiresAndReruns(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "queue.db")
	clk := clocktest.New(t0)
	q, err := Open(path, Options{Clock: clk, LeaseDuration: testLease})
	if err != nil {
		t.Fatal(err)
	}
	id := oneTask(t, q, 1)
	c := claimOne(t, q)
	stripTokenHash(t, q, id)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = Open(path, Options{Clock: clk, LeaseDuration: testLease})
	if err != nil {
		t.Fatalf("an old database does not open: %v", err)
	}
	defer q.Close()
	if s := mustTask(t, q, id); s.State != sRunning || s.Runs[0].WorkerID != worker.WorkerID {
		t.Fatalf("old run after reopening: %s %v", s.State, runSummary(s))
	}
	if _, err := q.ReportCompleted(bg, id, c.RunID, c.RunToken, taskdef.ReportRequest{}); !errors.Is(err, ErrNotRunOwner) {
		t.Fatalf("old run reported: %v", err)
	}
	clk.Advance(testLease + time.Second)
	if rep, err := q.Tick(bg); err != nil || rep.ClaimsExpired != 1 || rep.Retried != 1 {
		t.Fatalf("tick: %+v %v", rep, err)
	}
	c2 := claimOne(t, q)
	if c2.RunID != 1 {
		t.Fatalf("claimed run %d", c2.RunID)
	}
	if _, err := q.ReportCompleted(bg, id, c2.RunID, c2.RunToken, taskdef.ReportRequest{}); err != nil {
		t.Fatal(err)
	}
	if s := mustTask(t, q, id); s.State != sCompleted || s.Runs[0].ReasonResolved != taskdef.ReasonClaimExpired {
		t.Fatalf("task %s %v", s.State, runSummary(s))
	}
	checkConsistent(t, q)
}

// TestTaskRecordV1Decodes reads a task record written before run tokens.
func TestTaskRecordV1Decodes(t *testing.T) {
	t.Parallel()
	now := t0
	rec := taskRec{State: sRunning, GraphID: "g", Deadline: t0, Runs: []taskdef.Run{
		{RunID: 0, State: sException, ReasonCreated: "scheduled", Scheduled: &now, TokenHash: hashRunToken("a"), Message: "m"},
		{RunID: 1, State: sRunning, ReasonCreated: "retry", WorkerID: "w", TakenUntil: &now, TokenHash: hashRunToken("b")},
	}}
	var got taskRec
	if err := decodeTask(encodeTaskVersion(&rec, taskRecVersionV1), &got); err != nil {
		t.Fatal(err)
	}
	want := rec
	want.Runs = append([]taskdef.Run(nil), rec.Runs...)
	for i := range want.Runs {
		want.Runs[i].TokenHash = nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("v1 decode:\n%+v\nwant\n%+v", got, want)
	}
	if err := decodeTask(encodeTask(&rec), &got); err != nil || !reflect.DeepEqual(got, rec) {
		t.Fatalf("v2 round trip: %v\n%+v", err, got)
	}
}

// TestReportMessageRedacted stores a report message quoting a presigned
// URL without its query.
func TestReportMessageRedacted(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t)
	id := oneTask(t, q, 0)
	c := claimOne(t, q)
	msg := `upload live.log: Put "http://127.0.0.1:9000/art/x/0/public/logs/live.log?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20300102&X-Amz-Signature=abcdef": connection refused`
	if _, err := q.ReportFailed(bg, id, c.RunID, c.RunToken, taskdef.ReportRequest{Message: msg}); err != nil {
		t.Fatal(err)
	}
	got := mustTask(t, q, id).Runs[0].Message
	want := `upload live.log: Put "http://127.0.0.1:9000/art/x/0/public/logs/live.log": connection refused`
	if got != want {
		t.Fatalf("stored %q, want %q", got, want)
	}
}

// TestAuthorizeRunNeverClaimed refuses artifacts of a run no worker
// claimed (pending, or canceled while pending): it has no owner.
func TestAuthorizeRunNeverClaimed(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t)
	id := oneTask(t, q, 0)
	if err := q.AuthorizeRun(bg, id, 0, ""); !errors.Is(err, ErrRunNotCurrent) || !strings.Contains(err.Error(), "never claimed") {
		t.Fatalf("pending run: %v", err)
	}
	if err := q.AuthorizeRun(bg, id, 1, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing run: %v", err)
	}
	if err := q.AuthorizeRun(bg, "task-none", 0, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing task: %v", err)
	}
}
