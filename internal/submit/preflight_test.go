package submit_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/submit"
)

// TestCheckJob checks jobs in real images on the Docker engine: each
// broken one is a *JobError naming the file and line, or the field, and
// the fix; good ones pass; an image not on the engine is said on warn.
func TestCheckJob(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t, "af/os-count", "af/os-count-go")
	d, err := runner.NewDockerClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	rn, err := runner.New(d, runner.Options{Logger: slog.New(slog.DiscardHandler), WorkerID: "submit-test"})
	if err != nil {
		t.Fatal(err)
	}
	const pySpec = "language: python\nmapper: /job/job.py\n"
	for _, tc := range []struct {
		name  string
		image func(t *testing.T) string
		want  []string // nil: the job passes
		warn  string
	}{
		{"the Python example", func(*testing.T) string { return "af/os-count" }, nil, ""},
		{"the Go example", func(*testing.T) string { return "af/os-count-go" }, nil, ""},
		{"not on the engine", func(*testing.T) string { return "af-test/no-such-image:1" }, nil, "is not on this host's Docker engine: its /etc/analysis-tools.yml and job were not checked"},
		{"syntax error", func(t *testing.T) string {
			return clustertest.JobImage(t, "check-syntax", "af/os-count", map[string]string{"/job/job.py": "import json\n\ndef map(key, dims, value, context)\n    pass\n"})
		}, []string{"the job does not compile", "/job/job.py line 3: SyntaxError: expected ':'", "def map(key, dims, value, context)", "^"}, ""},
		{"missing reducer", func(t *testing.T) string {
			return clustertest.JobImage(t, "check-noreducer", "af/os-count", map[string]string{"/etc/analysis-tools.yml": pySpec + "reducer: /job/reduce.py\n"})
		}, []string{"/job/reduce.py does not exist in the image: check reducer: in /etc/analysis-tools.yml"}, ""},
		{"unknown key", func(t *testing.T) string {
			return clustertest.JobImage(t, "check-yaml", "af/os-count", map[string]string{"/etc/analysis-tools.yml": pySpec + "reduser: /job/job.py\n"})
		}, []string{":/etc/analysis-tools.yml: line 3: unknown key \"reduser\"; did you mean reducer?"}, ""},
		{"a Go binary under language: python", func(t *testing.T) string {
			return clustertest.JobImage(t, "check-go-as-py", "af/os-count-go", map[string]string{"/etc/analysis-tools.yml": "language: python\nmapper: /job/os-count\n"})
		}, []string{"has no python3, so it cannot run a language: python job", "language: go in /etc/analysis-tools.yml"}, ""},
		{"a Python module under language: go", func(t *testing.T) string {
			return clustertest.JobImage(t, "check-py-as-go", "af/os-count", map[string]string{"/etc/analysis-tools.yml": "language: go\nmapper: /job/job.py\n"})
		}, []string{"/job/job.py (the job's mapper) is not executable", "a Python module needs language: python"}, ""},
		{"a missing Go binary", func(t *testing.T) string {
			return clustertest.JobImage(t, "check-go-missing", "af/os-count-go", map[string]string{"/etc/analysis-tools.yml": "language: go\nmapper: /job/os-cont\n"})
		}, []string{"has no /job/os-cont, the job's mapper: check mapper: in /etc/analysis-tools.yml"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			image := tc.image(t)
			var warn bytes.Buffer
			err := submit.CheckJob(context.Background(), rn, image, &warn)
			if tc.want == nil && err != nil {
				t.Fatalf("CheckJob(%s) = %v, want it to pass", image, err)
			}
			if tc.want != nil {
				var je *submit.JobError
				if !errors.As(err, &je) {
					t.Fatalf("CheckJob(%s) = %v, want a *JobError", image, err)
				}
				for _, w := range tc.want {
					if !strings.Contains(je.Msg, w) {
						t.Errorf("message lacks %q:\n%s", w, je.Msg)
					}
				}
			}
			if !strings.Contains(warn.String(), tc.warn) || (tc.warn == "" && warn.Len() > 0) {
				t.Errorf("warned %q, want %q", warn.String(), tc.warn)
			}
		})
	}
}
