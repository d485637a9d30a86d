package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/testbin"
)

func TestCreateGraphIdempotentAndConflictOverHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)
	g := testGraph(3, e.clock.Now())
	st, err := e.submit.CreateGraph(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	if st.GraphID != g.GraphID || len(st.Tasks) != 4 || st.State != taskdef.GraphRunning {
		t.Fatalf("created %+v", st)
	}
	again, err := e.submit.CreateGraph(ctx, g)
	if err != nil {
		t.Fatalf("second identical create: %v", err)
	}
	if len(again.Tasks) != 4 {
		t.Fatalf("second create answered %d tasks", len(again.Tasks))
	}
	changed := g
	changed.Tasks = append([]taskdef.GraphTask(nil), g.Tasks...)
	changed.Tasks[1].Task.Payload.Image = "af/other-image"
	_, err = e.submit.CreateGraph(ctx, changed)
	var ae *queueclient.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !errors.Is(err, queueclient.ErrConflict) {
		t.Fatalf("different definition: %v, want 409", err)
	}
	if !strings.Contains(ae.Message, "payload.image") || !strings.Contains(ae.Message, "af/other-image") {
		t.Fatalf("409 message %q does not say what differs", ae.Message)
	}

	// One task, by PUT: idempotent too.
	id := taskdef.NewID()
	def := testTask(g.GraphID, "single", e.clock.Now())
	if _, err := e.submit.CreateTask(ctx, id, def); err != nil {
		t.Fatal(err)
	}
	if _, err := e.submit.CreateTask(ctx, id, def); err != nil {
		t.Fatalf("second identical task create: %v", err)
	}
	def.Metadata.Name = "renamed"
	if _, err := e.submit.CreateTask(ctx, id, def); !errors.Is(err, queueclient.ErrConflict) || !strings.Contains(err.Error(), "metadata.name") {
		t.Fatalf("changed task: %v, want a 409 naming metadata.name", err)
	}
	got, err := e.reader.TaskDefinition(ctx, g.Tasks[0].TaskID)
	if err != nil || got.Payload.Image != "af/os-count" {
		t.Fatalf("definition %+v %v", got.Payload, err)
	}
}

func TestRetriesDefaultWhenAbsent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	created := e.clock.Now().Format(time.RFC3339)
	deadline := e.clock.Now().Add(time.Hour).Format(time.RFC3339)
	body := func(retries string) string {
		return `{"graphId":"graph-0001",` + retries + `"created":"` + created + `","deadline":"` + deadline + `",
		"metadata":{"name":"m","owner":"o@example.org"},"payload":{"kind":"mapper","image":"i","maxRunTime":60}}`
	}
	for _, c := range []struct {
		retries string
		want    int
	}{{"", queue.DefaultRetries}, {`"retries":0,`, 0}, {`"retries":2,`, 2}} {
		id := taskdef.NewID()
		status, resp := do(t, e, routeCase{method: "PUT", path: "/api/v1/tasks/" + id, body: body(c.retries)}, submitTok)
		if status != http.StatusOK {
			t.Fatalf("create with %q: %d %s", c.retries, status, resp)
		}
		var st taskdef.TaskStatus
		if err := json.Unmarshal([]byte(resp), &st); err != nil {
			t.Fatal(err)
		}
		if st.RetriesLeft != c.want {
			t.Errorf("retries %q: retriesLeft %d, want %d", c.retries, st.RetriesLeft, c.want)
		}
	}
}

func TestErrorAnswers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	big := `{"graphId":"` + strings.Repeat("x", 2<<20) + `"}`
	g := testGraph(1, e.clock.Now())
	if _, err := e.submit.CreateGraph(ctxT(t), g); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		rc     routeCase
		tok    string
		status int
		code   string
		msg    string
	}{
		{"unknown graph", routeCase{method: "GET", path: "/api/v1/graphs/nosuchgraph"}, readTok, 404, "NotFound", "nosuchgraph"},
		{"unknown task", routeCase{method: "GET", path: "/api/v1/tasks/nosuchtask"}, readTok, 404, "NotFound", "nosuchtask"},
		{"unknown route", routeCase{method: "GET", path: "/api/v1/nothing"}, "", 404, "NotFound", "no route"},
		{"bad json", routeCase{method: "POST", path: "/api/v1/graphs", body: `{"graphId": `}, submitTok, 400, "InvalidRequest", "request body"},
		{"unknown field", routeCase{method: "POST", path: "/api/v1/graphs", body: `{"graphName":"x"}`}, submitTok, 400, "InvalidRequest", "graphName"},
		{"invalid graph", routeCase{method: "POST", path: "/api/v1/graphs", body: `{"graphId":"bad id","tasks":[]}`}, submitTok, 400, "InvalidRequest", "bad id"},
		{"too large", routeCase{method: "POST", path: "/api/v1/claim-work", body: big}, workTok, 413, "TooLarge", "larger than"},
		{"bad run id", routeCase{method: "POST", path: "/api/v1/tasks/abcdefgh/runs/x/completed", body: `{}`}, workTok, 400, "InvalidRequest", "run id"},
		{"bad wait", routeCase{method: "POST", path: "/api/v1/claim-work?wait=soon", body: `{}`}, workTok, 400, "InvalidRequest", "wait"},
		{"exception without reason", routeCase{method: "POST", path: "/api/v1/tasks/abcdefgh/runs/0/exception", body: `{}`}, workTok, 400, "InvalidRequest", "reason"},
		{"no pool key", routeCase{method: "GET", path: "/api/v1/pool-key"}, readTok, 404, "NotFound", "af keygen"},
		{"artifacts off", routeCase{method: "GET", path: "/api/v1/tasks/" + g.Tasks[0].TaskID + "/runs/0/artifacts"}, readTok, 503, "ArtifactsDisabled", "s3.bucket"},
	}
	for _, c := range cases {
		status, body := do(t, e, c.rc, c.tok)
		var eb struct{ Error, Code string }
		if err := json.Unmarshal([]byte(body), &eb); err != nil {
			t.Errorf("%s: body %q is not JSON", c.name, body)
			continue
		}
		if status != c.status || eb.Code != c.code || !strings.Contains(eb.Error, c.msg) {
			t.Errorf("%s: %d %+v, want %d %s containing %q", c.name, status, eb, c.status, c.code, c.msg)
		}
	}
}

func TestWorkerProtocolOverHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{lease: time.Minute})
	ctx := ctxT(t)
	g := testGraph(2, e.clock.Now())
	if _, err := e.submit.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	req := taskdef.ClaimRequest{WorkerGroup: "grp", WorkerID: "w1", Tasks: 10}
	claims, err := e.work.ClaimWork(ctx, req, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(claims) != 2 {
		t.Fatalf("claimed %d tasks, want the 2 mappers", len(claims))
	}
	for _, c := range claims {
		if c.RunID != 0 || !c.TakenUntil.Equal(e.clock.Now().Add(time.Minute)) || c.Task.Payload.Kind != taskdef.KindMapper {
			t.Fatalf("claim %+v", c)
		}
	}
	a, b := claims[0], claims[1]
	e.clock.Advance(30 * time.Second)
	rr, err := e.work.Claimed(a).Reclaim(ctx, taskdef.Stats{Files: 1, Bytes: 10})
	if err != nil || !rr.TakenUntil.Equal(e.clock.Now().Add(time.Minute)) {
		t.Fatalf("reclaim: %+v %v", rr, err)
	}
	// b's worker shuts down: retried at once as run 1.
	resp, err := e.work.Claimed(b).ReportException(ctx, taskdef.ReportRequest{Reason: taskdef.ReasonWorkerShutdown})
	if err != nil || resp.Status.State != taskdef.StatePending || len(resp.Status.Runs) != 2 {
		t.Fatalf("worker-shutdown: %+v %v", resp.Status, err)
	}
	// A late report from the superseded run is refused with 409.
	_, err = e.work.Claimed(b).ReportCompleted(ctx, taskdef.ReportRequest{})
	var ae *queueclient.APIError
	if !errors.As(err, &ae) || ae.Status != 409 || ae.Code != "RunNotCurrent" {
		t.Fatalf("late report: %v, want 409 RunNotCurrent", err)
	}
	c2, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "grp", WorkerID: "w2", Tasks: 1}, 0)
	if err != nil || len(c2) != 1 || c2[0].TaskID != b.TaskID || c2[0].RunID != 1 {
		t.Fatalf("reclaim after retry: %+v %v", c2, err)
	}
	if _, err := e.work.Claimed(a).ReportCompleted(ctx, taskdef.ReportRequest{Stats: taskdef.Stats{Files: 1}}); err != nil {
		t.Fatal(err)
	}
	// A repeated report (the answer was lost) gets the same answer.
	if _, err := e.work.Claimed(a).ReportCompleted(ctx, taskdef.ReportRequest{Stats: taskdef.Stats{Files: 1}}); err != nil {
		t.Fatalf("repeated report: %v", err)
	}
	if _, err := e.work.Claimed(c2[0]).ReportCompleted(ctx, taskdef.ReportRequest{}); err != nil {
		t.Fatal(err)
	}
	// Now the reducer is pending; the long-poll returns it.
	rc, err := e.work.ClaimWork(ctx, req, 5*time.Second)
	if err != nil || len(rc) != 1 || rc[0].Task.Payload.Kind != taskdef.KindReducer {
		t.Fatalf("reducer claim: %+v %v", rc, err)
	}
	fin, err := e.work.Claimed(rc[0]).ReportCompleted(ctx, taskdef.ReportRequest{})
	if err != nil || !fin.GraphResolved || fin.GraphState != taskdef.GraphCompleted {
		t.Fatalf("final report: %+v %v", fin, err)
	}
	gs, err := e.reader.Graph(ctx, g.GraphID)
	if err != nil || gs.State != taskdef.GraphCompleted {
		t.Fatalf("graph %s %v", gs.State, err)
	}
	list, err := e.reader.Graphs(ctx, 10)
	if err != nil || len(list) != 1 || list[0].GraphID != g.GraphID || list[0].Counts[taskdef.StateCompleted] != 3 {
		t.Fatalf("graph list %+v %v", list, err)
	}
}

func TestLongPollWakesOnNewWork(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)
	got := make(chan []taskdef.Claim, 1)
	go func() {
		c, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 1}, 20*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	// Wait until the long-poll is in the server before creating work.
	waitFor(t, func() bool { return strings.Contains(e.srv.metricsText(t), `af_inflight_claims 1`) })
	start := time.Now()
	if _, err := e.submit.CreateGraph(ctx, testGraph(1, e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-got:
		if len(c) != 1 {
			t.Fatalf("long-poll returned %d tasks", len(c))
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("long-poll took %v to wake", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("long-poll never returned")
	}
}

func TestCancelAndRerunOverHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)
	g := testGraph(2, e.clock.Now())
	if _, err := e.submit.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	st, err := e.submit.CancelGraph(ctx, g.GraphID)
	if err != nil || st.State != taskdef.GraphCanceled {
		t.Fatalf("cancel: %s %v", st.State, err)
	}
	for _, ts := range st.Tasks {
		if ts.State != taskdef.StateException {
			t.Fatalf("task %s is %s after cancel", ts.TaskID, ts.State)
		}
	}
	if _, err := e.submit.Rerun(ctx, "nosuchtask"); !errors.Is(err, queueclient.ErrNotFound) {
		t.Fatalf("rerun unknown: %v", err)
	}
	if _, err := e.submit.CancelGraph(ctx, "nosuchgraph"); !errors.Is(err, queueclient.ErrNotFound) {
		t.Fatalf("cancel unknown: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)
	if _, err := e.submit.CreateGraph(ctx, testGraph(3, e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	claims, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 2}, 0)
	if err != nil || len(claims) != 2 {
		t.Fatalf("claim %d %v", len(claims), err)
	}
	if _, err := e.work.Claimed(claims[0]).ReportCompleted(ctx, taskdef.ReportRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.work.Claimed(claims[1]).ReportFailed(ctx, taskdef.ReportRequest{Message: "exit 1"}); err != nil {
		t.Fatal(err)
	}
	e.work.Claimed(claims[1]).ReportCompleted(ctx, taskdef.ReportRequest{}) // 409
	text := e.srv.metricsText(t)
	for _, want := range []string{
		`af_tasks{state="completed"} 1`,
		`af_tasks{state="failed"} 1`,
		`af_tasks{state="pending"} 1`,
		`af_tasks{state="unscheduled"} 0`,
		`af_claims_total 2`,
		`af_reports_total{outcome="completed",result="ok"} 1`,
		`af_reports_total{outcome="failed",result="ok"} 1`,
		`af_reports_total{outcome="completed",result="conflict"} 1`,
		`af_http_request_duration_seconds_count{code="200",route="POST /api/v1/claim-work"} 1`,
		`af_http_request_duration_seconds_count{code="409",route="POST /api/v1/tasks/{id}/runs/{run}/completed"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", text)
	}
}

func TestPoolKeyRoute(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pubPath, keyPath, err := creds.GenerateKeyPair(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	want, err := creds.LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{poolKey: pubPath})
	text, err := e.reader.PoolKey(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	got, err := creds.ParsePublicKey(string(text))
	if err != nil || *got != *want {
		t.Fatalf("served key %q (%v), want %s", text, err, want)
	}
	// Configured with the private key by mistake: refused, and the
	// private key is not served.
	e2 := newEnv(t, envOpts{poolKey: keyPath})
	_, err = e2.reader.PoolKey(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "private key") {
		t.Fatalf("private key served or unexplained: %v", err)
	}
	priv, _ := os.ReadFile(keyPath)
	if strings.Contains(err.Error(), strings.TrimSpace(string(priv))) {
		t.Fatal("error echoes the private key")
	}
}

func TestShutdownEndsLongPollsAndServes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q, err := queue.Open(filepath.Join(dir, "queue.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	cfg := Config{Data: dir, Tokens: []Token{{Name: "w", Role: RoleWork, Token: workTok}}}
	if err := cfg.Normalize("cfg"); err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, Deps{Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	c := queueclient.New("http://"+ln.Addr().String(), workTok, queueclient.WithRetries(1))
	polled := make(chan error, 1)
	go func() {
		claims, err := c.ClaimWork(context.Background(), taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w"}, 20*time.Second)
		if err == nil && len(claims) != 0 {
			err = errors.New("claimed from an empty queue")
		}
		polled <- err
	}()
	waitFor(t, func() bool { return strings.Contains(srv.metricsText(t), `af_inflight_claims 1`) })
	start := time.Now()
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if err := <-polled; err != nil {
		t.Fatalf("long-poll at shutdown: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %v with a long-poll open", d)
	}
	if _, err := c.Graphs(context.Background(), 1); !errors.Is(err, queueclient.ErrUnreachable) {
		t.Fatalf("after shutdown: %v, want unreachable", err)
	}
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMonitorPagesMounted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	g := testGraph(1, e.clock.Now())
	if _, err := e.submit.CreateGraph(ctxT(t), g); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/graphs", "/graphs/" + g.GraphID} {
		status, body := do(t, e, routeCase{method: "GET", path: p}, readTok)
		if status != http.StatusOK || !strings.Contains(body, "<html") {
			t.Fatalf("GET %s: %d %.200s", p, status, body)
		}
		if p != "/graphs" && !strings.Contains(body, g.GraphID) {
			t.Fatalf("graph page does not name its graph")
		}
	}
	status, _ := do(t, e, routeCase{method: "GET", path: "/"}, "")
	if status != http.StatusFound {
		t.Fatalf("GET / = %d, want a redirect to /graphs", status)
	}
}

// TestClientReusesConnections: a worker's calls ride one kept-alive
// connection rather than dialling per call (a connection per request
// would cost more CPU than the queue itself).
func TestClientReusesConnections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	var conns atomic.Int64
	hs := httptest.NewUnstartedServer(e.srv.Handler())
	hs.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	hs.Start()
	defer hs.Close()
	ctx := ctxT(t)
	sub := queueclient.New(hs.URL, submitTok)
	work := queueclient.New(hs.URL, workTok)
	g := testGraph(150, e.clock.Now())
	if _, err := sub.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	for range 150 {
		cl, err := work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 1}, 0)
		if err != nil || len(cl) != 1 {
			t.Fatalf("claim %v %v", cl, err)
		}
		if _, err := work.Claimed(cl[0]).Reclaim(ctx, taskdef.Stats{}); err != nil {
			t.Fatal(err)
		}
		if _, err := work.Claimed(cl[0]).ReportCompleted(ctx, taskdef.ReportRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		// A large (chunked) answer too.
		if _, err := sub.Graph(ctx, g.GraphID); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n > 2 {
		t.Fatalf("%d connections for 456 sequential calls from two clients, want 2", n)
	}
}

func TestRequestLogLevels(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	logs := &testbin.SyncBuffer{}
	srv, err := New(e.cfg, Deps{Queue: e.q, Clock: e.clock,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	ctx := ctxT(t)
	work := queueclient.New(hs.URL, workTok)
	// An idle worker's empty long-poll: debug only.
	if c, err := work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w"}, 0); err != nil || len(c) != 0 {
		t.Fatal(c, err)
	}
	if strings.Contains(logs.String(), "claim-work") {
		t.Fatalf("empty claim logged at info: %s", logs)
	}
	if _, err := queueclient.New(hs.URL, submitTok).CreateGraph(ctx, testGraph(1, e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	c, err := work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w"}, 0)
	if err != nil || len(c) != 1 {
		t.Fatal(c, err)
	}
	if _, err := work.Claimed(c[0]).Reclaim(ctx, taskdef.Stats{}); err != nil {
		t.Fatal(err)
	}
	work.Run(c[0].TaskID, 9, c[0].RunToken).Reclaim(ctx, taskdef.Stats{}) // 409
	text := logs.String()
	for _, want := range []string{`"route":"POST /api/v1/graphs"`, `"route":"POST /api/v1/claim-work","status":200`, `"level":"WARN","msg":"request","method":"POST","path":"/api/v1/tasks/` + c[0].TaskID + `/runs/9/reclaim"`} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %s:\n%s", want, text)
		}
	}
	if strings.Count(text, `/reclaim","route"`) != 1 {
		t.Errorf("a successful reclaim was logged at info:\n%s", text)
	}
}
