package server

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
)

// TestAnotherWorkerCannotActForARun is attack 5 of issue 11 on the real
// server, queue and MinIO: worker A claims a run; another holder of the
// same work token (with no run token, a forged one, or the token of a run
// of its own) tries to renew A's run, create its artifacts (and so upload
// a forged result) and report it completed, failed or exception. Every try
// gets 403 saying the run belongs to A, and the task, its runs, the graph
// and the artifacts stay as they were; A then finishes normally.
func TestAnotherWorkerCannotActForARun(t *testing.T) {
	t.Parallel()
	m := miniotest.Start(t, "artifacts")
	ctx := ctxT(t)
	e := newEnv(t, envOpts{s3: m.S3, bucket: "artifacts"})
	g := testGraph(2, e.clock.Now())
	if _, err := e.submit.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	workerA := e.work // one holder of the work token
	thief := queueclient.New(e.http.URL, workTok, queueclient.WithBackoff(time.Millisecond, 10*time.Millisecond))
	ca, err := workerA.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "grp", WorkerID: "worker-a", Tasks: 1}, 0)
	if err != nil || len(ca) != 1 {
		t.Fatalf("A's claim: %v %v", ca, err)
	}
	a := ca[0]
	// The thief is a worker too, with a run (and a run token) of its own.
	ct, err := thief.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "grp", WorkerID: "thief", Tasks: 1}, 0)
	if err != nil || len(ct) != 1 {
		t.Fatalf("thief's claim: %v %v", ct, err)
	}
	own := ct[0]
	if a.RunToken == "" || own.RunToken == "" || a.RunToken == own.RunToken {
		t.Fatalf("run tokens %q and %q: want two different tokens", a.RunToken, own.RunToken)
	}
	// A's live log so far: what a forged upload would overwrite.
	logA := []byte("worker A's log\n")
	if err := workerA.Claimed(a).UploadArtifact(ctx, taskdef.LiveLogArtifact, "text/plain", bytes.NewReader(logA), int64(len(logA))); err != nil {
		t.Fatal(err)
	}

	snapshot := func() (string, string, []taskdef.Artifact, []byte) {
		t.Helper()
		ts, err := e.admin.Task(ctx, a.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		gs, err := e.admin.Graph(ctx, g.GraphID)
		if err != nil {
			t.Fatal(err)
		}
		tb, _ := json.Marshal(ts)
		gb, _ := json.Marshal(gs)
		list, err := e.reader.Artifacts(ctx, a.TaskID, a.RunID)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := e.reader.GetArtifact(ctx, a.TaskID, a.RunID, taskdef.LiveLogArtifact)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(rc)
		rc.Close()
		return string(tb), string(gb), list.Artifacts, body
	}
	task0, graph0, arts0, log0 := snapshot()

	var forged [32]byte
	_, _ = rand.Read(forged[:])
	forgedResult := []byte("\"forged\"\t1000000\n")
	tokens := map[string]string{
		"no run token":          "",
		"a forged run token":    base64.RawURLEncoding.EncodeToString(forged[:]),
		"the thief's own run's": own.RunToken,
	}
	for name, tok := range tokens {
		run := thief.Run(a.TaskID, a.RunID, tok)
		attempts := map[string]func() error{
			"reclaim": func() error { _, err := run.Reclaim(ctx, taskdef.Stats{Files: 99}); return err },
			"create artifact": func() error {
				_, err := run.CreateArtifact(ctx, taskdef.ResultArtifact, "text/plain")
				return err
			},
			"upload result": func() error {
				return run.UploadArtifact(ctx, taskdef.ResultArtifact, "text/plain", bytes.NewReader(forgedResult), int64(len(forgedResult)))
			},
			"overwrite live log": func() error {
				return run.UploadArtifact(ctx, taskdef.LiveLogArtifact, "text/plain", strings.NewReader("forged\n"), 7)
			},
			"report completed": func() error {
				_, err := run.ReportCompleted(ctx, taskdef.ReportRequest{Stats: taskdef.Stats{Files: 99, RecordsOut: 1000000}})
				return err
			},
			"report failed": func() error {
				_, err := run.ReportFailed(ctx, taskdef.ReportRequest{Message: "forged failure"})
				return err
			},
			"report exception": func() error {
				_, err := run.ReportException(ctx, taskdef.ReportRequest{Reason: taskdef.ReasonMalformedPayload, Message: "forged"})
				return err
			},
			"report worker-shutdown": func() error {
				_, err := run.ReportException(ctx, taskdef.ReportRequest{Reason: taskdef.ReasonWorkerShutdown})
				return err
			},
		}
		for what, try := range attempts {
			err := try()
			var ae *queueclient.APIError
			if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || ae.Code != "NotRunOwner" ||
				!errors.Is(err, queueclient.ErrForbidden) ||
				!strings.Contains(ae.Message, "belongs to the worker that claimed it (grp/worker-a)") {
				t.Errorf("%s with %s: %v, want 403 NotRunOwner saying the run belongs to grp/worker-a", what, name, err)
			}
		}
	}
	// Nothing changed: not the task, its runs, the graph, nor the run's
	// artifacts.
	task1, graph1, arts1, log1 := snapshot()
	if task1 != task0 {
		t.Errorf("the task changed:\n%s\n%s", task0, task1)
	}
	if graph1 != graph0 {
		t.Errorf("the graph changed:\n%s\n%s", graph0, graph1)
	}
	if !reflect.DeepEqual(arts0, arts1) || !bytes.Equal(log0, log1) || !bytes.Equal(log1, logA) {
		t.Errorf("the artifacts changed: %+v -> %+v, log %q -> %q", arts0, arts1, log0, log1)
	}
	// The thief's own run is unaffected, and its token acts for it alone.
	if _, err := thief.Claimed(own).Reclaim(ctx, taskdef.Stats{}); err != nil {
		t.Fatalf("the thief's own run: %v", err)
	}
	if _, err := thief.Run(own.TaskID, own.RunID, a.RunToken).Reclaim(ctx, taskdef.Stats{}); !errors.Is(err, queueclient.ErrForbidden) {
		t.Errorf("A's token renewed the thief's run: %v", err)
	}

	// A finishes normally, and so does the graph, with A's numbers.
	result := []byte("\"linux\"\t3\n")
	runA := workerA.Claimed(a)
	if _, err := runA.Reclaim(ctx, taskdef.Stats{Files: 1}); err != nil {
		t.Fatal(err)
	}
	if err := runA.UploadArtifact(ctx, taskdef.ResultArtifact, "text/plain", bytes.NewReader(result), int64(len(result))); err != nil {
		t.Fatal(err)
	}
	if _, err := runA.ReportCompleted(ctx, taskdef.ReportRequest{Stats: taskdef.Stats{Files: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := thief.Claimed(own).ReportCompleted(ctx, taskdef.ReportRequest{}); err != nil {
		t.Fatal(err)
	}
	rc, err := workerA.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "grp", WorkerID: "worker-a", Tasks: 1}, 0)
	if err != nil || len(rc) != 1 || rc[0].Task.Payload.Kind != taskdef.KindReducer {
		t.Fatalf("reducer claim: %v %v", rc, err)
	}
	fin, err := workerA.Claimed(rc[0]).ReportCompleted(ctx, taskdef.ReportRequest{})
	if err != nil || !fin.GraphResolved || fin.GraphState != taskdef.GraphCompleted {
		t.Fatalf("final report: %+v %v", fin, err)
	}
	body, err := e.reader.GetArtifact(ctx, a.TaskID, a.RunID, taskdef.ResultArtifact)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(body)
	body.Close()
	if !bytes.Equal(got, result) {
		t.Fatalf("A's result %q, want %q", got, result)
	}
	ts, _ := e.admin.Task(ctx, a.TaskID)
	if r := ts.Runs[0]; r.State != taskdef.StateCompleted || r.WorkerID != "worker-a" || r.Stats.Files != 1 || len(ts.Runs) != 1 {
		t.Fatalf("A's task: %+v", ts.Runs)
	}
}

// TestClaimAnswerCarriesRunTokenOnce checks that the run token reaches the
// claiming worker in the claim answer and nowhere else: not the task's or
// graph's status, not the server's log.
func TestClaimAnswerCarriesRunTokenOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)
	g := testGraph(1, e.clock.Now())
	if _, err := e.submit.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	cl, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "grp", WorkerID: "w"}, 0)
	if err != nil || len(cl) != 1 {
		t.Fatal(err)
	}
	tok := cl[0].RunToken
	if b, err := base64.RawURLEncoding.DecodeString(tok); err != nil || len(b) != 32 {
		t.Fatalf("run token %q: %d bytes, %v", tok, len(b), err)
	}
	if _, err := e.work.Claimed(cl[0]).Reclaim(ctx, taskdef.Stats{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.work.Claimed(cl[0]).ReportCompleted(ctx, taskdef.ReportRequest{}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/v1/tasks/" + cl[0].TaskID, "/api/v1/graphs/" + g.GraphID} {
		_, body := do(t, e, routeCase{method: "GET", path: path}, "")
		if strings.Contains(body, tok) {
			t.Errorf("GET %s shows the run token", path)
		}
	}
	if strings.Contains(e.logs.String(), tok) {
		t.Error("the server's log has the run token")
	}
}

// TestArtifactPutTTL checks the presigned upload URL's life: the config's
// artifact_put_ttl, 15 minutes by default, S3's 7 days at most.
func TestArtifactPutTTL(t *testing.T) {
	t.Parallel()
	c := Config{Tokens: []Token{{Name: "w", Role: RoleWork, Token: workTok}}}
	if err := c.Normalize("test"); err != nil || time.Duration(c.ArtifactPutTTL) != 15*time.Minute {
		t.Fatalf("default artifact_put_ttl %s (%v), want 15m", time.Duration(c.ArtifactPutTTL), err)
	}
	c.ArtifactPutTTL = Duration(8 * 24 * time.Hour)
	if err := c.Normalize("test"); err == nil || !strings.Contains(err.Error(), "artifact_put_ttl") {
		t.Fatalf("8 days: %v, want a refusal naming artifact_put_ttl", err)
	}

	m := miniotest.Start(t, "artifacts")
	ctx := ctxT(t)
	e := newEnv(t, envOpts{s3: m.S3, bucket: "artifacts"})
	if _, err := e.submit.CreateGraph(ctx, testGraph(1, e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	cl, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w"}, 0)
	if err != nil || len(cl) != 1 {
		t.Fatal(err)
	}
	ar, err := e.work.Claimed(cl[0]).CreateArtifact(ctx, taskdef.LiveLogArtifact, "text/plain")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ar.PutURL, "X-Amz-Expires=900&") || !ar.Expires.Equal(e.clock.Now().Add(15*time.Minute)) {
		t.Fatalf("put URL %s expires %s, want 900 s from now", ar.PutURL, ar.Expires)
	}
}

// TestReportMessageScrubbed reports a failure whose message quotes a
// presigned URL: the stored message, as every reader sees it, has the
// URL's host and path only.
func TestReportMessageScrubbed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)
	if _, err := e.submit.CreateGraph(ctx, testGraph(1, e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	cl, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w"}, 0)
	if err != nil || len(cl) != 1 {
		t.Fatal(err)
	}
	msg := `upload: Put "http://s3.example:9000/artifacts/art/x/0/public/result.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2Fx&X-Amz-Signature=ff00": EOF`
	if _, err := e.work.Claimed(cl[0]).ReportFailed(ctx, taskdef.ReportRequest{Message: msg}); err != nil {
		t.Fatal(err)
	}
	_, body := do(t, e, routeCase{method: "GET", path: "/api/v1/tasks/" + cl[0].TaskID}, readTok)
	if strings.Contains(body, "X-Amz") || !strings.Contains(body, `http://s3.example:9000/artifacts/art/x/0/public/result.txt\": EOF`) {
		t.Fatalf("status %s", body)
	}
}
