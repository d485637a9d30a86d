package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/taskdef"
)

// TestSubmitOutputs: after a graph is posted, what goes where. Without
// --wait the posting report is the output (stdout), -q prints only the
// graph id, --json one object; with --wait a failed job's reasons go to
// stderr even with -q, --json carries them too, and af exits 1. The
// successful --wait paths (the result alone on stdout, -o, --json's
// text) run through a real cluster in internal/e2e TestScriptingAF.
func TestSubmitOutputs(t *testing.T) {
	t.Parallel()
	e := newRerunEnv(t)
	q := queueclient.New(e.url, e.submitTok)
	ctx := context.Background()
	planOf := func(gid string) submit.Plan {
		return submit.Plan{
			Graph: taskdef.Graph{GraphID: gid, Name: "job", Owner: "o@example.org"}, Bucket: "telemetry", Mappers: 1, Files: 1, Bytes: 10,
			Scope: creds.Scope{Bucket: "telemetry"}, CredentialsExpire: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		}
	}
	failed, ms, _ := e.graph(t, 1)
	cs, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 1}, 0)
	if err != nil || len(cs) != 1 || cs[0].TaskID != ms[0] {
		t.Fatalf("claim: %v %v", cs, err)
	}
	if _, err := e.work.Claimed(cs[0]).ReportFailed(ctx, taskdef.ReportRequest{Message: "Traceback: /job/job.py, line 7"}); err != nil {
		t.Fatal(err)
	}
	running, _, _ := e.graph(t, 1)

	tests := []struct {
		name           string
		o              submitOutputs
		gid            string
		wantErr        error
		stdout, stderr func(t *testing.T, s string)
	}{
		{"no flags: the report is the output", submitOutputs{}, running, nil,
			func(t *testing.T, s string) {
				for _, w := range []string{"graph " + running + " posted", "monitor: " + e.url + "/graphs/" + running, "follow it with: af status " + running} {
					if !strings.Contains(s, w) {
						t.Errorf("stdout lacks %q:\n%s", w, s)
					}
				}
			}, empty},
		{"-q: only the graph id", submitOutputs{quiet: true}, running, nil,
			func(t *testing.T, s string) {
				if s != running+"\n" {
					t.Errorf("stdout %q, want the graph id alone", s)
				}
			}, empty},
		{"--json: one object, the report on stderr", submitOutputs{json: true}, running, nil,
			func(t *testing.T, s string) {
				var js submitJSON
				if err := json.Unmarshal([]byte(s), &js); err != nil || strings.Count(s, "\n") != 1 {
					t.Fatalf("not one JSON line (%v):\n%s", err, s)
				}
				if js.GraphID != running || js.State != taskdef.GraphRunning || js.MonitorURL != e.url+"/graphs/"+running || js.Source != "s3://telemetry/" || js.Result != nil {
					t.Errorf("--json %+v", js)
				}
			},
			func(t *testing.T, s string) {
				if !strings.Contains(s, "graph "+running+" posted") {
					t.Errorf("stderr lacks the posting report:\n%s", s)
				}
			}},
		{"--wait -q, failed: the reasons on stderr", submitOutputs{wait: true, quiet: true}, failed, errJobFailed, empty,
			func(t *testing.T, s string) {
				if !strings.Contains(s, "graph "+failed+" failed:") || !strings.Contains(s, "/job/job.py, line 7") || strings.Contains(s, "posted") {
					t.Errorf("stderr:\n%s", s)
				}
			}},
		{"--wait --json, failed: the reasons in the object too", submitOutputs{wait: true, json: true, quiet: true}, failed, errJobFailed,
			func(t *testing.T, s string) {
				var js submitJSON
				if err := json.Unmarshal([]byte(s), &js); err != nil {
					t.Fatalf("not JSON (%v):\n%s", err, s)
				}
				if js.State != taskdef.GraphFailed || !strings.Contains(strings.Join(js.Failures, "\n"), "mapper-0 ("+ms[0]+"): failed: Traceback: /job/job.py, line 7") || js.Totals == nil || js.Totals.Input.Tasks != 1 {
					t.Errorf("--json %+v", js)
				}
			},
			func(t *testing.T, s string) {
				if !strings.Contains(s, "line 7") {
					t.Errorf("stderr:\n%s", s)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			o := tc.o
			o.stdout, o.stderr = &stdout, &stderr
			err := o.posted(ctx, q, planOf(tc.gid), time.Millisecond)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("posted: %v, want %v", err, tc.wantErr)
			}
			tc.stdout(t, stdout.String())
			tc.stderr(t, stderr.String())
		})
	}
}

func empty(t *testing.T, s string) {
	t.Helper()
	if s != "" {
		t.Errorf("want nothing, got:\n%s", s)
	}
}

// TestWriteFileAtomic: the file appears whole or not at all, and a
// failed write leaves an earlier file as it was.
func TestWriteFileAtomic(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "out.tsv")
	if n, err := writeFileAtomic(p, strings.NewReader("a\t1\n")); err != nil || n != 4 {
		t.Fatalf("write: %d %v", n, err)
	}
	if _, err := writeFileAtomic(p, &failingReader{data: "partial"}); err == nil {
		t.Fatal("a failed read reported success")
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "a\t1\n" {
		t.Fatalf("after a failed write the file holds %q (%v), want the earlier result", got, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	if _, err := writeFileAtomic(filepath.Join(dir, "no", "such", "dir", "x"), strings.NewReader("x")); exitCode(err) != exitUsage {
		t.Fatalf("-o into a missing directory: %v, exit %d; want a usage error", err, exitCode(err))
	}
}

type failingReader struct{ data string }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, errors.New("connection reset")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}
