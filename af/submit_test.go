package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
