package testbin

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// TestBuild builds the worker command twice: one compile, an executable
// that runs and answers --help.
func TestBuild(t *testing.T) {
	t.Parallel()
	a := Build(t, "worker")
	b := Build(t, "worker")
	if a != b {
		t.Fatalf("second Build compiled again: %s then %s", a, b)
	}
	if fi, err := os.Stat(a); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("%s is not an executable: %v", a, err)
	}
	out, _ := exec.Command(a, "--help").CombinedOutput()
	if !strings.Contains(string(out), "--queue") {
		t.Fatalf("worker --help does not mention --queue:\n%s", out)
	}
}
