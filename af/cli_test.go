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
