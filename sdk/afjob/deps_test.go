package afjob

import (
	"os/exec"
	"strings"
	"testing"
)

// TestSDKImportsNoSpecParsing: a job binary links the SDK, so the SDK must
// not drag in the worker's side of the contract (analysis-tools.yml
// parsing and its YAML library).
func TestSDKImportsNoSpecParsing(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/af-project/af/sdk/afjob").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 5 {
		t.Fatalf("go list named only %v", deps)
	}
	for _, d := range deps {
		if strings.Contains(d, "yaml") || strings.HasSuffix(d, "/internal/jobspec") {
			t.Errorf("the SDK imports %s", d)
		}
	}
}
