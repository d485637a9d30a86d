package hosttest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopWait bounds how long Stop waits for a signaled process before it
// kills it with SIGKILL.
const stopWait = 15 * time.Second

// Proc is one process run inside a host's namespace; it can be stopped,
// killed and started again with the same command line and environment.
type Proc struct {
	Name string
	Host *Host
	// LogPath collects the process's stdout and stderr, across restarts.
	LogPath string
	argv    []string
	env     []string
	logf    Logf

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// NewProc describes a process; Start runs it.
func NewProc(h *Host, name, logPath string, env []string, logf Logf, argv ...string) *Proc {
	return &Proc{Name: name, Host: h, LogPath: logPath, argv: argv, env: env, logf: logf}
}

// Start runs the process in its host's namespace (ip netns exec, which
// execs the command itself: the pid is the process's). An error if it
// runs already.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running() {
		return fmt.Errorf("hosttest: %s runs already", p.Name)
	}
	logFile, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("hosttest: %s log: %w", p.Name, err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "=== hosttest: start %s in %s at %s\n", p.Name, p.Host.NS, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command("ip", append([]string{"netns", "exec", p.Host.NS}, p.argv...)...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group: a ^C to `make cluster`'s terminal does not
	// reach it; the harness stops it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("hosttest: start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	p.logf("hosttest: started %s (pid %d) in %s: %s", p.Name, cmd.Process.Pid, p.Host.NS, strings.Join(p.argv, " "))
	return nil
}

func (p *Proc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Running reports whether the process is alive.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running()
}

// Pid is the running process's id (0 when it is not running).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Signal sends sig and waits (bounded) for the process to exit; after
// stopWait it is killed with SIGKILL. A process that is not running is
// no error, so cleanup may call it on anything.
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	alive := p.running()
	p.mu.Unlock()
	if !alive {
		return nil
	}
	p.logf("hosttest: %s %s (pid %d)", sig, p.Name, cmd.Process.Pid)
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("hosttest: signal %s: %w", p.Name, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(stopWait):
	}
	p.logf("hosttest: %s did not exit %s after %s: SIGKILL", p.Name, sig, stopWait)
	_ = cmd.Process.Kill()
	select {
	case <-done:
		return nil
	case <-time.After(stopWait):
		return fmt.Errorf("hosttest: %s (pid %d) survives SIGKILL", p.Name, cmd.Process.Pid)
	}
}

// Stop ends the process gracefully (SIGTERM, then SIGKILL after 15 s).
func (p *Proc) Stop() error { return p.Signal(syscall.SIGTERM) }

// Kill ends it at once (SIGKILL), as a crash does.
func (p *Proc) Kill() error { return p.Signal(syscall.SIGKILL) }

// Restart stops the process with sig and starts it again.
func (p *Proc) Restart(sig syscall.Signal) error {
	if err := p.Signal(sig); err != nil {
		return err
	}
	return p.Start()
}

// Log returns what the process wrote so far (its last max bytes).
func (p *Proc) Log(max int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
