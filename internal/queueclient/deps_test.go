package queueclient

import (
	"os/exec"
	"strings"
	"testing"
)

// TestClientImportsNoServerStorage: the client speaks the HTTP API through
// the wire types of internal/taskdef alone, so the CLI, the worker and the
// tests that link it do not link the index's or the queue's storage
// (bbolt and everything behind it).
func TestClientImportsNoServerStorage(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/af-project/af/internal/queueclient").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 5 {
		t.Fatalf("go list named only %v", deps)
	}
	for _, d := range deps {
		switch {
		case strings.HasSuffix(d, "/internal/index"), strings.HasSuffix(d, "/internal/queue"), strings.Contains(d, "bbolt"):
			t.Errorf("queueclient imports %s", d)
		}
	}
}
