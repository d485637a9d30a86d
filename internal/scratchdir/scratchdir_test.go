package scratchdir

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// canary is what a host file outside the scratch dir holds: no open may
// ever return it.
const canary = "canary-7f3a9c-host-secret"

// setup makes a scratch dir holding every kind of entry a hostile job can
// leave, and a host file and directory outside it that links point at.
func setup(t *testing.T) (scratch string, host string) {
	t.Helper()
	root := t.TempDir()
	host = filepath.Join(root, "host")
	scratch = filepath.Join(root, "scratch")
	for _, d := range []string{host, scratch, filepath.Join(scratch, "sub"), filepath.Join(scratch, "sub", "deeper")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(host, "secret"), canary)
	write(filepath.Join(host, "inner"), canary)
	write(filepath.Join(scratch, "output"), "k\t1\n")
	write(filepath.Join(scratch, "big"), strings.Repeat("x", 1000))
	write(filepath.Join(scratch, "sub", "deeper", "file"), "deep\n")
	links := map[string]string{
		"link":            filepath.Join(host, "secret"),
		"rellink":         "../host/secret",
		"linkdir":         host,
		"inlink":          "output", // even a link that stays inside is refused
		"sub/link":        filepath.Join(host, "secret"),
		"proclink":        "/proc/self/root" + filepath.Join(host, "secret"),
		"sub/deeper/dots": "../../../host/secret",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(scratch, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mkfifo(filepath.Join(scratch, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(scratch, "other-fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// The job cannot make devices (no CAP_MKNOD); a worker bug or a
		// shared host dir could still leave one: it is never opened.
		if err := unix.Mknod(filepath.Join(scratch, "null"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("unix", filepath.Join(scratch, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return scratch, host
}

// modes runs f with openat2 and with the per-component fallback.
func modes(t *testing.T, f func(t *testing.T, walkOnly bool)) {
	for _, m := range []struct {
		name     string
		walkOnly bool
	}{{"openat2", false}, {"fallback", true}} {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			f(t, m.walkOnly)
		})
	}
}

func open(t *testing.T, scratch string, walkOnly bool) *Dir {
	t.Helper()
	d, err := Open(scratch, "/scratch")
	if err != nil {
		t.Fatal(err)
	}
	d.walkOnly = walkOnly
	t.Cleanup(func() { d.Close() })
	return d
}

func TestOpenRegular(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, walkOnly bool) {
		scratch, _ := setup(t)
		d := open(t, scratch, walkOnly)
		for _, tc := range []struct {
			name    string
			max     int64
			content string // for a file that opens
			// want is the whole message for a refused one.
			want string
			bad  bool // refused without an UnsafeError (a bad name)
		}{
			{name: "output", content: "k\t1\n"},
			{name: "sub/deeper/file", content: "deep\n"},
			{name: "big", max: 1000, content: strings.Repeat("x", 1000)},
			{name: "big", max: 999, want: "/scratch/big is 1000 B, over the 999 B limit; a job must write less"},
			{name: "link", want: "/scratch/link is a symlink; a job must write a regular file"},
			{name: "rellink", want: "/scratch/rellink is a symlink; a job must write a regular file"},
			{name: "inlink", want: "/scratch/inlink is a symlink; a job must write a regular file"},
			{name: "proclink", want: "/scratch/proclink is a symlink; a job must write a regular file"},
			{name: "linkdir/inner", want: "/scratch/linkdir is a symlink; a job must write a regular file"},
			{name: "sub/link", want: "/scratch/sub/link is a symlink; a job must write a regular file"},
			{name: "sub/deeper/dots", want: "/scratch/sub/deeper/dots is a symlink; a job must write a regular file"},
			{name: "fifo", want: "/scratch/fifo is a FIFO; a job must write a regular file"},
			{name: "sub", want: "/scratch/sub is a directory; a job must write a regular file"},
			{name: "sock", want: "/scratch/sock is a socket; a job must write a regular file"},
			{name: "output/x", want: "/scratch/output is a regular file, not a directory; a job must write a regular file"},
			{name: "missing", want: "/scratch/missing is missing; a job must write a regular file"},
			{name: "sub/missing/x", want: "/scratch/sub/missing is missing; a job must write a regular file"},
			{name: "null", want: "/scratch/null is a character device; a job must write a regular file"},
			{name: "../host/secret", bad: true},
			{name: "sub/../../host/secret", bad: true},
			{name: "/etc/passwd", bad: true},
			{name: "./output", bad: true},
			{name: "sub//deeper/file", bad: true},
			{name: "", bad: true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if tc.name == "null" && os.Geteuid() != 0 {
					t.Skip("making a device node needs root")
				}
				// Whatever happens, the open must not block (a FIFO).
				type ret struct {
					f    *os.File
					size int64
					err  error
				}
				done := make(chan ret, 1)
				go func() {
					f, size, err := d.OpenRegular(tc.name, tc.max)
					done <- ret{f, size, err}
				}()
				var r ret
				select {
				case r = <-done:
				case <-time.After(10 * time.Second):
					t.Fatal("OpenRegular blocked")
				}
				if r.err == nil {
					defer r.f.Close()
					b, err := io.ReadAll(r.f)
					if err != nil {
						t.Fatal(err)
					}
					if tc.content == "" || string(b) != tc.content || r.size != int64(len(b)) {
						t.Fatalf("opened, read %q (size %d); want %q", b, r.size, tc.content)
					}
					return
				}
				if strings.Contains(r.err.Error(), canary) {
					t.Fatalf("the error quotes the host file: %v", r.err)
				}
				var ue *UnsafeError
				isUnsafe := errors.As(r.err, &ue)
				switch {
				case tc.bad:
					if isUnsafe || !strings.Contains(r.err.Error(), "bad name") {
						t.Fatalf("error %v, want a bad name", r.err)
					}
				case tc.want == "":
					t.Fatalf("refused: %v", r.err)
				case !isUnsafe || r.err.Error() != tc.want:
					t.Fatalf("error %v (unsafe %v)\nwant %s", r.err, isUnsafe, tc.want)
				}
			})
		}
	})
}

func TestOpenFIFO(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, walkOnly bool) {
		scratch, _ := setup(t)
		d := open(t, scratch, walkOnly)
		id, err := d.FIFOID("fifo")
		if err != nil {
			t.Fatal(err)
		}
		// No reader yet: no waiting, ask again later.
		if _, err := d.OpenFIFO("fifo", id, true); !errors.Is(err, ErrNoReader) {
			t.Fatalf("open with no reader: %v, want ErrNoReader", err)
		}
		for _, tc := range []struct{ name, want string }{
			{"other-fifo", "/scratch/other-fifo is another FIFO than the worker's; " + WantFIFO},
			{"link", "/scratch/link is a symlink; " + WantFIFO},
			{"output", "/scratch/output is a regular file; " + WantFIFO},
			{"sock", "/scratch/sock is a socket; " + WantFIFO},
			{"missing", "/scratch/missing is missing; " + WantFIFO},
		} {
			for _, write := range []bool{true, false} {
				_, err := d.OpenFIFO(tc.name, id, write)
				var ue *UnsafeError
				if !errors.As(err, &ue) || err.Error() != tc.want {
					t.Errorf("OpenFIFO(%s, write %v): %v\nwant %s", tc.name, write, err, tc.want)
				}
			}
		}
		// The worker's release open for reading never blocks.
		r, err := d.OpenFIFO("fifo", id, false)
		if err != nil {
			t.Fatal(err)
		}
		w, err := d.OpenFIFO("fifo", id, true)
		if err != nil {
			t.Fatalf("open with a reader: %v", err)
		}
		if _, err := w.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("read %q %v", buf, err)
		}
		// A write blocked on a full pipe returns when the file is closed
		// elsewhere: that is how the runner frees a feeder whose job
		// stopped reading.
		written := make(chan error, 1)
		go func() {
			_, err := w.Write(make([]byte, 8<<20))
			written <- err
		}()
		select {
		case err := <-written:
			t.Fatalf("an 8 MiB write into an unread pipe returned: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		w.Close()
		select {
		case err := <-written:
			if err == nil {
				t.Fatal("the interrupted write reported success")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("closing the file did not free the blocked write")
		}
		r.Close()
		if _, err := d.FIFOID("output"); err == nil {
			t.Fatal("FIFOID accepted a regular file")
		}
	})
}

func TestUsage(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, walkOnly bool) {
		scratch, host := setup(t)
		// A big host file behind a link must not count, nor be read.
		big := filepath.Join(host, "big")
		if err := os.WriteFile(big, make([]byte, 8<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(big, filepath.Join(scratch, "biglink")); err != nil {
			t.Fatal(err)
		}
		d := open(t, scratch, walkOnly)
		before, err := d.Usage()
		if err != nil {
			t.Fatal(err)
		}
		if before <= 0 || before > 1<<20 {
			t.Fatalf("usage %d: want the few small files, not the linked 8 MiB", before)
		}
		// Writing 4 MiB (random-ish, so no filesystem compresses it) shows.
		data := make([]byte, 4<<20)
		for i := range data {
			data[i] = byte(i*7 + i>>9)
		}
		p := filepath.Join(scratch, "sub", "deeper", "blob")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		// Hard links of it count once.
		for _, n := range []string{"hard1", "hard2"} {
			if err := os.Link(p, filepath.Join(scratch, n)); err != nil {
				t.Fatal(err)
			}
		}
		after, err := d.Usage()
		if err != nil {
			t.Fatal(err)
		}
		if grew := after - before; grew < 4<<20 || grew > 5<<20 {
			t.Fatalf("usage grew by %d after writing 4 MiB once (linked twice)", grew)
		}
		// A sparse file counts what it allocates, not its size.
		f, err := os.Create(filepath.Join(scratch, "sparse"))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(1 << 40); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if n, err := d.Usage(); err != nil || n-after > 1<<20 {
			t.Fatalf("usage %d (%v) with a 1 TiB sparse file, want about %d", n, err, after)
		}
	})
}

func TestUsageRefusesDeepTrees(t *testing.T) {
	t.Parallel()
	scratch := t.TempDir()
	p := scratch
	for i := 0; i < MaxDepth+1; i++ {
		p = filepath.Join(p, "d")
	}
	if err := os.MkdirAll(p, 0o700); err != nil {
		t.Fatal(err)
	}
	d := open(t, scratch, false)
	_, err := d.Usage()
	var ue *UnsafeError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "/scratch is nested more than 64 directories deep") {
		t.Fatalf("usage of a %d-deep tree: %v", MaxDepth+1, err)
	}
}

func TestOpenRefusesALinkAsTheDir(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.Symlink(root, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(root, "link"), "/scratch"); err == nil {
		t.Fatal("Open followed a symlink")
	}
}
