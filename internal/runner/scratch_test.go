package runner

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestPrepareScratch(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "scratch")
	for run := 0; run < 2; run++ {
		// The second run reuses the dir as a retried task would: the old
		// output must be gone.
		fifo, out, err := PrepareScratch(dir, 4321, 8765)
		if err != nil {
			t.Fatal(err)
		}
		if fifo != filepath.Join(dir, "input") || out != filepath.Join(dir, "output") {
			t.Errorf("paths %s %s", fifo, out)
		}
		for _, c := range []struct {
			path string
			typ  os.FileMode
		}{{dir, os.ModeDir}, {fifo, os.ModeNamedPipe}, {out, 0}} {
			fi, err := os.Lstat(c.path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != c.typ {
				t.Errorf("%s has type %v, want %v", c.path, fi.Mode().Type(), c.typ)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if os.Geteuid() == 0 {
				if st.Uid != 4321 || st.Gid != 8765 {
					t.Errorf("%s owned by %d:%d, want the container's 4321:8765", c.path, st.Uid, st.Gid)
				}
				if fi.Mode().Perm()&0o077 != 0 {
					t.Errorf("%s has mode %v; as root it stays private to the container user", c.path, fi.Mode().Perm())
				}
			} else if fi.Mode().Perm()&0o006 != 0o006 {
				t.Errorf("%s has mode %v, want it writable by the container user", c.path, fi.Mode().Perm())
			}
		}
		if b, err := os.ReadFile(out); err != nil || len(b) != 0 {
			t.Errorf("output %q %v, want empty", b, err)
		}
		if err := os.WriteFile(out, []byte("previous run"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPrepareScratchRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		dir      string
		uid, gid int
		want     string
	}{
		{"relative", "scratch", 1, 1, "absolute"},
		{"root uid", "/tmp/x", 0, 1, "non-root"},
		{"root gid", "/tmp/x", 1, 0, "non-root"},
		{"missing parent", "/nonexistent-af/dir/scratch", 1, 1, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := PrepareScratch(tc.dir, tc.uid, tc.gid)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
