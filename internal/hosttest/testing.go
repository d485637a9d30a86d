package hosttest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/filter"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/testbin"
)

// Start brings a cluster up for the test (building af, worker and the SMTP
// sink with testbin; MinIO from $AF_MINIO or bin/tools) and tears it down
// in t.Cleanup, also after a failure, when it first logs every process's
// log. It fails, never skips, when root, ip, iptables, MinIO or Docker is
// missing. The caller's TestMain must be testbin.Main.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if err := Requirements(); err != nil {
		t.Fatal(err)
	}
	minio, err := miniotest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	o.Bin = Binaries{AF: testbin.Build(t, "af"), Worker: testbin.Build(t, "worker"), SMTPSink: testbin.Build(t, "demo/smtpsink"), MinIO: minio}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	var logs testbin.SyncBuffer
	logs.Limit = 1 << 20
	o.Logf = func(format string, args ...any) {
		fmt.Fprintf(&logs, time.Now().UTC().Format("15:04:05.000 ")+format+"\n", args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := Up(ctx, o)
	if err != nil {
		t.Fatalf("hosttest: up: %v\n%s", err, logs.String())
	}
	t.Logf("cluster 10.231.%d.0/24 up in %s: queue %s, MinIO %s, workers %v", c.Net.N, time.Since(start).Round(time.Millisecond), c.URL, c.S3Endpoint, c.WorkerIDs)
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range append([]*Proc{c.Serve, c.MinIO, c.SMTPSink}, c.Workers...) {
				t.Logf("--- %s log:\n%s", p.Name, p.Log(12000))
			}
		}
		if err := c.Close(); err != nil {
			t.Errorf("hosttest: close: %v", err)
		}
		t.Logf("harness log:\n%s", logs.String())
	})
	return c
}

// Client is a submit-token client of the cluster's queue.
func (c *Cluster) Client() *queueclient.Client {
	return queueclient.New(c.URL, c.SubmitToken, queueclient.WithRootCAs(c.Roots), queueclient.WithBackoff(20*time.Millisecond, 500*time.Millisecond))
}

// RepoRoot is the module's root directory (filters/, images/).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// LoadTelemetry generates telemetry that the original AF Filter.json
// partly selects, uploads it to the cluster's MinIO, builds af serve's
// index, and returns the os-count result the job must print and how many
// files the filter selects.
func (c *Cluster) LoadTelemetry(t testing.TB) (want string, selected int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	set, err := synth.Generate(synth.Spec{
		Reasons: []string{"saved-session", "idle-daily"}, Channels: []string{"nightly", "beta"},
		Versions: []string{"30.0a1"}, BuildIDs: []string{"20140301030201", "20140115030201"},
		Days: []string{"20140307", "20140308", "20140309"}, FilesPerPartition: 4, DocsPerFile: 20,
		HistogramSize: 2, Formats: []string{"gz", "xz", "zst"}, Seed: 12,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Upload(ctx, c.S3, InputBucket, set.Files); err != nil {
		t.Fatal(err)
	}
	schemaPath := filepath.Join(RepoRoot(), "filters", "telemetry_schema.json")
	schemaJSON, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	schema, err := layout.LoadSchema(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client().IndexBuild(ctx, taskdef.IndexBuildRequest{Bucket: InputBucket, Schema: schemaJSON}); err != nil {
		t.Fatal(err)
	}
	f, err := filter.ParseFile(filepath.Join(RepoRoot(), "filters", "Filter.json"), schema)
	if err != nil {
		t.Fatal(err)
	}
	counts := set.CountByOS(func(file synth.File) bool {
		if f.Match(file.Dims) {
			selected++
			return true
		}
		return false
	})
	if selected < 4 {
		t.Fatalf("the filter selects %d files; the tests need several mappers", selected)
	}
	return synth.FormatOSCounts(counts), selected
}

var graphIDPattern = regexp.MustCompile(`graph ([A-Za-z0-9_-]{8,64}) posted`)

// Submit runs `af submit filters/Filter.json IMAGE` from the root
// namespace, one input file per mapper, and returns the graph's id.
func (c *Cluster) Submit(t testing.TB, image string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Serve.argv[0], "submit", "filters/Filter.json", image, "--owner", "analyst@example.com",
		"--name", "hosttest "+image, "--max-files-per-task", "1")
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), c.Env()...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("af submit: %v\n%s", err, out.String())
	}
	m := graphIDPattern.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no graph id in af submit's output:\n%s", out.String())
	}
	c.logf("hosttest: submitted graph %s (%s)", m[1], image)
	return m[1]
}

// WaitFor polls the graph every 100 ms until cond holds or limit passes
// (then the test fails, saying what it waited for).
func (c *Cluster) WaitFor(t testing.TB, graphID, what string, limit time.Duration, cond func(taskdef.GraphStatus) bool) taskdef.GraphStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	client := c.Client()
	var last taskdef.GraphStatus
	var lastErr error
	for {
		gctx, gcancel := context.WithTimeout(ctx, 5*time.Second)
		gs, err := client.Graph(gctx, graphID)
		gcancel()
		if err == nil {
			last = gs
			if cond(gs) {
				return gs
			}
		}
		lastErr = err
		select {
		case <-ctx.Done():
			t.Fatalf("graph %s: %s: not within %s (last error %v, state %s)\n%s", graphID, what, limit, lastErr, last.State, Describe(last))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitResolved waits until the graph is no longer running.
func (c *Cluster) WaitResolved(t testing.TB, graphID string, limit time.Duration) taskdef.GraphStatus {
	t.Helper()
	return c.WaitFor(t, graphID, "resolve", limit, func(gs taskdef.GraphStatus) bool { return gs.State != taskdef.GraphRunning })
}

// Result is the graph's public/result.txt.
func (c *Cluster) Result(t testing.TB, gs taskdef.GraphStatus) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc, err := c.Client().GetArtifact(ctx, gs.ResultTaskID, -1, "public/result.txt")
	if err != nil {
		t.Fatalf("result of %s: %v", gs.GraphID, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Describe is one line per task: its runs with state, reason and worker.
func Describe(gs taskdef.GraphStatus) string {
	var b strings.Builder
	for _, ts := range gs.Tasks {
		fmt.Fprintf(&b, "%s %s %s:", ts.TaskID, ts.Name, ts.State)
		for _, r := range ts.Runs {
			fmt.Fprintf(&b, " [run %d %s %s %s]", r.RunID, r.State, r.ReasonResolved, r.WorkerID)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// WaitEmail waits until the SMTP sink received a message to rcpt whose
// text contains substr (whoever sent it: a worker or af serve).
func (c *Cluster) WaitEmail(t testing.TB, rcpt, substr string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		for _, msg := range strings.Split(c.SMTPSink.Log(1<<30), "----- email from ")[1:] {
			head, _, _ := strings.Cut(msg, "\n")
			if strings.Contains(head, " to ") && strings.Contains(head, rcpt) && strings.Contains(msg, substr) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no email to %s mentioning %q within %s; the sink got:\n%s", rcpt, substr, limit, c.SMTPSink.Log(8000))
		}
		time.Sleep(100 * time.Millisecond) // polling the sink's log
	}
}
