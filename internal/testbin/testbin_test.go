package testbin

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
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

func TestSyncBuffer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		limit int
		want  string
	}{
		{"unlimited", 0, "abcdefgh"},
		{"stops once past the limit", 3, "abcd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := &SyncBuffer{Limit: tc.limit}
			for _, s := range []string{"ab", "cd", "ef", "gh"} {
				if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			if got := b.String(); got != tc.want {
				t.Fatalf("kept %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFreeAddr(t *testing.T) {
	t.Parallel()
	// "Free a moment ago" is all FreeAddr can promise: another process
	// drawing from the same range may take the port before we listen, so
	// three races in a row, not one, fail the test.
	var addr string
	var errs []error
	for range 3 {
		a, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", a)
		if err == nil {
			l.Close()
			addr = a
			break
		}
		errs = append(errs, fmt.Errorf("listen on the free address %s: %w", a, err))
	}
	if addr == "" {
		t.Fatal(errors.Join(errs...))
	}
	// Below the ephemeral range, so no outgoing connection can take it.
	_, port, _ := net.SplitHostPort(addr)
	lo, hi := belowEphemeral()
	if p, err := strconv.Atoi(port); err != nil || p < lo || p >= hi {
		t.Errorf("port %s is outside [%d, %d)", port, lo, hi)
	}
}
