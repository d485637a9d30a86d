// Package testbin supports tests that run af's commands and servers as real
// processes (kill -9 of `af serve`, a worker killed mid-task, MinIO, the
// end-to-end tests): it compiles the commands, finds free addresses and
// collects their output. It imports nothing of af's, so any
// package's in-package tests can use it without an import cycle.
package testbin

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/af-project/af/internal/decompress"
)

// Module is af's module path; commands are named relative to it.
const Module = "github.com/af-project/af"

type build struct {
	once sync.Once
	path string
	err  error
}

var (
	mu     sync.Mutex
	builds = map[string]*build{}
	dir    string
	dirErr error
	dirOne sync.Once
)

// Build compiles the command cmd ("af", "worker") once per test binary and
// returns the executable's path; a failed build fails t with the compiler's
// output. Tests that run in parallel share the one build.
func Build(t testing.TB, cmd string) string {
	t.Helper()
	mu.Lock()
	b, ok := builds[cmd]
	if !ok {
		b = &build{}
		builds[cmd] = b
	}
	mu.Unlock()
	b.once.Do(func() { b.path, b.err = compile(cmd) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Main runs a package's tests and then removes what Build compiled; call
// it from TestMain: func TestMain(m *testing.M) { testbin.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func compile(cmd string) (string, error) {
	dirOne.Do(func() { dir, dirErr = os.MkdirTemp("", "af-testbin-") })
	if dirErr != nil {
		return "", fmt.Errorf("testbin: %w", dirErr)
	}
	out := filepath.Join(dir, path.Base(cmd))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"build", "-o", out}
	if decompress.BuiltWithISAL {
		// The commands get the gzip decoder the tests were built with, so a
		// `make test` run exercises ISA-L in the real worker process too.
		args = append(args, "-tags", "isal")
	}
	c := exec.CommandContext(ctx, "go", append(args, path.Join(Module, cmd))...)
	// -buildvcs=false: test runs from a checkout without .git (CI's clone
	// of a clone, a tarball) must still build.
	c.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if msg, err := c.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./%s: %w\n%s", cmd, err, msg)
	}
	return out, nil
}
