package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/af-project/af/internal/clustertest"
)

// A bad --priority is refused before anything is read or posted, naming
// the flag and the values it takes.
func TestSubmitPriorityFlag(t *testing.T) {
	t.Parallel()
	filter := filepath.Join(t.TempDir(), "Filter.json")
	if err := os.WriteFile(filter, []byte(`{"version": 1, "dimensions": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run([]string{"submit", filter, "af/os-count", "--priority", "urgent", "--queue", "http://127.0.0.1:1"}, &out, &errOut)
	if code == 0 {
		t.Fatalf("exit 0 with --priority urgent: %s", out.String())
	}
	msg := errOut.String()
	for _, want := range []string{"--priority", `"urgent"`, "high, normal or low"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %q", msg, want)
		}
	}
}

// af submit checks the job in its image before it asks for anything: a
// syntax error exits 1 naming the file and the line, and nothing is
// posted (the queue here does not exist).
func TestSubmitChecksTheJob(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t, "af/os-count")
	image := clustertest.JobImage(t, "submit-syntax", "af/os-count", map[string]string{"/job/job.py": "def map(key, dims, value, context):\n    context.write(1 1)\n"})
	filter := filepath.Join(t.TempDir(), "Filter.json")
	if err := os.WriteFile(filter, []byte(`{"version": 1, "dimensions": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run([]string{"submit", filter, image, "--queue", "http://127.0.0.1:1"}, &out, &errOut)
	if code != 1 || out.Len() != 0 {
		t.Fatalf("exit %d, stdout %q, want 1 and nothing; stderr:\n%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"the job does not compile", "/job/job.py line 2: SyntaxError", "context.write(1 1)"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
		}
	}
}

// --env with a name the worker sets is refused before anything is
// checked, minted or posted (the queue here does not exist).
func TestSubmitRefusesContractEnv(t *testing.T) {
	t.Parallel()
	filter := filepath.Join(t.TempDir(), "Filter.json")
	if err := os.WriteFile(filter, []byte(`{"version": 1, "dimensions": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run([]string{"submit", filter, "af/os-count", "--env", "AF_OUTPUT=/tmp/x", "--no-image-check", "--queue", "http://127.0.0.1:1"}, &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "--env AF_OUTPUT: the worker sets AF_OUTPUT for the job's container") || !strings.Contains(errOut.String(), "remove --env AF_OUTPUT") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut.String())
	}
}
