package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/server"
	"github.com/af-project/af/internal/taskdef"
)

// rerunEnv is af serve's API over a real bbolt queue, without S3.
type rerunEnv struct {
	url, submitTok string
	work, submit   *queueclient.Client
}

func newRerunEnv(t *testing.T) *rerunEnv {
	t.Helper()
	dir := t.TempDir()
	q, err := queue.Open(filepath.Join(dir, "queue.db"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	e := &rerunEnv{submitTok: "submit-" + server.NewToken()}
	workTok := "work-" + server.NewToken()
	cfg := server.Config{Data: dir, Tokens: []server.Token{
		{Name: "s", Role: server.RoleSubmit, Token: e.submitTok},
		{Name: "w", Role: server.RoleWork, Token: workTok},
	}}
	if err := cfg.Normalize("test config"); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, server.Deps{Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	e.url = hs.URL
	e.work = queueclient.New(hs.URL, workTok)
	e.submit = queueclient.New(hs.URL, e.submitTok)
	return e
}

// graph creates n mappers and a reducer; it returns the mapper ids and
// the reducer's.
func (e *rerunEnv) graph(t *testing.T, n int) (string, []string, string) {
	t.Helper()
	now := time.Now()
	gid := taskdef.NewID()
	g := taskdef.Graph{GraphID: gid, Name: "job", Owner: "o@example.org"}
	mk := func(name string, kind taskdef.Kind, deps []string) taskdef.Task {
		return taskdef.Task{GraphID: gid, Dependencies: deps, Retries: 2, Created: now, Deadline: now.Add(time.Hour), Expires: now.Add(48 * time.Hour),
			Metadata: taskdef.Metadata{Name: name, Owner: "o@example.org"},
			Payload:  taskdef.Payload{Kind: kind, Image: "af/os-count", MaxRunTime: 60}}
	}
	var ms []string
	for i := range n {
		id := taskdef.NewID()
		ms = append(ms, id)
		tk := mk(fmt.Sprintf("mapper-%d", i), taskdef.KindMapper, nil)
		tk.Payload.Bucket = "telemetry"
		tk.Payload.Inputs = []taskdef.InputFile{{Key: fmt.Sprintf("a/%d.log.gz", i), Size: 10}}
		g.Tasks = append(g.Tasks, taskdef.GraphTask{TaskID: id, Task: tk})
	}
	red := taskdef.NewID()
	g.Tasks = append(g.Tasks, taskdef.GraphTask{TaskID: red, Task: mk("reducer", taskdef.KindReducer, ms)})
	if _, err := e.submit.CreateGraph(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	return gid, ms, red
}

// finish claims and completes up to max tasks (all when max < 0) and
// returns their ids.
func (e *rerunEnv) finish(t *testing.T, max int) []string {
	t.Helper()
	var done []string
	for max != 0 {
		cs, err := e.work.ClaimWork(context.Background(), taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 1}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			return done
		}
		if _, err := e.work.Claimed(cs[0]).ReportCompleted(context.Background(), taskdef.ReportRequest{}); err != nil {
			t.Fatal(err)
		}
		done = append(done, cs[0].TaskID)
		max--
	}
	return done
}

func (e *rerunEnv) af(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(append(args, "--queue", e.url, "--token", e.submitTok), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestRerunCommand: `af rerun TASK` says whether the reducer waits for the
// new run or runs again on the new outputs; a canceled graph's task is
// refused with what to do instead; `af rerun GRAPH --failed` re-opens it.
func TestRerunCommand(t *testing.T) {
	t.Parallel()
	e := newRerunEnv(t)
	tests := []struct {
		name     string
		setup    func(t *testing.T) []string // the arguments of af rerun
		wantCode int
		want     []string // in stdout, or in stderr when wantCode != 0
	}{
		{"before the reducer started", func(t *testing.T) []string {
			e.graph(t, 3)
			done := e.finish(t, 1) // one mapper completes, the others pend
			return []string{"rerun", done[0]}
		}, 0, []string{"is pending as run 1", "reducer", "unscheduled: the reducer will wait for the new run"}},
		{"after the reducer completed", func(t *testing.T) []string {
			_, ms, _ := e.graph(t, 2)
			e.finish(t, -1)
			return []string{"rerun", ms[1]}
		}, 0, []string{"is pending as run 1", "completed: the reducer will run again on the new outputs"}},
		{"a canceled graph's task", func(t *testing.T) []string {
			gid, ms, _ := e.graph(t, 2)
			if _, err := e.submit.CancelGraph(context.Background(), gid); err != nil {
				t.Fatal(err)
			}
			return []string{"rerun", ms[0]}
			// A 409 the user fixes on the command line (--failed): exit 2.
		}, 2, []string{"canceled", "--failed"}},
		{"--failed re-opens a canceled graph", func(t *testing.T) []string {
			gid, _, _ := e.graph(t, 2)
			if _, err := e.submit.CancelGraph(context.Background(), gid); err != nil {
				t.Fatal(err)
			}
			return []string{"rerun", gid, "--failed"}
		}, 0, []string{"is running: 3 failed or exception tasks rerun (2 pending, 1 waiting for dependencies rerun with them)"}},
	}
	for _, tc := range tests {
		// Sequential: the cases share one queue and claim from it.
		args := tc.setup(t)
		code, out, errOut := e.af(args...)
		if code != tc.wantCode {
			t.Fatalf("%s: exit %d, want %d\nstdout %s\nstderr %s", tc.name, code, tc.wantCode, out, errOut)
		}
		got := out
		if tc.wantCode != 0 {
			got = errOut
		}
		t.Logf("%s: af %s\n%s", tc.name, strings.Join(args, " "), got)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, w, got)
			}
		}
		e.finish(t, -1)
	}
}

// TestRerunHelp: --help explains both outcomes and --failed.
func TestRerunHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"rerun", "--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, w := range []string{"the reducer will wait for the new run", "the reducer will run again", "--failed", "canceled graph", "AF_QUEUE_URL"} {
		if !strings.Contains(stderr.String()+stdout.String(), w) {
			t.Errorf("help lacks %q:\n%s", w, stderr.String())
		}
	}
}

// TestStatusOfCanceledGraph: `af status` says canceled, and says it once
// for the graph; `af result` refuses with what to do.
func TestStatusOfCanceledGraph(t *testing.T) {
	t.Parallel()
	e := newRerunEnv(t)
	gid, _, _ := e.graph(t, 2)
	e.finish(t, 1)
	if _, err := e.submit.CancelGraph(context.Background(), gid); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := e.af("status", gid)
	if code != 0 {
		t.Fatalf("af status: %d %s", code, errOut)
	}
	for _, w := range []string{"1 completed, 2 exception", "graph canceled: 2 task(s) stopped; `af rerun " + gid + " --failed`"} {
		if !strings.Contains(out, w) {
			t.Errorf("af status lacks %q:\n%s", w, out)
		}
	}
	if n := strings.Count(out, "graph canceled"); n != 1 {
		t.Errorf("af status says \"graph canceled\" %d times, want once:\n%s", n, out)
	}
	if !strings.Contains(strings.SplitN(out, "\n", 2)[0], " canceled ") {
		t.Errorf("af status header does not say canceled:\n%s", out)
	}
	code, _, errOut = e.af("result", gid)
	if code == 0 || !strings.Contains(errOut, "was canceled") || !strings.Contains(errOut, "--failed") {
		t.Errorf("af result of a canceled graph: %d %s", code, errOut)
	}
}
