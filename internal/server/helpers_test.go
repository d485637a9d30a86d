package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/af-project/af/internal/clocktest"
	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/testbin"
)

func newFakeClock() *clocktest.Fake {
	return clocktest.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
}

// Test tokens, one per role.
var (
	adminTok  = "admin-" + NewToken()
	submitTok = "submit-" + NewToken()
	workTok   = "work-" + NewToken()
	readTok   = "read-" + NewToken()
)

// env is a server over a real bbolt queue on a real loopback listener.
type env struct {
	t      testing.TB
	q      *queue.Queue
	srv    *Server
	http   *httptest.Server
	clock  *clocktest.Fake
	logs   *testbin.SyncBuffer
	cfg    Config
	submit *queueclient.Client
	work   *queueclient.Client
	admin  *queueclient.Client
	// reader has role read: reads every graph (reads need an identity).
	reader *queueclient.Client
	anon   *queueclient.Client
}

type envOpts struct {
	publicReads *bool
	s3          *s3.Client
	bucket      string
	poolKey     string
	realClock   bool
	lease       time.Duration
	// maxGraphBytes is the config's max_graph_bytes (0: the default).
	maxGraphBytes int64
	// config, when set, edits the config before it is normalized.
	config func(*Config)
	// aws mints scheduled runs' credentials (Deps.AWS).
	aws *aws.Config
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, clock: newFakeClock(), logs: &testbin.SyncBuffer{}}
	var clock queue.Clock = e.clock
	if o.realClock {
		clock = queue.SystemClock{}
	}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.cfg = Config{
		Data:        dir,
		PublicReads: o.publicReads,
		Tokens: []Token{
			{Name: "the-admin", Role: RoleAdmin, Token: adminTok},
			{Name: "the-submitter", Role: RoleSubmit, Token: submitTok},
			{Name: "the-worker", Role: RoleWork, Token: workTok},
			{Name: "the-reader", Role: RoleRead, Token: readTok},
		},
		S3:            S3Config{Bucket: o.bucket, Prefix: "art/"},
		PoolKey:       o.poolKey,
		MaxGraphBytes: o.maxGraphBytes,
	}
	if o.config != nil {
		o.config(&e.cfg)
	}
	if err := e.cfg.Normalize("test config"); err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(filepath.Join(dir, "queue.db"), queue.Options{Clock: clock, Logger: logger, LeaseDuration: o.lease, Scheduling: e.cfg.Scheduling()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	e.q = q
	e.srv, err = New(e.cfg, Deps{Queue: q, Logger: logger, Clock: clock, S3: o.s3, AWS: o.aws})
	if err != nil {
		t.Fatal(err)
	}
	e.http = httptest.NewServer(e.srv.Handler())
	t.Cleanup(e.http.Close)
	fast := queueclient.WithBackoff(time.Millisecond, 10*time.Millisecond)
	e.submit = queueclient.New(e.http.URL, submitTok, fast)
	e.work = queueclient.New(e.http.URL, workTok, fast)
	e.admin = queueclient.New(e.http.URL, adminTok, fast)
	e.reader = queueclient.New(e.http.URL, readTok, fast)
	e.anon = queueclient.New(e.http.URL, "", fast)
	return e
}

// testTask is a valid mapper definition.
func testTask(graphID, name string, created time.Time) taskdef.Task {
	return taskdef.Task{
		GraphID:  graphID,
		Retries:  queue.DefaultRetries,
		Created:  created,
		Deadline: created.Add(24 * time.Hour),
		Expires:  created.Add(30 * 24 * time.Hour),
		Metadata: taskdef.Metadata{Name: name, Owner: "owner@example.org"},
		Payload: taskdef.Payload{
			Kind: taskdef.KindMapper, Image: "af/os-count", MaxRunTime: 600, Bucket: "telemetry",
			Inputs: []taskdef.InputFile{{Key: "saved_session/Firefox/release/40.0/20150101.20150102.v2.log." + name + ".lzma", Size: 1234}},
		},
	}
}

// testGraph is n mappers and a reducer depending on them all.
func testGraph(n int, created time.Time) taskdef.Graph {
	gid := taskdef.NewID()
	g := taskdef.Graph{GraphID: gid, Name: "os-count", Owner: "owner@example.org"}
	var deps []string
	for i := range n {
		id := taskdef.NewID()
		deps = append(deps, id)
		g.Tasks = append(g.Tasks, taskdef.GraphTask{TaskID: id, Task: testTask(gid, fmt.Sprintf("mapper-%04d", i), created)})
	}
	red := testTask(gid, "reducer", created)
	red.Dependencies = deps
	red.Payload.Kind = taskdef.KindReducer
	red.Payload.Inputs, red.Payload.Bucket = nil, ""
	g.Tasks = append(g.Tasks, taskdef.GraphTask{TaskID: taskdef.NewID(), Task: red})
	return g
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// metricsText scrapes the server's registry in the text format.
func (s *Server) metricsText(t *testing.T) string {
	t.Helper()
	rec := httptest.NewRecorder()
	s.metrics.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}
