package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/af-project/af/internal/server"
)

// TestPrintFirstStart: the tokens are shown on a terminal only; anywhere
// else (a log file, a journal) the output names the config file and how to
// read a token from it.
func TestPrintFirstStart(t *testing.T) {
	t.Parallel()
	cfg := server.Config{Listen: "0.0.0.0:8080", Tokens: []server.Token{
		{Name: "admin", Role: server.RoleAdmin, Token: server.NewToken()},
		{Name: "submit", Role: server.RoleSubmit, Token: server.NewToken()},
		{Name: "work", Role: server.RoleWork, Token: server.NewToken()},
	}}
	for _, terminal := range []bool{false, true} {
		var b bytes.Buffer
		printFirstStart(&b, "/var/lib/af/config.yaml", cfg, terminal)
		out := b.String()
		for _, want := range []string{"created /var/lib/af/config.yaml (mode 0600)", "export AF_QUEUE_URL=http://127.0.0.1:8080", "--print-token"} {
			if !strings.Contains(out, want) {
				t.Errorf("terminal=%v: output lacks %q:\n%s", terminal, want, out)
			}
		}
		for _, tk := range cfg.Tokens {
			if strings.Contains(out, tk.Token) != terminal {
				t.Errorf("terminal=%v: %s token shown=%v:\n%s", terminal, tk.Role, !terminal, out)
			}
		}
		if !terminal && !strings.Contains(out, "export AF_TOKEN=$(af serve --config /var/lib/af/config.yaml --print-token submit)") {
			t.Errorf("no command reading the submit token:\n%s", out)
		}
	}
}

// TestConfigModeWarning: a config others may read is pointed out.
func TestConfigModeWarning(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if w := configModeWarning(path); w != "" {
		t.Errorf("mode 0600: %q", w)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if w := configModeWarning(path); !strings.Contains(w, "mode 0644") || !strings.Contains(w, "chmod 600 "+path) {
		t.Errorf("mode 0644: %q", w)
	}
}
