package runner

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/af-project/af/internal/clocktest"
	"github.com/af-project/af/internal/taskdef"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// testUID and testGID are the container user of every test run.
const testUID, testGID = 10001, 10001

var (
	dockerOnce sync.Once
	dockerCli  *client.Client
	dockerErr  error

	probeOnce  sync.Once
	probeImage string
	probeErr   error
)

// dockerClient connects to the real engine; a test needing it fails, never
// skips, when the engine is not there.
func dockerClient(t testing.TB) *client.Client {
	t.Helper()
	dockerOnce.Do(func() {
		dockerCli, dockerErr = NewDockerClient()
		if dockerErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, dockerErr = dockerCli.Ping(ctx)
	})
	if dockerErr != nil {
		t.Fatalf("the runner's tests need the Docker engine: %v", dockerErr)
	}
	return dockerCli
}

// probe returns the tag of the test image: FROM scratch with the static
// probe binary as its entrypoint, built once per test binary. The tag
// carries the binary's hash so concurrent test runs with different probes
// never race on one tag.
func probe(t testing.TB) string {
	t.Helper()
	cli := dockerClient(t)
	probeOnce.Do(func() { probeImage, probeErr = buildProbe(cli) })
	if probeErr != nil {
		t.Fatalf("building the probe image: %v", probeErr)
	}
	return probeImage
}

func buildProbe(cli *client.Client) (string, error) {
	dir, err := os.MkdirTemp("", "af-runner-probe-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	bin := filepath.Join(dir, "probe")
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", bin, "./testdata/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./testdata/probe: %v\n%s", err, out)
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(exe)
	tag := "af-runner-probe:" + hex.EncodeToString(sum[:6])
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cli.ImageInspect(ctx, tag); err == nil {
		return tag, nil
	}
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	dockerfile := []byte("FROM scratch\nCOPY probe /probe\nENTRYPOINT [\"/probe\"]\n")
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, dockerfile}, {"probe", 0o755, exe}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			return "", err
		}
		if _, err := tw.Write(f.data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	resp, err := cli.ImageBuild(ctx, &tarball, build.ImageBuildOptions{
		Tags: []string{tag}, Remove: true, ForceRemove: true,
		Labels: map[string]string{"af.test": "runner-probe"},
	})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	var log strings.Builder
	for {
		var msg struct {
			Stream      string `json:"stream"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			break
		} else if err != nil {
			return "", fmt.Errorf("reading the build output: %w", err)
		}
		log.WriteString(msg.Stream)
		if msg.ErrorDetail != nil {
			return "", fmt.Errorf("image build: %s\n%s", msg.ErrorDetail.Message, log.String())
		}
	}
	if _, err := cli.ImageInspect(ctx, tag); err != nil {
		return "", fmt.Errorf("image %s missing after the build: %w\n%s", tag, err, log.String())
	}
	return tag, nil
}

var nonID = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// testIDs gives each test its own worker and task ids, so parallel tests
// only ever see, and reap, their own containers.
func testIDs(t testing.TB) (workerID, taskID string) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	name := nonID.ReplaceAllString(t.Name(), "-")
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	return "test-" + name + "-" + suffix, "task" + suffix
}

// testLogger writes the runner's log into the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// env is one test's runner, ids and scratch dir.
type env struct {
	t        testing.TB
	cli      *client.Client
	r        *Runner
	workerID string
	taskID   string
	scratch  string
	fifo     string
	output   string
}

func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	cli := dockerClient(t)
	e := &env{t: t, cli: cli}
	e.workerID, e.taskID = testIDs(t)
	opts.WorkerID = e.workerID
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	r, err := New(cli, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	e.scratch = filepath.Join(t.TempDir(), "scratch")
	e.fifo, e.output, err = PrepareScratch(e.scratch, testUID, testGID)
	if err != nil {
		t.Fatal(err)
	}
	// Every path out of Run must remove its container; a leftover fails
	// the test (and is removed so it does not outlive it).
	t.Cleanup(func() {
		left := e.containers()
		if len(left) > 0 {
			t.Errorf("%d container(s) of worker %s left behind", len(left), e.workerID)
			if _, err := e.r.ReapOrphans(context.Background(), e.workerID); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	return e
}

func (e *env) spec(cmd ...string) Spec {
	return Spec{
		TaskID:     e.taskID,
		RunID:      0,
		Kind:       taskdef.KindMapper,
		Image:      probe(e.t),
		Cmd:        cmd,
		ScratchDir: e.scratch,
		MaxRunTime: 2 * time.Minute,
		Limits:     taskdef.Limits{MemoryBytes: 256 << 20},
	}
}

// containers lists this env's containers, running or not.
func (e *env) containers() []container.Summary {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := e.cli.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", LabelWorkerID+"="+e.workerID)),
	})
	if err != nil {
		e.t.Fatalf("listing containers: %v", err)
	}
	return list
}

// syncBuffer is a goroutine-safe log destination that signals each write.
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	signal chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{signal: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	select {
	case b.signal <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the buffer contains s, failing after a deadline.
func (b *syncBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(b.String(), s) {
		select {
		case <-b.signal:
		case <-deadline:
			t.Fatalf("timed out waiting for %q in the log; have %q", s, b.String())
		}
	}
}

func newFakeClock() *clocktest.Fake {
	return clocktest.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
