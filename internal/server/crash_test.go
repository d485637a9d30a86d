package server

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/af-project/af/internal/testbin"

	"github.com/af-project/af/internal/queueclient"
)

func TestMain(m *testing.M) { testbin.Main(m) }

// buildAF compiles the af command (once) and returns its path.
func buildAF(t *testing.T, _ string) string {
	t.Helper()
	return testbin.Build(t, "af")
}

// serveProc is a running `af serve`.
type serveProc struct {
	cmd  *exec.Cmd
	logs *testbin.SyncBuffer
	done chan struct{}
}

// startServe runs `af serve --config cfg` and waits until it answers.
func startServe(t *testing.T, bin, cfg, url string) *serveProc {
	t.Helper()
	return startServeWith(t, bin, cfg, url, "warn")
}

// startServeWith is startServe at a log level, with extra environment.
func startServeWith(t *testing.T, bin, cfg, url, level string, env ...string) *serveProc {
	t.Helper()
	p := &serveProc{logs: &testbin.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve", "--config", cfg, "--log-level", level)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	// No S3 in this test: keep the AWS SDK away from any real account.
	p.cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=none", "AWS_SECRET_ACCESS_KEY=none", "AWS_ENDPOINT_URL=http://127.0.0.1:1", "AWS_EC2_METADATA_DISABLED=true")
	p.cmd.Env = append(p.cmd.Env, env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url + "/api/v1/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("af serve exited: %s", p.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("af serve not answering: %s", p.logs.String())
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	addr, err := testbin.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestCrashKill9MidRun runs the concurrency scenario against a real `af
// serve` process, kills it with SIGKILL after a few hundred completions,
// starts it again on the same data and port, and lets the claimers (which
// retry through the outage) finish the graph. No task may be lost, and no
// task whose completion was acknowledged before the kill may run again.
func TestCrashKill9MidRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := buildAF(t, dir)
	addr := freePort(t)
	url := "http://" + addr
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf(`listen: %s
data: %s
lease_duration: 3s
tokens:
  - {name: submit, role: submit, token: %s}
  - {name: work, role: work, token: %s}
`, addr, filepath.Join(dir, "data"), submitTok, workTok)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	proc := startServe(t, bin, cfgPath, url)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	submit := queueclient.New(url, submitTok)
	g := testGraph(1999, time.Now())
	if _, err := submit.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}

	const killAfter = 600
	var (
		killed     atomic.Bool
		completed  atomic.Int64
		reached    = make(chan struct{})
		reachOnce  sync.Once
		beforeMu   sync.Mutex
		beforeKill = map[string]bool{} // acknowledged before the kill
		rerunMu    sync.Mutex
		rerun      []string // tasks acknowledged before the kill, claimed again
	)
	log := newClaimLog()
	newClient := func() *queueclient.Client {
		// Enough attempts to ride out the restart.
		return queueclient.New(url, workTok, queueclient.WithRetries(400), queueclient.WithBackoff(5*time.Millisecond, 100*time.Millisecond))
	}
	done, wait := runClaimers(ctx, t, 32, newClient, log, func(taskID string) {
		if !killed.Load() {
			beforeMu.Lock()
			beforeKill[taskID] = true
			beforeMu.Unlock()
		}
		if completed.Add(1) == killAfter {
			reachOnce.Do(func() { close(reached) })
		}
	})
	// Watch claims for tasks acknowledged before the kill.
	watchStop := make(chan struct{})
	var watchWG sync.WaitGroup
	watchWG.Add(1)
	go func() {
		defer watchWG.Done()
		seen := map[string]int{}
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-watchStop:
				return
			case <-tick.C:
			}
			log.mu.Lock()
			beforeMu.Lock()
			for id, n := range log.claims {
				if beforeKill[id] && n > 1 && seen[id] != n {
					seen[id] = n
					rerunMu.Lock()
					rerun = append(rerun, id)
					rerunMu.Unlock()
				}
			}
			beforeMu.Unlock()
			log.mu.Unlock()
		}
	}()

	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatalf("never reached %d completions: %s", killAfter, proc.logs.String())
	}
	killed.Store(true)
	if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-proc.done
	atKill := completed.Load()
	proc2 := startServe(t, bin, cfgPath, url)

	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("graph did not complete after the restart: %s", proc2.logs.String())
	}
	wait()
	close(watchStop)
	watchWG.Wait()

	st, err := queueclient.New(url, submitTok).Graph(context.Background(), g.GraphID)
	if err != nil {
		t.Fatal(err)
	}
	checkAllCompletedOnce(t, st, 2000, log)
	beforeMu.Lock()
	defer beforeMu.Unlock()
	if len(beforeKill) < killAfter-32 {
		t.Fatalf("only %d completions acknowledged before the kill", len(beforeKill))
	}
	for _, ts := range st.Tasks {
		if beforeKill[ts.TaskID] && len(ts.Runs) != 1 {
			t.Errorf("task %s completed before the kill has %d runs", ts.TaskID, len(ts.Runs))
		}
	}
	for _, id := range rerun {
		t.Errorf("task %s completed before the kill was claimed again", id)
	}
	retried := 0
	for _, ts := range st.Tasks {
		if len(ts.Runs) > 1 {
			retried++
		}
	}
	t.Logf("killed after %d completions (%d acknowledged before the kill); %d tasks needed another run after the restart", atKill, len(beforeKill), retried)
}
