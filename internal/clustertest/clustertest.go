// Package clustertest starts a whole af installation for integration
// tests, all of it real: MinIO for S3 and STS, the queue server on a
// loopback listener over a bbolt file, an SMTP server (the queue server
// emails owners through it from its outbox), the worker pool's
// key pair, and workers on the machine's Docker engine. Nothing here
// skips: a missing MinIO, Docker engine or job image fails the test with
// the command that fixes it.
package clustertest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/server"
	"github.com/af-project/af/internal/smtptest"
	"github.com/af-project/af/internal/testbin"
	"github.com/af-project/af/internal/worker"
)

// Buckets of every cluster.
const (
	InputBucket    = "telemetry"
	ArtifactBucket = "af-artifacts"
)

// Options tune a cluster.
type Options struct {
	// Lease is the queue's claim lease; short leases make a killed
	// worker's task come back quickly.
	Lease time.Duration
	// ArtifactFront, when set, is given MinIO's endpoint and returns the
	// endpoint presigned artifact URLs name (the server's
	// s3.public_endpoint): a test's proxy in front of MinIO that fails
	// chosen uploads.
	ArtifactFront func(minioEndpoint string) string
}

// Cluster is a running af installation.
type Cluster struct {
	MinIO *miniotest.Server
	Queue *queue.Queue
	// URL is the queue server's base URL.
	URL  string
	SMTP *smtptest.Server
	// Tokens by role.
	SubmitToken, WorkToken, AdminToken string
	Submit, Work                       *queueclient.Client
	Pub                                *creds.PublicKey
	Key                                *creds.PrivateKey
	KeyPath, PubPath                   string
	// Dir is the cluster's private directory.
	Dir string
	// Logs collects every component's log lines.
	Logs *testbin.SyncBuffer
	Log  *slog.Logger

	// What StartServer needs to start the queue server again.
	srvCfg     server.Config
	srvDeps    server.Deps
	lease      time.Duration
	stopServer func()
}

// Start brings up MinIO, SMTP and the queue server.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	dir := t.TempDir()
	c := &Cluster{Dir: dir, Logs: &testbin.SyncBuffer{}}
	c.Log = slog.New(slog.NewTextHandler(c.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c.MinIO = miniotest.Start(t, InputBucket, ArtifactBucket)
	c.SMTP = smtptest.Start(t)

	var err error
	c.PubPath, c.KeyPath, err = creds.GenerateKeyPair(filepath.Join(dir, "keys"), false)
	if err != nil {
		t.Fatal(err)
	}
	if c.Pub, err = creds.LoadPublicKey(c.PubPath); err != nil {
		t.Fatal(err)
	}
	if c.Key, err = creds.LoadPrivateKey(c.KeyPath); err != nil {
		t.Fatal(err)
	}

	lease := opts.Lease
	if lease == 0 {
		lease = time.Minute
	}
	c.Queue, err = queue.Open(filepath.Join(dir, "queue.db"), queue.Options{Logger: c.Log, LeaseDuration: lease})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.URL = "http://" + ln.Addr().String()
	c.SubmitToken, c.WorkToken, c.AdminToken = "s-"+server.NewToken(), "w-"+server.NewToken(), "a-"+server.NewToken()
	cfg := server.Config{
		Listen: ln.Addr().String(), Data: dir,
		Tokens: []server.Token{
			{Name: "submitter", Role: server.RoleSubmit, Token: c.SubmitToken},
			{Name: "workers", Role: server.RoleWork, Token: c.WorkToken},
			{Name: "admin", Role: server.RoleAdmin, Token: c.AdminToken},
		},
		S3:         server.S3Config{Endpoint: c.MinIO.Endpoint, Bucket: ArtifactBucket},
		PoolKey:    c.PubPath,
		MonitorURL: c.URL,
		// The server emails owners from its outbox; workers send none.
		SMTP: server.SMTPConfig{Addr: c.SMTP.Addr(), From: "af@localhost", StartTLS: "never", RetryMin: server.Duration(200 * time.Millisecond), RetryMax: server.Duration(2 * time.Second)},
	}
	var presign *s3.PresignClient
	if opts.ArtifactFront != nil {
		cfg.S3.PublicEndpoint = opts.ArtifactFront(c.MinIO.Endpoint)
		// A config of its own, as af serve makes for public_endpoint: a
		// copy of MinIO's would keep MinIO's endpoint in its sources.
		pcfg, err := awsconf.Load(context.Background(), awsconf.Options{
			Endpoint: cfg.S3.PublicEndpoint, Region: awsconf.DefaultRegion,
			AccessKeyID: miniotest.RootUser, SecretAccessKey: miniotest.RootPassword,
		})
		if err != nil {
			t.Fatal(err)
		}
		presign = s3.NewPresignClient(awsconf.S3(pcfg))
	}
	if err := cfg.Normalize("clustertest"); err != nil {
		t.Fatal(err)
	}
	c.srvCfg, c.lease = cfg, lease
	c.srvDeps = server.Deps{
		S3: c.MinIO.S3, Presign: presign, Logger: c.Log.With("component", "server"),
		// Scheduled runs' credentials are minted with MinIO's root
		// credentials, as af submit's are in the tests.
		AWS:       &c.MinIO.Config,
		TickEvery: 100 * time.Millisecond,
	}
	c.serve(t, ln)
	t.Cleanup(func() {
		c.StopServer(t)
		if t.Failed() {
			t.Logf("cluster logs:\n%s", tail(c.Logs.String(), 20000))
		}
	})
	fast := queueclient.WithBackoff(20*time.Millisecond, 500*time.Millisecond)
	c.Submit = queueclient.New(c.URL, c.SubmitToken, fast)
	c.Work = queueclient.New(c.URL, c.WorkToken, fast)
	return c
}

// serve runs the queue server on ln over c.Queue until StopServer.
func (c *Cluster) serve(t testing.TB, ln net.Listener) {
	t.Helper()
	deps := c.srvDeps
	deps.Queue = c.Queue
	srv, err := server.New(c.srvCfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	c.stopServer = func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("server: %v", err)
		}
		c.Queue.Close()
	}
}

// StopServer stops the queue server and closes its database, as a
// stopped af serve would: its listener is closed, so clients get
// connection refused until StartServer. Stopping a stopped server does
// nothing.
func (c *Cluster) StopServer(t testing.TB) {
	t.Helper()
	if c.stopServer != nil {
		c.stopServer()
		c.stopServer = nil
	}
}

// StartServer starts the queue server again on the same address over the
// same data dir (queue.db reopened), as a restarted af serve. c.Queue is
// the reopened queue afterwards.
func (c *Cluster) StartServer(t testing.TB) {
	t.Helper()
	if c.stopServer != nil {
		t.Fatal("clustertest: StartServer while the server runs")
	}
	q, err := queue.Open(filepath.Join(c.Dir, "queue.db"), queue.Options{Logger: c.Log, LeaseDuration: c.lease})
	if err != nil {
		t.Fatal(err)
	}
	c.Queue = q
	addr := strings.TrimPrefix(c.URL, "http://")
	var ln net.Listener
	// The port was ours a moment ago; a connection in TIME_WAIT does
	// not hold a listening socket, so this normally binds at once.
	for i := 0; ; i++ {
		ln, err = net.Listen("tcp", addr)
		if err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	c.serve(t, ln)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// RequireImages fails the test unless the job images are on the engine.
func RequireImages(t testing.TB, images ...string) {
	t.Helper()
	d, err := runner.NewDockerClient()
	if err != nil {
		t.Fatalf("docker: %v", err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.Ping(ctx); err != nil {
		t.Fatalf("the Docker engine does not answer (%v): integration tests need it", err)
	}
	for _, img := range images {
		if _, err := d.ImageInspect(ctx, img); err != nil {
			t.Fatalf("image %s is missing (%v): run `make images`", img, err)
		}
	}
}

// WorkerOptions tune an in-process worker.
type WorkerOptions struct {
	Capacity int
	Input    runner.InputMode
	Grace    time.Duration
	// ReapEvery and ReapGrace tune the expired-container reaper
	// (worker.Config); zero takes the defaults.
	ReapEvery, ReapGrace time.Duration
	// MaxScratchBytes is the worker's --max-scratch-bytes (0: its default).
	MaxScratchBytes int64
	// QueueURL, when set, is where the worker reaches the queue instead
	// of URL: a test's proxy in front of it that fails chosen calls.
	QueueURL string
	// UploadAttempts, when set, is how many times an artifact upload is
	// tried, with short waits (tests of failing uploads); zero keeps the
	// queue client's default patience (20-40 s of waits).
	UploadAttempts int
	// MergeFanIn is the worker's reducer merge fan-in (0: its default).
	MergeFanIn int
}

// Worker is an in-process worker.
type Worker struct {
	ID     string
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done closes
}

// Stop begins a graceful shutdown (as SIGTERM does) and waits for it.
// The test's cleanup may stop it again.
func (w *Worker) Stop() error {
	w.cancel()
	<-w.done
	return w.err
}

// StartWorker runs a worker in this process until the test ends.
func (c *Cluster) StartWorker(t testing.TB, id string, o WorkerOptions) *Worker {
	t.Helper()
	d, err := runner.NewDockerClient()
	if err != nil {
		t.Fatal(err)
	}
	log := c.Log.With("component", "worker", "worker", id)
	rn, err := runner.New(d, runner.Options{Logger: log, WorkerID: id})
	if err != nil {
		t.Fatal(err)
	}
	qopts := []queueclient.Option{queueclient.WithBackoff(20*time.Millisecond, 500*time.Millisecond)}
	if o.UploadAttempts > 0 {
		qopts = append(qopts, queueclient.WithUploadRetries(o.UploadAttempts, 20*time.Millisecond, 200*time.Millisecond))
	}
	queueURL := c.URL
	if o.QueueURL != "" {
		queueURL = o.QueueURL
	}
	w, err := worker.New(worker.Config{
		Queue: queueclient.New(queueURL, c.WorkToken, qopts...),
		Key:   c.Key, S3: awsconf.WorkerS3{Endpoint: c.MinIO.Endpoint}, Docker: d, Runner: rn,
		WorkerGroup: "test", WorkerID: id, Capacity: o.Capacity, ScratchRoot: filepath.Join(c.Dir, "scratch-"+id),
		Input: o.Input, Grace: o.Grace, ClaimWait: 2 * time.Second, LogEvery: 500 * time.Millisecond, Logger: log,
		ReapEvery: o.ReapEvery, ReapGrace: o.ReapGrace, MaxScratchBytes: o.MaxScratchBytes,
		MergeFanIn: o.MergeFanIn,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wk := &Worker{ID: id, cancel: cancel, done: make(chan struct{})}
	go func() { wk.err = w.Run(ctx); close(wk.done) }()
	t.Cleanup(func() {
		cancel()
		<-wk.done
		d.Close()
	})
	return wk
}

// WaitGraph polls the graph until it resolves or the deadline passes.
func (c *Cluster) WaitGraph(t testing.TB, graphID string, limit time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for {
		gs, err := c.Submit.Graph(ctx, graphID)
		if err == nil && gs.State != "running" {
			return
		}
		select {
		case <-ctx.Done():
			c.LogTaskLogs(t, graphID)
			t.Fatalf("graph %s did not resolve within %s (last: %v, %+v)", graphID, limit, err, gs.State)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LogTaskLogs writes every task's live log into the test's log, for
// diagnosing a failed graph.
func (c *Cluster) LogTaskLogs(t testing.TB, graphID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gs, err := c.Submit.Graph(ctx, graphID)
	if err != nil {
		t.Logf("graph %s: %v", graphID, err)
		return
	}
	for _, ts := range gs.Tasks {
		rc, err := c.Submit.GetArtifact(ctx, ts.TaskID, -1, "public/logs/live.log")
		if err != nil {
			t.Logf("task %s (%s, %s): no log: %v", ts.TaskID, ts.Name, ts.State, err)
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(rc, 64<<10))
		rc.Close()
		t.Logf("task %s (%s, %s) log:\n%s", ts.TaskID, ts.Name, ts.State, b)
	}
}
