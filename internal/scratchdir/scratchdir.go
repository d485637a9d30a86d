// Package scratchdir opens and measures files in a directory that hostile
// code writes: a task's scratch dir, bind-mounted into the job's container
// as /scratch while the worker, root on the host, reads the job's output
// from it.
//
// Every name is resolved relative to the directory's own descriptor and
// no symbolic link is followed (openat2 with RESOLVE_BENEATH,
// RESOLVE_NO_SYMLINKS and RESOLVE_NO_MAGICLINKS; on kernels without
// openat2, one openat with O_NOFOLLOW per component), so a job cannot point
// the worker at a host file. Files are opened O_NONBLOCK and checked with
// fstat, so a FIFO, directory, device or socket planted where a file
// belongs is refused with an *UnsafeError instead of hanging the worker or
// being read. Hard links cannot reach host files either: the container
// sees only its bind mount of this filesystem, and link(2) refuses to
// cross mounts.
package scratchdir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/af-project/af/internal/units"
)

// Dir is an open scratch directory.
type Dir struct {
	fd int
	// shown is how the job names the directory (/scratch), for messages
	// that point at the job's own paths.
	shown string
	// walkOnly makes every open take the fallback, as on a kernel without
	// openat2; tests set it.
	walkOnly bool
}

// Open opens the directory at hostPath, a path the worker chose and
// trusts, without following a link in its last component. shown is how
// the job sees it ("/scratch"). Open it before the job runs, and keep it:
// later opens never look at hostPath again.
func Open(hostPath, shown string) (*Dir, error) {
	fd, err := unix.Open(hostPath, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open scratch dir %s: %w", hostPath, err)
	}
	return &Dir{fd: fd, shown: shown}, nil
}

// Close releases the directory's descriptor.
func (d *Dir) Close() error {
	if d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	return err
}

// Shown is the path the job sees for name.
func (d *Dir) Shown(name string) string { return path.Join(d.shown, name) }

// UnsafeError is an entry of the scratch dir that is not what the worker
// expects there. The job made it so: the worker fails the task with
// Error's message, which names the path as the job sees it and what was
// found, never what a link points to.
type UnsafeError struct {
	// Path is the entry as the job sees it: /scratch/output.
	Path string
	// Found says what is there: "a symlink", "a FIFO", "missing",
	// "12.0 GiB, over the 10.0 GiB limit".
	Found string
	// Want says what the job must do instead.
	Want string
}

func (e *UnsafeError) Error() string {
	return e.Path + " is " + e.Found + "; " + e.Want
}

// FileID identifies a file: the worker records its FIFO's at creation and
// accepts only that one later.
type FileID struct{ Dev, Ino uint64 }

func idOf(st *unix.Stat_t) FileID { return FileID{Dev: uint64(st.Dev), Ino: st.Ino} }

// ErrNoReader is OpenFIFO's answer when the FIFO is the right one but
// nobody has its read end open yet: try again later.
var ErrNoReader = errors.New("the fifo has no reader yet")

// noOpenat2 is set once openat2 answered ENOSYS.
var noOpenat2 atomic.Bool

// checkName refuses names that are not plain relative paths below the
// directory: a job does not choose them, but a worker bug must not turn
// into an escape.
func checkName(name string) ([]string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.ContainsRune(name, 0) {
		return nil, fmt.Errorf("scratch dir: bad name %q: want a relative path", name)
	}
	parts := strings.Split(name, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return nil, fmt.Errorf("scratch dir: bad name %q: want a clean relative path without '..'", name)
		}
	}
	return parts, nil
}

// openat opens name below d with flags (O_NOFOLLOW and O_CLOEXEC added),
// following no symlink in any component.
func (d *Dir) openat(name string, flags int) (int, error) {
	parts, err := checkName(name)
	if err != nil {
		return -1, err
	}
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	if flags&unix.O_PATH == 0 {
		// openat2 refuses O_PATH with any flag but these three.
		flags |= unix.O_NOCTTY
	}
	if !d.walkOnly && !noOpenat2.Load() {
		how := &unix.OpenHow{
			Flags:   uint64(flags),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		}
		for try := 0; ; try++ {
			fd, err := unix.Openat2(d.fd, name, how)
			if (err == unix.EAGAIN || err == unix.EINTR) && try < 8 {
				// A rename raced the lookup; the kernel asks for a retry.
				continue
			}
			if err != unix.ENOSYS {
				return fd, err
			}
			noOpenat2.Store(true)
			break
		}
	}
	return d.walk(parts, flags)
}

// walk is openat2's fallback: each directory component is opened with
// O_NOFOLLOW|O_DIRECTORY from its parent's descriptor, so a symlink
// anywhere fails with ELOOP and a non-directory with ENOTDIR.
func (d *Dir) walk(parts []string, flags int) (int, error) {
	fd := d.fd
	for i, p := range parts {
		last := i == len(parts)-1
		f := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if last {
			f = flags
		}
		var next int
		var err error
		for {
			next, err = unix.Openat(fd, p, f, 0)
			if err != unix.EINTR {
				break
			}
		}
		if fd != d.fd {
			unix.Close(fd)
		}
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// kind names a file type for people.
func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	}
	return "a file of unknown type"
}

// describe explains why name could not be opened: which component is not
// what it should be. It walks like the fallback, stats each component
// without following it, and reads no file.
func (d *Dir) describe(name, want string, openErr error) error {
	parts, err := checkName(name)
	if err != nil {
		return err
	}
	fd := d.fd
	defer func() {
		if fd != d.fd {
			unix.Close(fd)
		}
	}()
	for i, p := range parts {
		shown := d.Shown(strings.Join(parts[:i+1], "/"))
		var st unix.Stat_t
		if err := unix.Fstatat(fd, p, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return &UnsafeError{Path: shown, Found: "missing", Want: want}
			}
			return fmt.Errorf("open %s: %w", d.Shown(name), openErr)
		}
		typ := st.Mode & unix.S_IFMT
		if i == len(parts)-1 {
			if typ == unix.S_IFREG || (typ == unix.S_IFIFO && want == WantFIFO) {
				// What belongs there; the open failed for another reason.
				break
			}
			return &UnsafeError{Path: shown, Found: kind(st.Mode), Want: want}
		}
		if typ == unix.S_IFLNK {
			return &UnsafeError{Path: shown, Found: kind(st.Mode), Want: want}
		}
		if typ != unix.S_IFDIR {
			return &UnsafeError{Path: shown, Found: kind(st.Mode) + ", not a directory", Want: want}
		}
		next, err := unix.Openat(fd, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", d.Shown(name), openErr)
		}
		if fd != d.fd {
			unix.Close(fd)
		}
		fd = next
	}
	return fmt.Errorf("open %s: %w", d.Shown(name), openErr)
}

// WantRegular is the advice for a job whose output is not a regular file.
const WantRegular = "a job must write a regular file"

// OpenRegular opens name for reading if it is a regular file of at most
// maxBytes (no limit when maxBytes <= 0), and returns it with its size.
// A symlink (in any component), FIFO, directory, device, socket, a
// missing file or one too large is an *UnsafeError.
func (d *Dir) OpenRegular(name string, maxBytes int64) (*os.File, int64, error) {
	fd, err := d.openat(name, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return nil, 0, d.describe(name, WantRegular, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, 0, fmt.Errorf("stat %s: %w", d.Shown(name), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, 0, &UnsafeError{Path: d.Shown(name), Found: kind(st.Mode), Want: WantRegular}
	}
	if maxBytes > 0 && st.Size > maxBytes {
		unix.Close(fd)
		return nil, 0, &UnsafeError{Path: d.Shown(name), Found: fmt.Sprintf("%s, over the %s limit", units.Bytes(st.Size), units.Bytes(maxBytes)),
			Want: "a job must write less"}
	}
	return os.NewFile(uintptr(fd), d.Shown(name)), st.Size, nil
}

// WantFIFO is the advice for a job that replaced its input FIFO.
const WantFIFO = "a job must read its input from the FIFO the worker made there, not replace it"

// FIFOID returns the identity of the FIFO name, which must be one; the
// worker records it before the job starts.
func (d *Dir) FIFOID(name string) (FileID, error) {
	fd, err := d.openat(name, unix.O_PATH)
	if err != nil {
		return FileID{}, d.describe(name, WantFIFO, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return FileID{}, fmt.Errorf("stat %s: %w", d.Shown(name), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return FileID{}, &UnsafeError{Path: d.Shown(name), Found: kind(st.Mode), Want: WantFIFO}
	}
	return idOf(&st), nil
}

// OpenFIFO opens the FIFO name, which must be the one identified by want,
// non-blocking for writing (write) or reading. It never waits: with no
// reader yet, opening for writing returns ErrNoReader (ask again later).
// The file is registered with Go's poller, so a Write blocked on a full
// pipe returns once the file is closed from another goroutine. A name that
// is not that FIFO is an *UnsafeError.
func (d *Dir) OpenFIFO(name string, want FileID, write bool) (*os.File, error) {
	flags := unix.O_RDONLY | unix.O_NONBLOCK
	if write {
		flags = unix.O_WRONLY | unix.O_NONBLOCK
	}
	fd, err := d.openat(name, flags)
	if err != nil {
		if errors.Is(err, unix.ENXIO) {
			// No reader, or a socket: only the former is worth waiting for.
			if id, ierr := d.FIFOID(name); ierr != nil {
				return nil, ierr
			} else if id != want {
				return nil, &UnsafeError{Path: d.Shown(name), Found: "another FIFO than the worker's", Want: WantFIFO}
			}
			return nil, ErrNoReader
		}
		return nil, d.describe(name, WantFIFO, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat %s: %w", d.Shown(name), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		unix.Close(fd)
		return nil, &UnsafeError{Path: d.Shown(name), Found: kind(st.Mode), Want: WantFIFO}
	}
	if idOf(&st) != want {
		unix.Close(fd)
		return nil, &UnsafeError{Path: d.Shown(name), Found: "another FIFO than the worker's", Want: WantFIFO}
	}
	return os.NewFile(uintptr(fd), d.Shown(name)), nil
}

// MaxDepth is how deeply Usage follows nested directories; one descriptor
// stays open per level.
const MaxDepth = 64

// Usage returns the bytes the directory's tree occupies on disk: the
// allocated blocks of every entry, directories included, each inode
// counted once however many hard links it has. It never follows a link
// and never opens anything but directories (O_NOFOLLOW). Entries that
// vanish while it walks are skipped. A tree deeper than MaxDepth is an
// *UnsafeError: the job made it to exhaust the worker's descriptors.
func (d *Dir) Usage() (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", d.shown, err)
	}
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", d.shown, err)
	}
	u := &usage{seen: map[FileID]bool{}, shown: d.shown}
	total := st.Blocks * 512
	n, err := u.dir(fd, d.shown, 1)
	return total + n, err
}

type usage struct {
	seen  map[FileID]bool
	shown string
}

// dir sums the entries of the directory fd (which it closes).
func (u *usage) dir(fd int, shown string, depth int) (int64, error) {
	f := os.NewFile(uintptr(fd), shown)
	defer f.Close()
	var total int64
	for {
		names, err := f.Readdirnames(512)
		for _, name := range names {
			var st unix.Stat_t
			if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				continue // gone already
			}
			if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
				id := idOf(&st)
				if u.seen[id] {
					continue
				}
				u.seen[id] = true
			}
			total += st.Blocks * 512
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				continue
			}
			if depth >= MaxDepth {
				return total, &UnsafeError{Path: u.shown, Found: fmt.Sprintf("nested more than %d directories deep", MaxDepth),
					Want: "a job must keep its scratch files flatter"}
			}
			sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				continue // replaced or removed since the stat
			}
			n, err := u.dir(sub, path.Join(shown, name), depth+1)
			total += n
			if err != nil {
				return total, err
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) || len(names) == 0 {
				return total, nil
			}
			return total, fmt.Errorf("read %s: %w", shown, err)
		}
	}
}
