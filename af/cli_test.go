package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/testbin"
)

func TestMain(m *testing.M) { testbin.Main(m) }

// TestExitCodesAndStreams runs the real af binary: asked-for help goes to
// stdout with exit 0, usage errors to stderr with exit 2, a failed or
// canceled job exits 1, and a queue that is down or failing, or a Docker
// engine that is not there, exits 3 (README's "Scripting af").
func TestExitCodesAndStreams(t *testing.T) {
	t.Parallel()
	bin := testbin.Build(t, "af")
	e := newRerunEnv(t)
	ctx := context.Background()

	failed, fms, _ := e.graph(t, 1)
	cs, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 1}, 0)
	if err != nil || len(cs) != 1 || cs[0].TaskID != fms[0] {
		t.Fatalf("claim: %+v %v", cs, err)
	}
	if _, err := e.work.Claimed(cs[0]).ReportFailed(ctx, taskdef.ReportRequest{Message: "Traceback: job.py line 3"}); err != nil {
		t.Fatal(err)
	}
	canceled, _, _ := e.graph(t, 1)
	if _, err := e.submit.CancelGraph(ctx, canceled); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	filter := filepath.Join(dir, "Filter.json")
	if err := os.WriteFile(filter, []byte(`{"version": 1, "dimensions": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// A server that answers every request 500, as a broken af serve
	// would (the client retries, then gives up).
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(taskdef.ErrorResponse{Code: "Internal", Error: "disk on fire"})
	}))
	t.Cleanup(broken.Close)

	const (
		toStdout = iota // the output is on stdout, stderr is empty
		toStderr        // the output is on stderr, stdout is empty
	)
	tests := []struct {
		name   string
		args   []string
		env    []string
		code   int
		stream int
		want   string
	}{
		{"af --help", []string{"--help"}, nil, 0, toStdout, "Exit codes"},
		{"af -h", []string{"-h"}, nil, 0, toStdout, "Usage: af <command>"},
		{"af help", []string{"help"}, nil, 0, toStdout, "Usage: af <command>"},
		{"af help submit", []string{"help", "submit"}, nil, 0, toStdout, "Usage: af submit FILTER.json IMAGE"},
		{"af submit --help", []string{"submit", "--help"}, nil, 0, toStdout, "af submit filters/Filter.json af/os-count --wait -q > counts.tsv"},
		{"af graphs -h", []string{"graphs", "-h"}, nil, 0, toStdout, "Usage: af graphs"},
		{"af help index build", []string{"help", "index", "build"}, nil, 0, toStdout, "Usage: af index build"},
		{"af --version", []string{"--version"}, nil, 0, toStdout, "af "},
		{"af version", []string{"version"}, nil, 0, toStdout, "af "},
		{"no command", nil, nil, 2, toStderr, "Usage: af <command>"},
		{"unknown command", []string{"frobnicate"}, nil, 2, toStderr, `unknown command "frobnicate"`},
		{"af help of an unknown command", []string{"help", "frobnicate"}, nil, 2, toStderr, `unknown command "frobnicate"`},
		{"bad flag", []string{"submit", "--frobnicate"}, nil, 2, toStderr, "flag provided but not defined: -frobnicate"},
		{"missing argument", []string{"status"}, nil, 2, toStderr, "want exactly one graph id"},
		{"-o without --wait", []string{"submit", filter, "af/os-count", "-o", "out.csv"}, nil, 2, toStderr, "-o FILE writes the result, which only --wait waits for"},
		{"bad --state", []string{"graphs", "--state", "done"}, nil, 2, toStderr, `"done" is not a graph state`},
		{"filter file missing", []string{"submit", filepath.Join(dir, "nope.json"), "af/os-count", "--no-image-check"}, nil, 2, toStderr, "nope.json"},
		{"unknown graph", []string{"status", "no-such-graph"}, nil, 2, toStderr, "404"},
		{"failed job", []string{"result", failed}, nil, 1, toStderr, "job.py line 3"},
		{"canceled job", []string{"result", canceled}, nil, 1, toStderr, "was canceled"},
		{"queue unreachable", []string{"status", failed, "--queue", "http://127.0.0.1:1"}, nil, 3, toStderr, "is `af serve` running"},
		{"queue answers 500", []string{"graphs", "--queue", broken.URL}, nil, 3, toStderr, "disk on fire"},
		{"Docker not there", []string{"submit", filter, "af/os-count"}, []string{"DOCKER_HOST=unix://" + filepath.Join(dir, "no-docker.sock")}, 3, toStderr, "check image af/os-count"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(bin, tc.args...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "AF_QUEUE_URL="+e.url, "AF_TOKEN="+e.submitTok)
			cmd.Env = append(cmd.Env, tc.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Errorf("af %q exited %d, want %d\nstdout:\n%s\nstderr:\n%s", tc.args, code, tc.code, stdout.String(), stderr.String())
			}
			out, other, where := stdout.String(), stderr.String(), "stdout"
			if tc.stream == toStderr {
				out, other, where = other, out, "stderr"
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("af %q: %s lacks %q:\n%s", tc.args, where, tc.want, out)
			}
			if other != "" {
				t.Errorf("af %q wrote to the other stream, want only %s:\n%s", tc.args, where, other)
			}
		})
	}
}

// TestGraphsCommand: af graphs lists newest first with the filters, as a
// table or the server's JSON.
func TestGraphsCommand(t *testing.T) {
	t.Parallel()
	e := newRerunEnv(t)
	first, _, _ := e.graph(t, 1)
	second, _, _ := e.graph(t, 2)
	if _, err := e.submit.CancelGraph(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := e.af("graphs")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "GRAPH") ||
		!strings.HasPrefix(lines[1], second) || !strings.Contains(lines[1], " running ") || !strings.Contains(lines[1], " 0/3 ") ||
		!strings.HasPrefix(lines[2], first) || !strings.Contains(lines[2], " canceled ") {
		t.Fatalf("af graphs: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = e.af("graphs", "--state", "canceled", "--json")
	var gl taskdef.GraphList
	if err := json.Unmarshal([]byte(out), &gl); code != 0 || err != nil || len(gl.Graphs) != 1 || gl.Graphs[0].GraphID != first {
		t.Fatalf("af graphs --state canceled --json: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	code, out, _ = e.af("graphs", "--owner", "nobody@example.org")
	if code != 0 || !strings.Contains(out, "no graphs match") {
		t.Fatalf("af graphs --owner nobody: exit %d\n%s", code, out)
	}
	code, out, _ = e.af("graphs", "--limit", "1", "--name", "JOB")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[1], second) {
		t.Fatalf("af graphs --limit 1 --name JOB: exit %d\n%s", code, out)
	}
}

// TestWorkerVersionAndHelp: worker --version and --help print to stdout
// and exit 0, as af's do.
func TestWorkerVersionAndHelp(t *testing.T) {
	t.Parallel()
	bin := testbin.Build(t, "worker")
	for _, args := range [][]string{{"--version"}, {"--help"}} {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() != 0 {
			t.Fatalf("worker %v: %v\nstderr:\n%s", args, err, stderr.String())
		}
		want := "worker "
		if args[0] == "--help" {
			want = "Usage: worker --queue URL"
		}
		if !strings.HasPrefix(stdout.String(), want) {
			t.Errorf("worker %v printed %q, want it to start with %q", args, stdout.String(), want)
		}
	}
}
