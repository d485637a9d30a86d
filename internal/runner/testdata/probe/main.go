// Command probe is the one program inside the runner's test image: a static
// binary with a subcommand per behaviour the tests need from a job
// container (exit codes, sleeping, allocating, copying input, chatter, and
// a security report of what the container can see and do).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe exit|sleep|alloc|cat|count|chatty|pingpong|security ...")
		os.Exit(2)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "exit":
		code, _ := strconv.Atoi(arg(args, 0, "0"))
		fmt.Println("stdout: exiting with", code)
		fmt.Fprintln(os.Stderr, "stderr: exiting with", code)
		os.Exit(code)
	case "sleep":
		fmt.Println("ready")
		for {
			time.Sleep(time.Hour)
		}
	case "alloc":
		alloc(arg(args, 0, "1024"))
	case "cat":
		copyInput(true)
	case "count":
		copyInput(false)
	case "chatty":
		chatty(arg(args, 0, "1048576"))
	case "pingpong":
		pingpong(arg(args, 0, "5"))
	case "security":
		security(args)
	case "hostile":
		hostile(args)
	default:
		fmt.Fprintln(os.Stderr, "probe: unknown subcommand", os.Args[1])
		os.Exit(2)
	}
}

func arg(args []string, i int, def string) string {
	if i < len(args) {
		return args[i]
	}
	return def
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "probe: "+format+"\n", a...)
	os.Exit(1)
}

// alloc touches memory a MiB at a time, keeping all of it, until the
// container's limit kills it or it reaches the given MiB.
func alloc(mib string) {
	n, _ := strconv.Atoi(mib)
	var keep [][]byte
	for i := 0; i < n; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = byte(i)
		}
		keep = append(keep, b)
	}
	fmt.Println("allocated", len(keep), "MiB")
}

func input() io.ReadCloser {
	p := os.Getenv("AF_INPUT")
	if p == "" || p == "-" {
		return os.Stdin
	}
	f, err := os.Open(p)
	if err != nil {
		fail("opening input: %v", err)
	}
	return f
}

// copyInput reads the whole input; with keep it copies it to AF_OUTPUT,
// otherwise it writes only the byte count there.
func copyInput(keep bool) {
	in := input()
	out, err := os.OpenFile(os.Getenv("AF_OUTPUT"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		fail("opening output: %v", err)
	}
	dst := io.Discard
	if keep {
		dst = out
	}
	n, err := io.CopyBuffer(dst, in, make([]byte, 1<<20))
	if err != nil {
		fail("copying input: %v", err)
	}
	if !keep {
		fmt.Fprintf(out, "%d\n", n)
	}
	if err := out.Close(); err != nil {
		fail("closing output: %v", err)
	}
	fmt.Println("bytes", n)
}

// chatty writes numbered 10-byte lines to stdout until it has written at
// least the given number of bytes, so tests can check exactly which bytes
// the log kept.
func chatty(total string) {
	n, _ := strconv.Atoi(total)
	w := bufio.NewWriterSize(os.Stdout, 64<<10)
	for i := 0; i*10 < n; i++ {
		fmt.Fprintf(w, "%09d\n", i)
	}
	if err := w.Flush(); err != nil {
		fail("flush: %v", err)
	}
}

// pingpong writes a line, alternating stdout and stderr, then waits for a
// byte on stdin before the next: the test sends it only once it has seen
// the line, which shows the output streams live, in order.
func pingpong(count string) {
	n, _ := strconv.Atoi(count)
	var b [1]byte
	for i := 0; i < n; i++ {
		w := os.Stdout
		if i%2 == 1 {
			w = os.Stderr
		}
		fmt.Fprintf(w, "line %d\n", i)
		if _, err := io.ReadFull(os.Stdin, b[:]); err != nil {
			fail("waiting for the go-ahead after line %d: %v", i, err)
		}
	}
	fmt.Println("done")
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// Report is what `probe security` prints as JSON.
type Report struct {
	UID, GID, EUID, EGID int
	Groups               []int
	Env                  []string
	Status               map[string]string
	Writes               map[string]string
	Dials                map[string]string
	DNS                  string
	Interfaces           []string
	Opens                map[string]string
	Found                map[string][]string
	FilesScanned         int
	Mounts               string
}

func security(args []string) {
	fset := flag.NewFlagSet("security", flag.ExitOnError)
	var dials, finds, opens multiFlag
	fset.Var(&dials, "dial", "host:port to try to connect to (repeatable)")
	// Hex, so the probe's own command line does not contain what it
	// looks for.
	fset.Var(&finds, "find-hex", "hex of a string to look for in every readable file (repeatable)")
	fset.Var(&opens, "open", "path to try to read (repeatable)")
	dnsName := fset.String("dns", "example.com", "name to resolve")
	_ = fset.Parse(args)
	for i, f := range finds {
		b, err := hex.DecodeString(f)
		if err != nil {
			fail("--find-hex %q: %v", f, err)
		}
		finds[i] = string(b)
	}

	r := Report{
		UID: os.Getuid(), GID: os.Getgid(), EUID: os.Geteuid(), EGID: os.Getegid(),
		Env:    os.Environ(),
		Status: map[string]string{},
		Writes: map[string]string{},
		Dials:  map[string]string{},
		Opens:  map[string]string{},
		Found:  map[string][]string{},
	}
	r.Groups, _ = os.Getgroups()
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (strings.HasPrefix(k, "Cap") || k == "NoNewPrivs" || k == "Seccomp") {
				r.Status[k] = strings.TrimSpace(v)
			}
		}
	}
	for _, dir := range []string{"/", "/etc", "/tmp", "/scratch"} {
		p := filepath.Join(dir, "probe-write-test")
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			r.Writes[dir] = err.Error()
		} else {
			r.Writes[dir] = "ok"
			os.Remove(p)
		}
	}
	for _, a := range dials {
		c, err := net.DialTimeout("tcp", a, 2*time.Second)
		if err != nil {
			r.Dials[a] = err.Error()
		} else {
			r.Dials[a] = "connected"
			c.Close()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	addrs, err := net.DefaultResolver.LookupHost(ctx, *dnsName)
	cancel()
	if err != nil {
		r.DNS = "error: " + err.Error()
	} else {
		r.DNS = "resolved: " + strings.Join(addrs, ",")
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			r.Interfaces = append(r.Interfaces, i.Name)
		}
	}
	for _, p := range opens {
		if b, err := os.ReadFile(p); err != nil {
			r.Opens[p] = err.Error()
		} else {
			r.Opens[p] = "read " + strconv.Itoa(len(b)) + " bytes"
		}
	}
	if len(finds) > 0 {
		_ = filepath.WalkDir("/", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() && (p == "/proc" || p == "/sys" || p == "/dev") {
				return fs.SkipDir
			}
			if !d.Type().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil
			}
			r.FilesScanned++
			for _, f := range finds {
				if bytes.Contains(b, []byte(f)) {
					r.Found[f] = append(r.Found[f], p)
				}
			}
			return nil
		})
		// The process's own environment and command line are files too.
		for _, p := range []string{"/proc/self/environ", "/proc/1/environ", "/proc/self/cmdline"} {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			r.FilesScanned++
			for _, f := range finds {
				if bytes.Contains(b, []byte(f)) {
					r.Found[f] = append(r.Found[f], p)
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		r.Mounts = string(b)
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(r); err != nil {
		fail("encoding the report: %v", err)
	}
}

// hostile does to the scratch dir what an attacking job would, says
// "ready" and sleeps (or exits 0 after "fill ... exit"):
//
//	link-input TARGET   replace the input FIFO with a symlink to TARGET
//	file-input          replace it with a regular file
//	fifo-input          replace it with another FIFO
//	fill N SIZE [exit]  write N files of SIZE bytes into /scratch
//	deep N              nest N directories in /scratch
func hostile(args []string) {
	scratch := filepath.Dir(os.Getenv("AF_OUTPUT"))
	in := filepath.Join(scratch, "input")
	// replace swaps the input for what make creates in one rename, so the
	// worker never sees it missing; the original stays linked so its
	// inode number is not reused for a new FIFO.
	replace := func(make func(string) error) {
		tmp := in + ".new"
		if err := make(tmp); err != nil {
			fail("replace input: %v", err)
		}
		if err := os.Link(in, in+".orig"); err != nil {
			fail("keep input: %v", err)
		}
		if err := os.Rename(tmp, in); err != nil {
			fail("replace input: %v", err)
		}
	}
	switch arg(args, 0, "") {
	case "link-input":
		replace(func(p string) error { return os.Symlink(arg(args, 1, "/etc/passwd"), p) })
	case "file-input":
		replace(func(p string) error { return os.WriteFile(p, nil, 0o600) })
	case "fifo-input":
		replace(mkfifo)
	case "fill":
		n, _ := strconv.Atoi(arg(args, 1, "1"))
		size, _ := strconv.Atoi(arg(args, 2, "1048576"))
		buf := make([]byte, size)
		for i := range buf {
			buf[i] = byte(i*131 + i>>8)
		}
		for i := 0; i < n; i++ {
			if err := os.WriteFile(filepath.Join(scratch, fmt.Sprintf("fill-%d", i)), buf, 0o600); err != nil {
				fail("fill: %v", err)
			}
		}
		fmt.Println("filled")
		if arg(args, 3, "") == "exit" {
			os.Exit(0)
		}
	case "deep":
		n, _ := strconv.Atoi(arg(args, 1, "100"))
		p := scratch
		for i := 0; i < n; i++ {
			p = filepath.Join(p, "d")
		}
		if err := os.MkdirAll(p, 0o700); err != nil {
			fail("deep: %v", err)
		}
	default:
		fail("hostile: unknown action %q", arg(args, 0, ""))
	}
	fmt.Println("ready")
	for {
		time.Sleep(time.Hour)
	}
}

func mkfifo(p string) error { return syscall.Mkfifo(p, 0o600) }
