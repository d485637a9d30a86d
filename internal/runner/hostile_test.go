package runner

// A hostile job against the runner: it replaces its input FIFO, never
// opens it, or fills its scratch dir. The runner must never follow what
// the job planted, never hang on it, and stop a job over its scratch
// limit.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

type runRet struct {
	res Result
	err error
}

func runAsync(ctx context.Context, e *env, spec Spec, streams Streams) <-chan runRet {
	done := make(chan runRet, 1)
	go func() {
		res, err := e.r.Run(ctx, spec, streams)
		done <- runRet{res, err}
	}()
	return done
}

func waitRun(t *testing.T, done <-chan runRet, what string) runRet {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(60 * time.Second):
		t.Fatalf("Run did not return: %s", what)
		return runRet{}
	}
}

func TestReplacedInputFIFOFailsTheRun(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, found string
		args        func(target string) []string
	}{
		{"symlink to a host file", "a symlink", func(target string) []string { return []string{"link-input", target} }},
		{"symlink to a new host path", "a symlink", func(target string) []string { return []string{"link-input", target + ".new"} }},
		{"regular file", "a regular file", func(string) []string { return []string{"file-input"} }},
		{"another fifo", "another FIFO than the worker's", func(string) []string { return []string{"fifo-input"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A host file the runner (root) would overwrite with the task's
			// input if it followed the link.
			target := filepath.Join(t.TempDir(), "host-file")
			if err := os.WriteFile(target, []byte("host content"), 0o644); err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, Options{})
			spec := e.spec(append([]string{"hostile"}, tc.args(target)...)...)
			spec.Input = InputFIFO
			r := waitRun(t, runAsync(context.Background(), e, spec, Streams{Stdin: &pattern{size: 4 << 20}}), "replaced fifo")
			if r.err != nil {
				t.Fatalf("Run: %v, want a failure", r.err)
			}
			want := "/scratch/input is " + tc.found + "; a job must read its input from the FIFO the worker made there, not replace it"
			if r.res.Outcome != OutcomeFailed || r.res.Message != want {
				t.Errorf("result %v %q\nwant failed %q", r.res.Outcome, r.res.Message, want)
			}
			if r.res.InputBytes != 0 {
				t.Errorf("%d input bytes went somewhere", r.res.InputBytes)
			}
			if b, err := os.ReadFile(target); err != nil || string(b) != "host content" {
				t.Errorf("host file now %q (%v)", b, err)
			}
			if _, err := os.Lstat(target + ".new"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the runner created the link's target: %v", err)
			}
		})
	}
}

// TestJobNeverOpeningItsInputIsFreed: a job that never opens its input
// FIFO holds the feeder in its wait for a reader; cancellation (worker
// shutdown, `af cancel`) and maxRunTime both end the run.
func TestJobNeverOpeningItsInputIsFreed(t *testing.T) {
	t.Parallel()
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		spec := e.spec("sleep")
		spec.Input = InputFIFO
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		log := newSyncBuffer()
		done := runAsync(ctx, e, spec, Streams{Stdin: &pattern{size: 4 << 20}, Stdout: log})
		log.waitFor(t, "ready")
		cancel()
		r := waitRun(t, done, "after cancel")
		var ex *Exception
		if !errors.As(r.err, &ex) || ex.Reason != taskdef.ReasonWorkerShutdown {
			t.Errorf("error %v, want a worker-shutdown exception", r.err)
		}
	})
	t.Run("maxRunTime", func(t *testing.T) {
		t.Parallel()
		clock := newFakeClock()
		e := newEnv(t, Options{Clock: clock})
		spec := e.spec("sleep")
		spec.Input = InputFIFO
		spec.MaxRunTime = time.Minute
		log := newSyncBuffer()
		done := runAsync(context.Background(), e, spec, Streams{Stdin: &pattern{size: 4 << 20}, Stdout: log})
		log.waitFor(t, "ready")
		clock.WaitForTimer(t)
		clock.Advance(time.Minute)
		r := waitRun(t, done, "after maxRunTime")
		if r.err != nil || r.res.Outcome != OutcomeFailed || !r.res.TimedOut {
			t.Errorf("result %+v %v, want a timed-out failure", r.res, r.err)
		}
	})
}

func TestScratchLimit(t *testing.T) {
	t.Parallel()
	const limit = 4 << 20
	wantMsg := "the job wrote more than 4.0 MiB to /scratch (the worker's --max-scratch-bytes); write less or ask the operator"
	t.Run("watched while it runs", func(t *testing.T) {
		t.Parallel()
		clock := newFakeClock()
		e := newEnv(t, Options{Clock: clock})
		// Three 2 MiB files: each under the per-file limit, 6 MiB in all.
		spec := e.spec("hostile", "fill", "3", "2097152")
		spec.ScratchLimit = limit
		spec.MaxRunTime = 0
		log := newSyncBuffer()
		done := runAsync(context.Background(), e, spec, Streams{Stdout: log})
		log.waitFor(t, "ready")
		clock.WaitForTimer(t)
		clock.Advance(time.Second)
		r := waitRun(t, done, "over the scratch limit")
		if r.err != nil || r.res.Outcome != OutcomeFailed || !r.res.ScratchExceeded || r.res.Message != wantMsg {
			t.Errorf("result %v exceeded %v %q (%v)\nwant failed %q", r.res.Outcome, r.res.ScratchExceeded, r.res.Message, r.err, wantMsg)
		}
		if r.res.ScratchBytes < 6<<20 {
			t.Errorf("measured %d bytes, want at least the 6 MiB written", r.res.ScratchBytes)
		}
	})
	t.Run("filled, then exited 0", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		spec := e.spec("hostile", "fill", "3", "2097152", "exit")
		spec.ScratchLimit = limit
		r := waitRun(t, runAsync(context.Background(), e, spec, Streams{}), "filled and exited")
		if r.err != nil || r.res.Outcome != OutcomeFailed || r.res.Message != wantMsg {
			t.Errorf("result %v %q (%v)\nwant failed %q", r.res.Outcome, r.res.Message, r.err, wantMsg)
		}
	})
	t.Run("one file over the limit", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		spec := e.spec("hostile", "fill", "1", "8388608", "exit")
		spec.ScratchLimit = limit
		out := newSyncBuffer()
		r := waitRun(t, runAsync(context.Background(), e, spec, Streams{Stdout: out, Stderr: out}), "one big file")
		if r.err != nil || r.res.Outcome != OutcomeFailed || r.res.Message != wantMsg {
			t.Fatalf("result %v %q (%v)\nwant failed %q", r.res.Outcome, r.res.Message, r.err, wantMsg)
		}
		// The kernel stops the file a byte past the limit (RLIMIT_FSIZE):
		// the job gets SIGXFSZ or EFBIG, and the dir never holds more.
		if !strings.Contains(out.String(), "file too large") && r.res.ExitCode != 128+int(syscall.SIGXFSZ) {
			t.Errorf("exit %d, output %q: want SIGXFSZ or EFBIG", r.res.ExitCode, out.String())
		}
		if r.res.ScratchBytes > limit+64<<10 {
			t.Errorf("the dir holds %d bytes, over the %d limit", r.res.ScratchBytes, limit)
		}
	})
	t.Run("under the limit", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{})
		spec := e.spec("hostile", "fill", "1", "1048576", "exit")
		spec.ScratchLimit = limit
		r := waitRun(t, runAsync(context.Background(), e, spec, Streams{}), "under the limit")
		if r.err != nil || r.res.Outcome != OutcomeSucceeded || r.res.ScratchExceeded {
			t.Errorf("result %+v %v, want success", r.res, r.err)
		}
	})
	t.Run("too deep to measure", func(t *testing.T) {
		t.Parallel()
		clock := newFakeClock()
		e := newEnv(t, Options{Clock: clock})
		spec := e.spec("hostile", "deep", "100")
		spec.ScratchLimit = limit
		spec.MaxRunTime = 0
		log := newSyncBuffer()
		done := runAsync(context.Background(), e, spec, Streams{Stdout: log})
		log.waitFor(t, "ready")
		clock.WaitForTimer(t)
		clock.Advance(time.Second)
		r := waitRun(t, done, "deep tree")
		if r.err != nil || r.res.Outcome != OutcomeFailed || !strings.Contains(r.res.Message, "/scratch is nested more than 64 directories deep") {
			t.Errorf("result %v %q (%v)", r.res.Outcome, r.res.Message, r.err)
		}
	})
}

func TestScratchLimitIsTheFileSizeLimit(t *testing.T) {
	t.Parallel()
	spec := Spec{TaskID: "t", WorkerID: "w", Kind: taskdef.KindMapper, Image: "img", ScratchDir: "/s", ScratchLimit: 5 << 20}
	_, host, err := ContainerConfig(spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(host.Ulimits) != 1 || host.Ulimits[0].Name != "fsize" || host.Ulimits[0].Soft != 5<<20+1 || host.Ulimits[0].Hard != 5<<20+1 {
		t.Errorf("ulimits %+v, want fsize 5 MiB + 1", host.Ulimits)
	}
	spec.ScratchLimit = 0
	if _, host, _ := ContainerConfig(spec); len(host.Ulimits) != 0 {
		t.Errorf("ulimits %+v without a scratch limit", host.Ulimits)
	}
}
