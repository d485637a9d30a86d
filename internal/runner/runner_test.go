package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/taskdef"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

func TestRunExitCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code    int
		outcome Outcome
		reason  string
		message string
	}{
		{0, OutcomeSucceeded, taskdef.ReasonCompleted, "exited with code 0"},
		{3, OutcomeFailed, taskdef.ReasonFailed, "the job exited with code 3"},
		{1, OutcomeFailed, taskdef.ReasonFailed, "the job exited with code 1"},
	} {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{})
			stdout, stderr := newSyncBuffer(), newSyncBuffer()
			res, err := e.r.Run(context.Background(), e.spec("exit", strconv.Itoa(tc.code)), Streams{Stdout: stdout, Stderr: stderr})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Outcome != tc.outcome || res.ExitCode != tc.code || res.Reason != tc.reason {
				t.Errorf("outcome %v exit %d reason %q, want %v %d %q", res.Outcome, res.ExitCode, res.Reason, tc.outcome, tc.code, tc.reason)
			}
			if !strings.Contains(res.Message, tc.message) {
				t.Errorf("message %q, want it to contain %q", res.Message, tc.message)
			}
			if want := fmt.Sprintf("stdout: exiting with %d\n", tc.code); stdout.String() != want {
				t.Errorf("stdout %q, want %q", stdout.String(), want)
			}
			if want := fmt.Sprintf("stderr: exiting with %d\n", tc.code); stderr.String() != want {
				t.Errorf("stderr %q, want %q", stderr.String(), want)
			}
			if res.OOMKilled || res.TimedOut || res.ContainerID == "" {
				t.Errorf("result %+v", res)
			}
			if res.Finished.Before(res.Started) {
				t.Errorf("finished %v before started %v", res.Finished, res.Started)
			}
			if left := e.containers(); len(left) != 0 {
				t.Errorf("container not removed: %+v", left)
			}
		})
	}
}

func TestMaxRunTimeKills(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	e := newEnv(t, Options{Clock: clock})
	spec := e.spec("sleep")
	spec.MaxRunTime = 90 * time.Second
	stdout := newSyncBuffer()
	type ret struct {
		res Result
		err error
	}
	done := make(chan ret, 1)
	go func() {
		res, err := e.r.Run(context.Background(), spec, Streams{Stdout: stdout})
		done <- ret{res, err}
	}()
	stdout.waitFor(t, "ready")
	clock.WaitForTimer(t)
	clock.Advance(89 * time.Second)
	select {
	case r := <-done:
		t.Fatalf("Run returned before maxRunTime: %+v %v", r.res, r.err)
	default:
	}
	clock.Advance(time.Second)
	var r ret
	select {
	case r = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return after maxRunTime")
	}
	if r.err != nil {
		t.Fatalf("Run: %v", r.err)
	}
	if r.res.Outcome != OutcomeFailed || !r.res.TimedOut || r.res.Reason != taskdef.ReasonFailed {
		t.Errorf("result %+v, want a timed-out failure", r.res)
	}
	if !strings.HasPrefix(r.res.Message, "max run time exceeded") {
		t.Errorf("message %q", r.res.Message)
	}
	if got := r.res.Finished.Sub(r.res.Started); got != 90*time.Second {
		t.Errorf("duration on the fake clock %v, want 90s", got)
	}
}

func TestOutOfMemoryIsAFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	spec := e.spec("alloc", "1024")
	spec.Limits.MemoryBytes = 48 << 20
	res, err := e.r.Run(context.Background(), spec, Streams{})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Outcome != OutcomeFailed || !res.OOMKilled || res.ExitCode == 0 {
		t.Fatalf("result %+v, want an OOM failure", res)
	}
	if want := "out of memory; raise the task's memory limit (it was 48 MiB)"; res.Message != want {
		t.Errorf("message %q, want %q", res.Message, want)
	}
}

// pattern is deterministic, varied input: a copy that drops, duplicates or
// reorders a block changes its hash.
type pattern struct {
	n, size int64
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.n >= p.size {
		return 0, io.EOF
	}
	if rem := p.size - p.n; int64(len(b)) > rem {
		b = b[:rem]
	}
	for i := range b {
		x := p.n + int64(i)
		b[i] = byte(x ^ x>>8 ^ x>>16)
	}
	p.n += int64(len(b))
	return len(b), nil
}

func TestInputPaths(t *testing.T) {
	t.Parallel()
	// Small inputs fit in the pipe before the container opens its end:
	// they must still arrive, and their end be seen.
	for _, size := range []int64{0, 10, 8<<20 + 12345} {
		want := sha256.New()
		if _, err := io.Copy(want, &pattern{size: size}); err != nil {
			t.Fatal(err)
		}
		for _, mode := range []InputMode{InputStdin, InputFIFO} {
			t.Run(fmt.Sprintf("%s/%d", mode, size), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, Options{})
				spec := e.spec("cat")
				spec.Input = mode
				stdout := newSyncBuffer()
				res, err := e.r.Run(context.Background(), spec, Streams{Stdin: &pattern{size: size}, Stdout: stdout, Stderr: stdout})
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if res.Outcome != OutcomeSucceeded {
					t.Fatalf("result %+v\nlog: %s", res, stdout.String())
				}
				if res.InputBytes != size || !res.InputComplete {
					t.Errorf("input bytes %d complete %v, want %d true", res.InputBytes, res.InputComplete, size)
				}
				if want := fmt.Sprintf("bytes %d\n", size); stdout.String() != want {
					t.Errorf("log %q, want %q", stdout.String(), want)
				}
				f, err := os.Open(e.output)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				got := sha256.New()
				if _, err := io.Copy(got, f); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
					t.Error("the output file differs from the input")
				}
			})
		}
	}
}

// A job may stop reading early; the runner must not hang on the input, and
// the exit code decides the outcome.
func TestInputNotConsumed(t *testing.T) {
	t.Parallel()
	for _, mode := range []InputMode{InputStdin, InputFIFO} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{})
			spec := e.spec("exit", "0")
			spec.Input = mode
			res, err := e.r.Run(context.Background(), spec, Streams{Stdin: &pattern{size: 64 << 20}})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Outcome != OutcomeSucceeded || res.InputComplete || res.InputBytes >= 64<<20 {
				t.Errorf("result %+v, want success with the input incomplete", res)
			}
		})
	}
}

type corruptInput struct{ key string }

func (e *corruptInput) Error() string { return "corrupt input in " + e.key }

// failingReader returns n bytes, then err.
type failingReader struct {
	n   int
	err error
}

func (r *failingReader) Read(b []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	k := min(len(b), r.n)
	for i := range b[:k] {
		b[i] = 'x'
	}
	r.n -= k
	return k, nil
}

func TestInputReaderErrorAbortsTheRun(t *testing.T) {
	t.Parallel()
	for _, mode := range []InputMode{InputStdin, InputFIFO} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{})
			spec := e.spec("cat")
			spec.Input = mode
			res, err := e.r.Run(context.Background(), spec, Streams{Stdin: &failingReader{n: 1000, err: &corruptInput{key: "a/b.gz"}}})
			var ce *corruptInput
			if !errors.As(err, &ce) || ce.key != "a/b.gz" {
				t.Fatalf("error %v, want it to wrap the reader's error", err)
			}
			var ex *Exception
			if !errors.As(err, &ex) || ex.Reason != taskdef.ReasonInternalError {
				t.Errorf("error %#v, want an internal-error Exception", err)
			}
			if res.Outcome != OutcomeException || res.InputComplete {
				t.Errorf("result %+v", res)
			}
		})
	}
}

func TestCancelKillsAndRemoves(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	spec := e.spec("sleep")
	spec.RunID = 3
	spec.Limits = taskdef.Limits{MemoryBytes: 100 << 20, CPUs: 0.5, Pids: 64}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := newSyncBuffer()
	type ret struct {
		res Result
		err error
	}
	done := make(chan ret, 1)
	go func() {
		res, err := e.r.Run(ctx, spec, Streams{Stdout: stdout})
		done <- ret{res, err}
	}()
	stdout.waitFor(t, "ready")

	// While it runs: the engine applied the labels and the locked-down
	// host config.
	list := e.containers()
	if len(list) != 1 {
		t.Fatalf("%d containers, want 1", len(list))
	}
	for k, v := range map[string]string{LabelManaged: "true", LabelTaskID: e.taskID, LabelRunID: "3", LabelWorkerID: e.workerID, LabelTaskKind: "mapper"} {
		if list[0].Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, list[0].Labels[k], v)
		}
	}
	ictx, icancel := context.WithTimeout(context.Background(), 30*time.Second)
	info, err := e.cli.ContainerInspect(ictx, list[0].ID)
	icancel()
	if err != nil {
		t.Fatal(err)
	}
	hc := info.HostConfig
	if string(hc.NetworkMode) != "none" || !hc.ReadonlyRootfs || hc.Privileged || hc.Memory != 100<<20 ||
		hc.MemorySwap != 100<<20 || hc.NanoCPUs != 5e8 || hc.PidsLimit == nil || *hc.PidsLimit != 64 ||
		info.Config.User != DefaultUser || len(hc.Binds)+len(hc.Mounts) != 1 {
		t.Errorf("host config not locked down: %+v user %q", hc, info.Config.User)
	}

	cancel()
	var r ret
	select {
	case r = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	var ex *Exception
	if !errors.As(r.err, &ex) || ex.Reason != taskdef.ReasonWorkerShutdown || !errors.Is(r.err, context.Canceled) {
		t.Errorf("error %v, want a worker-shutdown exception", r.err)
	}
	if r.res.Outcome != OutcomeException {
		t.Errorf("outcome %v", r.res.Outcome)
	}
	ictx, icancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer icancel()
	if _, err := e.cli.ContainerInspect(ictx, list[0].ID); err == nil {
		t.Error("the container still exists after Run returned")
	}
}

func TestLogStreamsLiveInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	spec := e.spec("pingpong", "6")
	spec.Input = InputStdin
	log := newSyncBuffer()
	goAhead, feed := io.Pipe()
	done := make(chan error, 1)
	go func() {
		res, err := e.r.Run(context.Background(), spec, Streams{Stdin: goAhead, Stdout: log, Stderr: log})
		if err == nil && res.Outcome != OutcomeSucceeded {
			err = fmt.Errorf("result %+v", res)
		}
		done <- err
	}()
	want := ""
	for i := 0; i < 6; i++ {
		want += fmt.Sprintf("line %d\n", i)
		// The probe waits for our byte before its next line, so seeing
		// this line now proves it came through while the job ran.
		log.waitFor(t, want)
		if got := log.String(); got != want {
			t.Fatalf("log %q, want %q", got, want)
		}
		if _, err := feed.Write([]byte{'.'}); err != nil {
			t.Fatal(err)
		}
	}
	feed.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := log.String(); got != want+"done\n" {
		t.Errorf("log %q, want %q", got, want+"done\n")
	}
}

func TestLogBound(t *testing.T) {
	t.Parallel()
	const head, tail, total = 64 << 10, 32 << 10, 5 << 20
	e := newEnv(t, Options{LogHead: head, LogTail: tail})
	log := newSyncBuffer()
	res, err := e.r.Run(context.Background(), e.spec("chatty", strconv.Itoa(total)), Streams{Stdout: log, Stderr: log})
	if err != nil || res.Outcome != OutcomeSucceeded {
		t.Fatalf("Run: %+v %v", res, err)
	}
	var full strings.Builder
	for i := 0; i*10 < total; i++ {
		fmt.Fprintf(&full, "%09d\n", i)
	}
	all := full.String()
	elided := len(all) - head - tail
	want := all[:head] + fmt.Sprintf("\n[… %d bytes elided …]\n", elided) + all[len(all)-tail:]
	if got := log.String(); got != want {
		t.Errorf("log of %d bytes differs from the expected %d; head ok %v, tail ok %v",
			len(got), len(want), strings.HasPrefix(got, all[:head]), strings.HasSuffix(got, all[len(all)-tail:]))
	}
	if res.LogBytes != int64(len(all)) || res.LogElided != int64(elided) {
		t.Errorf("log bytes %d elided %d, want %d %d", res.LogBytes, res.LogElided, len(all), elided)
	}
}

func TestMissingImageIsAnException(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	spec := e.spec("exit", "0")
	spec.Image = "af-runner-test/does-not-exist:never"
	res, err := e.r.Run(context.Background(), spec, Streams{})
	var ex *Exception
	if !errors.As(err, &ex) || ex.Reason != taskdef.ReasonResourceUnavail {
		t.Fatalf("error %v, want a resource-unavailable exception", err)
	}
	want := "image af-runner-test/does-not-exist:never is not on this worker: build it with `make images` or load it with `docker load`"
	if ex.Message != want {
		t.Errorf("message %q, want %q", ex.Message, want)
	}
	if res.Outcome != OutcomeException || res.ContainerID != "" {
		t.Errorf("result %+v", res)
	}
}

func TestSecretInTaskEnvIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	spec := e.spec("exit", "0")
	spec.Env = map[string]string{"AWS_SECRET_ACCESS_KEY": "abc", "FOO": "bar"}
	res, err := e.r.Run(context.Background(), spec, Streams{})
	var ex *Exception
	if !errors.As(err, &ex) || ex.Reason != taskdef.ReasonMalformedPayload || !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY looks like a secret") {
		t.Fatalf("error %v, want a malformed-payload exception naming the variable", err)
	}
	if strings.Contains(err.Error(), "abc") || strings.Contains(res.Message, "abc") {
		t.Errorf("the secret's value leaked into the error: %v", err)
	}
	if res.ContainerID != "" {
		t.Errorf("a container was created: %+v", res)
	}
}

func TestReapOrphans(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	other := newEnv(t, Options{})
	ctx := context.Background()
	// Containers as a killed worker leaves them: one running, one exited,
	// and one belonging to another worker on the same engine.
	mk := func(env *env, start bool, cmd ...string) string {
		spec := env.spec(cmd...)
		spec.WorkerID = env.workerID
		cfg, hc, err := ContainerConfig(spec)
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, err := env.cli.ContainerCreate(cctx, cfg, hc, nil, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if start {
			if err := env.cli.ContainerStart(cctx, c.ID, container.StartOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		return c.ID
	}
	mk(e, true, "sleep")
	mk(e, false, "exit", "0")
	keep := mk(other, true, "sleep")
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_ = other.cli.ContainerRemove(cctx, keep, container.RemoveOptions{Force: true})
	})

	n, err := e.r.ReapOrphans(ctx, e.workerID)
	if err != nil || n != 2 {
		t.Fatalf("ReapOrphans = %d, %v; want 2, nil", n, err)
	}
	if left := e.containers(); len(left) != 0 {
		t.Errorf("orphans left: %+v", left)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := e.cli.ContainerList(cctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("id", keep))})
	if err != nil || len(list) != 1 {
		t.Errorf("the other worker's container was touched: %v %v", list, err)
	}
	if _, err := e.r.ReapOrphans(ctx, ""); err == nil {
		t.Error("ReapOrphans with an empty worker id must refuse")
	}
}

// A Streams.Stdin that blocks (a stalled download) must not hold up the end
// of a run, whether the container exits by itself or the worker cancels.
func TestBlockedInputReader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cmd     []string
		cancel  bool
		outcome Outcome
	}{
		{"container exits", []string{"exit", "0"}, false, OutcomeSucceeded},
		{"worker cancels", []string{"sleep"}, true, OutcomeException},
	} {
		for _, mode := range []InputMode{InputStdin, InputFIFO} {
			t.Run(tc.name+"/"+mode.String(), func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, Options{})
				spec := e.spec(tc.cmd...)
				spec.Input = mode
				stalled, unblock := io.Pipe()
				defer unblock.Close()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				log := newSyncBuffer()
				done := make(chan Result, 1)
				go func() {
					res, _ := e.r.Run(ctx, spec, Streams{Stdin: stalled, Stdout: log})
					done <- res
				}()
				if tc.cancel {
					log.waitFor(t, "ready")
					cancel()
				}
				select {
				case res := <-done:
					if res.Outcome != tc.outcome || res.InputComplete || res.InputBytes != 0 {
						t.Errorf("result %+v", res)
					}
				case <-time.After(60 * time.Second):
					t.Fatal("Run is stuck on the blocked input reader")
				}
			})
		}
	}
}
