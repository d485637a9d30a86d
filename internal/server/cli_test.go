package server

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/testbin"
)

// TestServeFirstStartAndCLI runs `af serve` with no config (it writes one
// with fresh tokens, mode 0600, and creates the artifact bucket in MinIO),
// checks that its output (not a terminal) names the file and holds none of
// the three tokens, then drives it with `af status`, `af cancel` and `af
// rerun`, and checks SIGTERM stops it cleanly.
func TestServeFirstStartAndCLI(t *testing.T) {
	t.Parallel()
	m := miniotest.Start(t)
	dir := t.TempDir()
	bin := buildAF(t, dir)
	addr := freePort(t)
	url := "http://" + addr
	data := filepath.Join(dir, "data")

	out := &testbin.SyncBuffer{}
	cmd := exec.Command(bin, "serve", "--listen", addr, "--data", data)
	cmd.Env = append(os.Environ(), m.Env()...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	waitFor(t, func() bool { return strings.Contains(out.String(), "listening on") })

	text := out.String()
	cfgPath := filepath.Join(data, ConfigFileName)
	if !strings.Contains(text, "created "+cfgPath+" (mode 0600)") || !strings.Contains(text, "export AF_QUEUE_URL="+url) ||
		!strings.Contains(text, "export AF_TOKEN=$(af serve --config "+cfgPath+" --print-token submit)") {
		t.Fatalf("first start output lacks the config path, the export line or how to read a token:\n%s", text)
	}
	fi, err := os.Stat(cfgPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config %s: %v %v, want mode 0600", cfgPath, fi, err)
	}
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	toks := map[Role]string{}
	for _, tk := range cfg.Tokens {
		toks[tk.Role] = tk.Token
	}
	if len(toks) != 3 {
		t.Fatalf("config holds %d tokens, want admin, submit and work: %+v", len(toks), cfg.Tokens)
	}
	// Stdout and stderr are not a terminal: neither the log nor the
	// messages carry a token (checked again at the end, after requests
	// with every token).
	noTokens := func(what, text string) {
		t.Helper()
		for role, tok := range toks {
			if strings.Contains(text, tok) {
				t.Fatalf("%s carries the %s token:\n%s", what, role, text)
			}
		}
	}
	noTokens("first start output", text)
	// --print-token reads a token out of the config, for scripts.
	for role, tok := range toks {
		c := exec.Command(bin, "serve", "--config", cfgPath, "--print-token", string(role))
		got, err := c.Output()
		if err != nil || strings.TrimSpace(string(got)) != tok {
			t.Fatalf("af serve --print-token %s: %q %v", role, got, err)
		}
	}
	if _, err := m.S3.HeadBucket(context.Background(), &s3.HeadBucketInput{Bucket: aws.String(DefaultArtifactBucket)}); err != nil {
		t.Fatalf("artifact bucket not created: %v", err)
	}

	ctx := ctxT(t)
	g := testGraph(2, time.Now())
	if _, err := queueclient.New(url, toks[RoleSubmit]).CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	work := queueclient.New(url, toks[RoleWork])
	claims, err := work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w1", Tasks: 1}, 0)
	if err != nil || len(claims) != 1 {
		t.Fatalf("claim %v %v", claims, err)
	}
	if _, err := work.Claimed(claims[0]).ReportFailed(ctx, taskdef.ReportRequest{Message: "exit status 3", Stats: taskdef.Stats{Files: 1, Bytes: 1234}}); err != nil {
		t.Fatal(err)
	}

	af := func(env []string, args ...string) (string, int) {
		c := exec.Command(bin, args...)
		c.Env = append(os.Environ(), env...)
		var b bytes.Buffer
		c.Stdout, c.Stderr = &b, &b
		err := c.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return b.String(), code
	}
	env := []string{"AF_QUEUE_URL=" + url, "AF_TOKEN=" + toks[RoleSubmit]}

	st, code := af(env, "status", g.GraphID)
	if code != 0 {
		t.Fatalf("af status: %d %s", code, st)
	}
	for _, want := range []string{"mapper-0000", "mapper-0001", "reducer", "failed", "g/w1", "exit status 3", "3 tasks:", "1 failed", "1 pending", "1 exception", "dependency-failed"} {
		if !strings.Contains(st, want) {
			t.Errorf("af status lacks %q:\n%s", want, st)
		}
	}
	js, code := af(env, "status", g.GraphID, "--json") // flags may follow the graph id
	var gs taskdef.GraphStatus
	if code != 0 || json.Unmarshal([]byte(js), &gs) != nil || gs.GraphID != g.GraphID || len(gs.Tasks) != 3 {
		t.Fatalf("af status --json: %d %s", code, js)
	}

	// rerun needs the submit role: with the work token it is refused
	// with a hint.
	msg, code := af([]string{"AF_QUEUE_URL=" + url, "AF_TOKEN=" + toks[RoleWork]}, "rerun", claims[0].TaskID)
	// A token the queue refuses is the command line's to fix: exit 2.
	if code != 2 || !strings.Contains(msg, "403") || !strings.Contains(msg, "AF_TOKEN") {
		t.Fatalf("rerun with the work token: %d %s", code, msg)
	}
	msg, code = af(env, "rerun", claims[0].TaskID)
	// The reducer had not run (dependency-failed): it waits for the new
	// run, so the cancel below stops it too.
	if code != 0 || !regexp.MustCompile(`is pending as run 1`).MatchString(msg) || !strings.Contains(msg, "the reducer will wait for the new run") {
		t.Fatalf("af rerun: %d %s", code, msg)
	}
	msg, code = af(env, "cancel", g.GraphID)
	if code != 0 || !strings.Contains(msg, "3 of 3 tasks canceled") || !strings.Contains(msg, "is canceled") {
		t.Fatalf("af cancel: %d %s", code, msg)
	}
	msg, code = af(env, "status", "nosuchgraph")
	if code != 2 || !strings.Contains(msg, "nosuchgraph does not exist") {
		t.Fatalf("status of an unknown graph: %d %s", code, msg)
	}
	for _, c := range []string{"status", "cancel", "rerun"} {
		if msg, _ := af(env, c, "--help"); strings.Contains(msg, toks[RoleSubmit]) || !strings.Contains(msg, "AF_TOKEN") {
			t.Fatalf("af %s --help shows the token or does not name AF_TOKEN:\n%s", c, msg)
		}
	}
	msg, code = af(env, "status")
	if code != 2 {
		t.Fatalf("status without a graph: %d %s", code, msg)
	}

	// Requests with every token (and refused ones) left no token in
	// the log either.
	if _, err := queueclient.New(url, toks[RoleAdmin]).Graph(ctx, g.GraphID); err != nil {
		t.Fatal(err)
	}
	noTokens("af serve's log", out.String())

	// SIGTERM: a clean stop.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("af serve after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("af serve did not stop on SIGTERM")
	}
	// Now nothing listens: the CLI says what to do.
	msg, code = af([]string{"AF_QUEUE_URL=" + url}, "status", g.GraphID)
	// Infrastructure: exit 3.
	if code != 3 || !strings.Contains(msg, "cannot reach the queue at "+url) || !strings.Contains(msg, "is `af serve` running?") {
		t.Fatalf("unreachable queue: %d %s", code, msg)
	}

	// A second start keeps the config and its tokens, and serves the
	// pool key given with --pool-key.
	pubPath, _, err := creds.GenerateKeyPair(filepath.Join(dir, "keys"), false)
	if err != nil {
		t.Fatal(err)
	}
	out2 := &testbin.SyncBuffer{}
	cmd2 := exec.Command(bin, "serve", "--listen", addr, "--data", data, "--pool-key", pubPath)
	cmd2.Env = append(os.Environ(), m.Env()...)
	cmd2.Stdout, cmd2.Stderr = out2, out2
	if err := cmd2.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd2.Process.Kill(); _ = cmd2.Wait() })
	waitFor(t, func() bool { return strings.Contains(out2.String(), "listening on") })
	if !strings.Contains(out2.String(), "config "+cfgPath) {
		t.Fatalf("second start:\n%s", out2.String())
	}
	noTokens("second start output", out2.String())
	if _, err := queueclient.New(url, toks[RoleSubmit]).CancelGraph(ctx, g.GraphID); err != nil {
		t.Fatalf("old token after restart: %v", err)
	}
	served, err := queueclient.New(url, toks[RoleWork]).PoolKey(ctx)
	want, _ := os.ReadFile(pubPath)
	if err != nil || strings.TrimSpace(string(served)) != strings.TrimSpace(string(want)) {
		t.Fatalf("pool key %q %v, want %q", served, err, want)
	}
}
