package runner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"syscall"
)

// PrepareScratch makes dir the task's scratch dir, writable by the
// container's uid:gid, with the input FIFO and an empty output file in it,
// and returns their host paths. The container sees them as
// jobspec.InputFIFO and jobspec.OutputFile (/scratch/input, /scratch/output).
//
// Run as root, the worker gives dir, the FIFO and the output file to the
// container's user and keeps them private to it (0700/0600): the worker can
// read everything anyway. Run as another user it cannot chown, so dir is
// made world-writable (0777) and the files 0666, which is only safe because
// dir's parent must then be private to the worker (no group or other
// permissions): other host users cannot reach into it, and the container
// reaches dir through its bind mount, not through the parent.
func PrepareScratch(dir string, uid, gid int) (inputFIFO, outputPath string, err error) {
	if !filepath.IsAbs(dir) {
		return "", "", fmt.Errorf("scratch dir %q must be an absolute path", dir)
	}
	if uid <= 0 || gid <= 0 {
		return "", "", fmt.Errorf("scratch dir %s: container uid:gid %d:%d must be non-root", dir, uid, gid)
	}
	asRoot := os.Geteuid() == 0
	if !asRoot {
		parent := filepath.Dir(dir)
		fi, err := os.Stat(parent)
		if err != nil {
			return "", "", fmt.Errorf("scratch dir parent: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return "", "", fmt.Errorf("scratch dir %s: its parent %s has mode %v; the worker runs as a non-root user, so the scratch dir must be world-writable and its parent private (chmod 700 %s)", dir, parent, fi.Mode().Perm(), parent)
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", "", fmt.Errorf("scratch dir: %w", err)
	}
	inputFIFO = filepath.Join(dir, InputFIFOName)
	outputPath = filepath.Join(dir, OutputName)
	dirMode, fileMode := os.FileMode(0o700), os.FileMode(0o600)
	if !asRoot {
		dirMode, fileMode = 0o777, 0o666
	}
	// A retried task may reuse the dir: start from a fresh FIFO and an
	// empty output so nothing of the previous run leaks into this one.
	for _, p := range []string{inputFIFO, outputPath} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", "", fmt.Errorf("scratch dir: %w", err)
		}
	}
	if err := syscall.Mkfifo(inputFIFO, uint32(fileMode)); err != nil {
		return "", "", fmt.Errorf("scratch dir: making the input fifo %s: %w", inputFIFO, err)
	}
	out, err := os.OpenFile(outputPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fileMode)
	if err != nil {
		return "", "", fmt.Errorf("scratch dir: %w", err)
	}
	if err := out.Close(); err != nil {
		return "", "", fmt.Errorf("scratch dir: %w", err)
	}
	for _, p := range []string{dir, inputFIFO, outputPath} {
		mode := fileMode
		if p == dir {
			mode = dirMode
		}
		// Chmod explicitly: the umask trimmed the modes given at creation.
		if err := os.Chmod(p, mode); err != nil {
			return "", "", fmt.Errorf("scratch dir: %w", err)
		}
		if asRoot {
			if err := os.Lchown(p, uid, gid); err != nil {
				return "", "", fmt.Errorf("scratch dir: giving %s to the container user %d:%d: %w", p, uid, gid, err)
			}
		}
	}
	return inputFIFO, outputPath, nil
}

// ParseUser splits a numeric "uid:gid" container user; empty means
// DefaultUser.
func ParseUser(user string) (uid, gid int, err error) {
	if user == "" {
		user = DefaultUser
	}
	if _, err := fmt.Sscanf(user, "%d:%d", &uid, &gid); err != nil || userPattern.FindString(user) == "" {
		return 0, 0, fmt.Errorf("container user %q must be numeric uid:gid, like %q", user, DefaultUser)
	}
	return uid, gid, nil
}
