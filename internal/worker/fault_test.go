package worker_test

// Fault tests of issue 5, all against real components: MinIO, the queue
// server, SMTP, the Docker engine, and the worker both in-process and as a
// real subprocess (built from ./worker) that is killed or sent SIGTERM.
// The jobs are testdata/faultjob (Python, FROM af/python) and
// testdata/faultjob-go (static, FROM scratch): os-count made slow or made
// to raise through the task's env, built as af-test/faultjob-<lang>:<hash>.

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/af-project/af/internal/testbin"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
)

// Env names the fault job reads (testdata/faultjob/job.py).
const (
	envSleep   = "AF_TEST_SLEEP_PER_RECORD"
	envRaiseOn = "AF_TEST_RAISE_ON"
)

// builtImage is a test job image built at most once per test binary.
type builtImage struct {
	once sync.Once
	tag  string
	err  error
}

var (
	jobImagesMu sync.Mutex
	jobImages   = map[string]*builtImage{}
)

func TestMain(m *testing.M) { testbin.Main(m) }

// faultImage builds the fault job in lang once per test binary.
func faultImage(t *testing.T, lang string) string {
	t.Helper()
	return jobImage(t, "faultjob", lang)
}

// jobImage builds the test job testdata/<job> in lang ("python":
// testdata/<job> FROM af/python; "go": testdata/<job>-go, static, FROM
// scratch) once per test binary.
func jobImage(t *testing.T, job, lang string) string {
	t.Helper()
	if lang == "python" {
		clustertest.RequireImages(t, "af/python")
	}
	jobImagesMu.Lock()
	b := jobImages[job+"/"+lang]
	if b == nil {
		b = &builtImage{}
		jobImages[job+"/"+lang] = b
	}
	jobImagesMu.Unlock()
	b.once.Do(func() { b.tag, b.err = buildJobImage(job, lang) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.tag
}

// buildJobImage tags the image with a hash of its build context (and of
// af/python's image id), so an edited job or a rebuilt base makes a new
// image and an unchanged one is reused across runs.
func buildJobImage(job, lang string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h := sha256.New()
	dir := filepath.Join("testdata", job)
	if lang == "python" {
		base, err := exec.CommandContext(ctx, "docker", "image", "inspect", "-f", "{{.Id}}", "af/python").Output()
		if err != nil {
			return "", fmt.Errorf("inspect af/python: %w", err)
		}
		h.Write(base)
	} else {
		tmp, err := os.MkdirTemp("", "af-"+job+"-go-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(tmp)
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(tmp, "job"),
			"github.com/af-project/af/internal/worker/testdata/"+job+"-go")
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		if out, err := build.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build the Go %s job: %w\n%s", job, err, out)
		}
		for _, name := range []string{"Dockerfile", "analysis-tools.yml"} {
			b, err := os.ReadFile(filepath.Join("testdata", job+"-go", name))
			if err != nil {
				return "", err
			}
			if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
				return "", err
			}
		}
		dir = tmp
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", e.Name(), len(b))
		h.Write(b)
	}
	tag := "af-test/" + job + "-" + lang + ":" + hex.EncodeToString(h.Sum(nil))[:12]
	if exec.CommandContext(ctx, "docker", "image", "inspect", tag).Run() == nil {
		return tag, nil
	}
	if out, err := exec.CommandContext(ctx, "docker", "build", "-q", "-t", tag, dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("docker build %s: %w\n%s", tag, err, out)
	}
	return tag, nil
}

// workerBinary builds the worker command once per test binary.
func workerBinary(t *testing.T) string {
	t.Helper()
	return testbin.Build(t, "worker")
}

// procWorker is a worker running as a real process.
type procWorker struct {
	id     string
	cmd    *exec.Cmd
	stderr *testbin.SyncBuffer
	done   chan struct{}
	err    error // set before done closes
}

// startProcWorker runs the worker binary against the cluster. Its scratch
// root is the one clustertest.StartWorker gives the same id, so a restart
// in-process sees what the process left.
func startProcWorker(t *testing.T, c *clustertest.Cluster, id string, args ...string) *procWorker {
	t.Helper()
	bin := workerBinary(t)
	p := &procWorker{id: id, stderr: &testbin.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{
		"--queue", c.URL, "--token", c.WorkToken, "--key", c.KeyPath, "--worker-id", id, "--s3-endpoint", c.MinIO.Endpoint,
		"--worker-group", "test", "--scratch", filepath.Join(c.Dir, "scratch-"+id), "--log-level", "debug",
	}, args...)...)
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("worker process %s output:\n%s", id, p.stderr.String())
		}
	})
	return p
}

// wait waits for the process to exit and returns its error.
func (p *procWorker) wait(t *testing.T, limit time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(limit):
		t.Fatalf("worker process %s did not exit within %s", p.id, limit)
		return nil
	}
}

// waitUntil polls cond until it holds, failing the test with cond's last
// explanation when limit passes.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (%s)", what, limit, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func taskStatus(t *testing.T, c *clustertest.Cluster, id string) taskdef.TaskStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts, err := c.Submit.Task(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func graphStatus(t *testing.T, c *clustertest.Cluster, id string) taskdef.GraphStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gs, err := c.Submit.Graph(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

func mapperIDs(g taskdef.Graph) []string {
	var ids []string
	for _, gt := range g.Tasks {
		if gt.Task.Payload.Kind == taskdef.KindMapper {
			ids = append(ids, gt.TaskID)
		}
	}
	return ids
}

// mapperOf returns the mapper task that reads key.
func mapperOf(t *testing.T, g taskdef.Graph, key string) string {
	t.Helper()
	for _, gt := range g.Tasks {
		for _, in := range gt.Task.Payload.Inputs {
			if in.Key == key {
				return gt.TaskID
			}
		}
	}
	t.Fatalf("no task reads %s", key)
	return ""
}

// smallData makes files gz files of docs documents each. graphFor puts
// three files in a mapper task.
func smallData(t *testing.T, files, docs int, seed uint64) *synth.Set {
	t.Helper()
	set, err := synth.Generate(synth.Spec{
		Prefix: "v2", Reasons: []string{"saved-session"}, Channels: []string{"nightly"}, Versions: []string{"28.0a1"},
		BuildIDs: []string{"20131029030201"}, Days: []string{"20131029"}, FilesPerPartition: files,
		DocsPerFile: docs, Formats: []string{"gz"}, BadLineEvery: 17, Seed: seed,
	})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func upload(t *testing.T, c *clustertest.Cluster, set *synth.Set) []taskdef.InputFile {
	t.Helper()
	if err := synth.Upload(context.Background(), c.MinIO.S3, clustertest.InputBucket, set.Files); err != nil {
		t.Fatal(err)
	}
	var files []taskdef.InputFile
	for _, f := range set.Files {
		files = append(files, taskdef.InputFile{Key: f.Key, Size: int64(len(f.Body))})
	}
	return files
}

// withEnv sets env on every task of g (before it is created).
func withEnv(g taskdef.Graph, env map[string]string) taskdef.Graph {
	for i := range g.Tasks {
		if g.Tasks[i].Task.Payload.Env == nil {
			g.Tasks[i].Task.Payload.Env = map[string]string{}
		}
		for k, v := range env {
			g.Tasks[i].Task.Payload.Env[k] = v
		}
	}
	return g
}

func createGraph(t *testing.T, c *clustertest.Cluster, g taskdef.Graph) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Submit.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
}

func liveLog(t *testing.T, c *clustertest.Cluster, taskID string) string {
	t.Helper()
	rc, err := c.Submit.GetArtifact(context.Background(), taskID, -1, taskdef.LiveLogArtifact)
	return readAll(t, rc, err)
}

func result(t *testing.T, c *clustertest.Cluster, g taskdef.Graph) string {
	t.Helper()
	rc, err := c.Submit.GetArtifact(context.Background(), reducerID(g), -1, taskdef.ResultArtifact)
	return readAll(t, rc, err)
}

func lastRun(ts taskdef.TaskStatus) taskdef.Run {
	if len(ts.Runs) == 0 {
		return taskdef.Run{}
	}
	return ts.Runs[len(ts.Runs)-1]
}

// firstDocID is the id of the first document of a gz file.
func firstDocID(t *testing.T, f synth.File) string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(f.Body))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	id, _, ok := strings.Cut(string(b), "\t")
	if !ok {
		t.Fatalf("%s: first line has no tab", f.Key)
	}
	return id
}

// jobContainers lists every container (running or not) labelled with
// workerID, as `docker ps -a --filter label=af.worker-id=<id>` does.
func jobContainers(t *testing.T, workerID string) []container.Summary {
	t.Helper()
	d, err := runner.NewDockerClient()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := d.ContainerList(ctx, container.ListOptions{
		All: true, Filters: filters.NewArgs(filters.Arg("label", runner.LabelWorkerID+"="+workerID)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// waitRunningInContainer waits until workerID holds one of tasks in the
// queue and its container for that task exists: the worker is mid-task.
func waitRunningInContainer(t *testing.T, c *clustertest.Cluster, workerID string, tasks []string) string {
	t.Helper()
	var got string
	waitUntil(t, time.Minute, "worker "+workerID+" runs a task in a container", func() (bool, string) {
		for _, id := range tasks {
			ts := taskStatus(t, c, id)
			r := lastRun(ts)
			if ts.State != taskdef.StateRunning || r.WorkerID != workerID {
				continue
			}
			for _, ct := range jobContainers(t, workerID) {
				if ct.Labels[runner.LabelTaskID] == id && ct.State == "running" {
					got = id
					return true, ""
				}
			}
			return false, "task " + id + " claimed, no running container yet"
		}
		return false, "no task claimed yet"
	})
	return got
}

func uniqueID(prefix string) string {
	return prefix + "-" + strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(taskdef.NewID()))[:8]
}

// jobLine finds the line of a job's source that contains needle, so the
// test expects the traceback to point at it without hard-coding a number.
func jobLine(t *testing.T, path, needle string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, needle) {
			return i + 1
		}
	}
	t.Fatalf("job.py has no line with %q", needle)
	return 0
}

func TestMapperRaiseFailsTaskWithTraceback(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		lang string
		// headline is the traceback's last line (Python) or the panic's
		// line (Go) for the poisoned document.
		headline func(doc string) string
		// inLog is what the task's live log must show of the traceback.
		inLog func(t *testing.T) []string
	}{
		{
			lang:     "python",
			headline: func(doc string) string { return "ValueError: poisoned document " + doc },
			inLog: func(t *testing.T) []string {
				line := jobLine(t, filepath.Join("testdata", "faultjob", "job.py"), "raise ValueError")
				return []string{"Traceback (most recent call last)", fmt.Sprintf("File \"/job/job.py\", line %d, in map", line)}
			},
		},
		{
			lang:     "go",
			headline: func(doc string) string { return "afjob: map failed: panic: poisoned document " + doc },
			inLog: func(t *testing.T) []string {
				line := jobLine(t, filepath.Join("testdata", "faultjob-go", "main.go"), "panic(")
				return []string{"goroutine ", fmt.Sprintf("faultjob-go/main.go:%d", line)}
			},
		},
	} {
		t.Run(tc.lang, func(t *testing.T) {
			t.Parallel()
			image := faultImage(t, tc.lang)
			c := clustertest.Start(t, clustertest.Options{})
			set := smallData(t, 6, 30, 21)
			files := upload(t, c, set)
			poison := firstDocID(t, set.Files[4])
			g := withEnv(graphFor(t, c, image, files), map[string]string{envRaiseOn: poison})
			bad := mapperOf(t, g, set.Files[4].Key)
			createGraph(t, c, g)
			c.StartWorker(t, uniqueID("raise"), clustertest.WorkerOptions{Capacity: 2})
			c.WaitGraph(t, g.GraphID, 90*time.Second)

			gs := graphStatus(t, c, g.GraphID)
			if gs.State != taskdef.GraphFailed {
				t.Fatalf("graph %s, want failed", gs.State)
			}
			headline := tc.headline(poison)
			var badName string
			for _, ts := range gs.Tasks {
				r := lastRun(ts)
				switch {
				case ts.TaskID == bad:
					badName = ts.Name
					// The job's own error: failed, not exception, and not
					// retried.
					if ts.State != taskdef.StateFailed || r.State != taskdef.StateFailed || len(ts.Runs) != 1 {
						t.Errorf("poisoned mapper: state %s, runs %+v; want one failed run", ts.State, ts.Runs)
					}
					// The reason comes first, before any context.
					if first, _, _ := strings.Cut(r.Message, "\n"); !strings.Contains(first, headline) {
						t.Errorf("poisoned mapper's message does not start with %q:\n%s", headline, r.Message)
					}
				case ts.Kind == taskdef.KindMapper:
					if ts.State != taskdef.StateCompleted {
						t.Errorf("mapper %s: %s, want completed", ts.Name, ts.State)
					}
				default:
					if ts.State != taskdef.StateException || r.ReasonResolved != taskdef.ReasonDependencyFailed {
						t.Errorf("reducer: %s/%s, want exception/%s", ts.State, r.ReasonResolved, taskdef.ReasonDependencyFailed)
					}
				}
			}

			log := liveLog(t, c, bad)
			for _, want := range append(tc.inLog(t), headline) {
				if !strings.Contains(log, want) {
					t.Errorf("the failed task's live log lacks %q:\n%s", want, log)
				}
			}

			m := c.SMTP.WaitFor(t, 1, time.Minute)[0]
			if !strings.Contains(m.Subject, "failed") {
				t.Errorf("email subject %q, want it to say failed", m.Subject)
			}
			for _, want := range []string{badName, bad, headline, taskdef.ReasonDependencyFailed} {
				if !strings.Contains(m.Text, want) {
					t.Errorf("the owner's email lacks %q:\n%s", want, m.Text)
				}
			}
		})
	}
}

func TestCorruptFileFailsTaskNamingIt(t *testing.T) {
	t.Parallel()
	image := faultImage(t, "python")
	c := clustertest.Start(t, clustertest.Options{})
	set := smallData(t, 6, 30, 22)
	// Flip bytes in the middle of one file's deflate stream.
	corrupt := &set.Files[1]
	body := bytes.Clone(corrupt.Body)
	for i := len(body)/2 - 8; i < len(body)/2+8; i++ {
		body[i] ^= 0xa5
	}
	corrupt.Body = body
	files := upload(t, c, set)
	g := graphFor(t, c, image, files)
	bad := mapperOf(t, g, corrupt.Key)
	createGraph(t, c, g)
	c.StartWorker(t, uniqueID("corrupt"), clustertest.WorkerOptions{Capacity: 2})
	c.WaitGraph(t, g.GraphID, 90*time.Second)

	gs := graphStatus(t, c, g.GraphID)
	if gs.State != taskdef.GraphFailed {
		t.Fatalf("graph %s, want failed", gs.State)
	}
	for _, ts := range gs.Tasks {
		r := lastRun(ts)
		switch {
		case ts.TaskID == bad:
			if ts.State != taskdef.StateFailed || len(ts.Runs) != 1 {
				t.Errorf("mapper with the corrupt file: state %s, runs %+v; want one failed run", ts.State, ts.Runs)
			}
			if !strings.Contains(r.Message, corrupt.Key) || !strings.Contains(r.Message, "max_bad_files") {
				t.Errorf("message does not name the corrupt file %s and the setting:\n%s", corrupt.Key, r.Message)
			}
			if r.Stats.BadFiles != 1 {
				t.Errorf("bad files %d, want 1", r.Stats.BadFiles)
			}
		case ts.Kind == taskdef.KindMapper:
			if ts.State != taskdef.StateCompleted {
				t.Errorf("mapper %s: %s, want completed", ts.Name, ts.State)
			}
		default:
			if ts.State != taskdef.StateException || r.ReasonResolved != taskdef.ReasonDependencyFailed {
				t.Errorf("reducer: %s/%s, want exception/%s", ts.State, r.ReasonResolved, taskdef.ReasonDependencyFailed)
			}
		}
	}
	if log := liveLog(t, c, bad); !strings.Contains(log, "bad file "+corrupt.Key) {
		t.Errorf("the task's log does not name the corrupt file %s:\n%s", corrupt.Key, log)
	}
}

func TestKilledWorkerTaskRunsAgain(t *testing.T) {
	t.Parallel()
	image := faultImage(t, "python")
	workerBinary(t)
	c := clustertest.Start(t, clustertest.Options{Lease: 3 * time.Second})
	set := smallData(t, 6, 40, 23)
	files := upload(t, c, set)
	// About 2.5 s of work per mapper: long enough to be caught mid-task.
	g := withEnv(graphFor(t, c, image, files), map[string]string{envSleep: "0.02"})
	createGraph(t, c, g)

	killedID := uniqueID("killed")
	p := startProcWorker(t, c, killedID, "--capacity", "1")
	victim := waitRunningInContainer(t, c, killedID, mapperIDs(g))
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 30*time.Second); err == nil {
		t.Fatal("the killed worker exited 0")
	}
	if n := len(jobContainers(t, killedID)); n == 0 {
		t.Fatal("no container of the killed worker is left: nothing for the restart to reap")
	}

	second := uniqueID("second")
	c.StartWorker(t, second, clustertest.WorkerOptions{Capacity: 2})
	c.WaitGraph(t, g.GraphID, 2*time.Minute)
	gs := graphStatus(t, c, g.GraphID)
	if gs.State != taskdef.GraphCompleted {
		c.LogTaskLogs(t, g.GraphID)
		t.Fatalf("graph %s, want completed", gs.State)
	}
	if got, want := result(t, c, g), synth.FormatOSCounts(set.CountByOS(nil)); got != want {
		t.Fatalf("result after the kill\n%s\nwant (a clean run's counts)\n%s", got, want)
	}
	// One email for the graph, from af serve's outbox: the killed worker
	// sent none, and the retry's worker sends none either.
	c.SMTP.WaitFor(t, 1, time.Minute)
	waitUntil(t, 30*time.Second, "the owner's email is marked sent", func() (bool, string) {
		st, err := c.Queue.OutboxStats(context.Background())
		return err == nil && st.Pending == 0 && st.Sent == 1, fmt.Sprintf("outbox %+v %v", st, err)
	})
	if n := len(c.SMTP.Messages()); n != 1 {
		t.Errorf("%d emails for one graph across a worker crash, want 1", n)
	}
	ts := taskStatus(t, c, victim)
	if len(ts.Runs) < 2 {
		t.Fatalf("killed task has runs %+v, want the killed run and a retry", ts.Runs)
	}
	r0, last := ts.Runs[0], lastRun(ts)
	if r0.WorkerID != killedID || r0.State != taskdef.StateException || r0.ReasonResolved != taskdef.ReasonClaimExpired {
		t.Errorf("killed run: worker %s, %s/%s; want %s, exception/%s", r0.WorkerID, r0.State, r0.ReasonResolved, killedID, taskdef.ReasonClaimExpired)
	}
	if last.State != taskdef.StateCompleted || last.WorkerID != second || last.ReasonCreated != taskdef.ReasonRetry {
		t.Errorf("last run: worker %s, %s, created %s; want %s, completed, created %s", last.WorkerID, last.State, last.ReasonCreated, second, taskdef.ReasonRetry)
	}

	// The killed worker's container outlived it; the same worker id, started
	// again, removes it before it claims anything.
	c.StartWorker(t, killedID, clustertest.WorkerOptions{Capacity: 1})
	waitUntil(t, 30*time.Second, "the restarted worker reaps the killed one's containers", func() (bool, string) {
		list := jobContainers(t, killedID)
		return len(list) == 0, fmt.Sprintf("%d containers left", len(list))
	})
	// And the killed run's scratch dir, which held its inputs and output.
	stale := filepath.Join(c.Dir, "scratch-"+killedID, fmt.Sprintf("%s-%d", victim, r0.RunID))
	waitUntil(t, 30*time.Second, "the restarted worker removes the killed run's scratch dir", func() (bool, string) {
		_, err := os.Stat(stale)
		return os.IsNotExist(err), fmt.Sprintf("stat %s: %v", stale, err)
	})
}

func TestSIGTERMDrains(t *testing.T) {
	t.Parallel()
	image := faultImage(t, "python")
	workerBinary(t)

	t.Run("running task finishes within grace", func(t *testing.T) {
		t.Parallel()
		c := clustertest.Start(t, clustertest.Options{})
		set := smallData(t, 6, 40, 24)
		files := upload(t, c, set)
		g := withEnv(graphFor(t, c, image, files), map[string]string{envSleep: "0.02"})
		createGraph(t, c, g)
		id := uniqueID("drain")
		p := startProcWorker(t, c, id, "--capacity", "1", "--grace", "60s")
		mappers := mapperIDs(g)
		if len(mappers) != 2 {
			t.Fatalf("%d mappers, want 2", len(mappers))
		}
		running := waitRunningInContainer(t, c, id, mappers)
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := p.wait(t, time.Minute); err != nil {
			t.Fatalf("worker exit after SIGTERM: %v", err)
		}
		for _, m := range mappers {
			ts := taskStatus(t, c, m)
			r := lastRun(ts)
			if m == running {
				if ts.State != taskdef.StateCompleted || r.WorkerID != id || len(ts.Runs) != 1 {
					t.Errorf("the task running at SIGTERM: %s, runs %+v; want completed by %s in its first run", ts.State, ts.Runs, id)
				}
				continue
			}
			for _, r := range ts.Runs {
				if r.WorkerID == id {
					t.Errorf("the draining worker claimed the pending task %s: %+v", m, r)
				}
			}
			if ts.State != taskdef.StatePending {
				t.Errorf("the other mapper is %s, want still pending", ts.State)
			}
		}
		if len(jobContainers(t, id)) != 0 {
			t.Errorf("the drained worker left containers behind")
		}
		// Another worker finishes the job, with the same result.
		c.StartWorker(t, uniqueID("after"), clustertest.WorkerOptions{Capacity: 2})
		c.WaitGraph(t, g.GraphID, 90*time.Second)
		if got, want := result(t, c, g), synth.FormatOSCounts(set.CountByOS(nil)); got != want {
			t.Fatalf("result\n%s\nwant\n%s", got, want)
		}
	})

	t.Run("task longer than grace is handed back", func(t *testing.T) {
		t.Parallel()
		c := clustertest.Start(t, clustertest.Options{})
		set := smallData(t, 3, 40, 25)
		files := upload(t, c, set)
		// About 6 s of work: longer than the 1 s grace.
		g := withEnv(graphFor(t, c, image, files), map[string]string{envSleep: "0.05"})
		createGraph(t, c, g)
		id := uniqueID("grace")
		p := startProcWorker(t, c, id, "--capacity", "1", "--grace", "1s")
		task := waitRunningInContainer(t, c, id, mapperIDs(g))
		sent := time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := p.wait(t, 30*time.Second); err != nil {
			t.Fatalf("worker exit after SIGTERM: %v", err)
		}
		if d := time.Since(sent); d > 15*time.Second {
			t.Errorf("the worker took %s to stop with a 1 s grace", d)
		}
		// Reported before the worker exited: the lease (a minute) has not
		// run out, so only the worker's report can have ended the run.
		ts := taskStatus(t, c, task)
		if len(ts.Runs) != 2 {
			t.Fatalf("runs %+v, want the stopped run and a retry", ts.Runs)
		}
		r0, r1 := ts.Runs[0], ts.Runs[1]
		if r0.State != taskdef.StateException || r0.ReasonResolved != taskdef.ReasonWorkerShutdown || r0.WorkerID != id {
			t.Errorf("stopped run: %s/%s by %s, want exception/%s by %s", r0.State, r0.ReasonResolved, r0.WorkerID, taskdef.ReasonWorkerShutdown, id)
		}
		if !strings.Contains(r0.Message, "shut down") {
			t.Errorf("stopped run's message %q does not say the worker shut down", r0.Message)
		}
		if r1.ReasonCreated != taskdef.ReasonRetry || r1.WorkerID != "" {
			t.Errorf("retry run: created %s, worker %q; want created %s, unclaimed", r1.ReasonCreated, r1.WorkerID, taskdef.ReasonRetry)
		}
		if list := jobContainers(t, id); len(list) != 0 {
			t.Errorf("the stopped worker left %d containers", len(list))
		}

		other := uniqueID("other")
		c.StartWorker(t, other, clustertest.WorkerOptions{Capacity: 1})
		c.WaitGraph(t, g.GraphID, 90*time.Second)
		gs := graphStatus(t, c, g.GraphID)
		if gs.State != taskdef.GraphCompleted {
			t.Fatalf("graph %s, want completed", gs.State)
		}
		if r := lastRun(taskStatus(t, c, task)); r.RunID != 1 || r.WorkerID != other || r.State != taskdef.StateCompleted {
			t.Errorf("retry: %+v, want run 1 completed by %s", r, other)
		}
		if got, want := result(t, c, g), synth.FormatOSCounts(set.CountByOS(nil)); got != want {
			t.Fatalf("result\n%s\nwant\n%s", got, want)
		}
	})
}

// metrics reads the queue server's /metrics.
func metrics(t *testing.T, c *clustertest.Cluster) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s %v", resp.Status, err)
	}
	return string(b)
}

// TestSIGTERMIdleWorkerExitsAtOnce: a worker waiting in its claim
// long-poll (20 s) does not wait it out on SIGTERM.
func TestSIGTERMIdleWorkerExitsAtOnce(t *testing.T) {
	t.Parallel()
	workerBinary(t)
	clustertest.RequireImages(t)
	c := clustertest.Start(t, clustertest.Options{})
	id := uniqueID("idle")
	p := startProcWorker(t, c, id)
	waitUntil(t, 30*time.Second, "the worker waits in a claim long-poll", func() (bool, string) {
		m := metrics(t, c)
		return strings.Contains(m, "\naf_inflight_claims 1\n"), "af_inflight_claims is not 1"
	})
	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 30*time.Second); err != nil {
		t.Fatalf("worker exit after SIGTERM: %v", err)
	}
	if d := time.Since(sent); d > 5*time.Second {
		t.Errorf("an idle worker took %s to stop", d)
	}
	if !strings.Contains(p.stderr.String(), "worker stopped") {
		t.Errorf("the worker's log does not say it stopped:\n%s", p.stderr.String())
	}
}

// TestStdinInputEndToEnd runs the example jobs with records on the
// container's stdin instead of the default FIFO.
func TestStdinInputEndToEnd(t *testing.T) {
	t.Parallel()
	for _, image := range []string{"af/os-count", "af/os-count-go"} {
		t.Run(strings.TrimPrefix(image, "af/"), func(t *testing.T) {
			t.Parallel()
			clustertest.RequireImages(t, image)
			c := clustertest.Start(t, clustertest.Options{})
			set, files := jobData(t, c, 12)
			g := graphFor(t, c, image, files)
			createGraph(t, c, g)
			c.StartWorker(t, uniqueID("stdin"), clustertest.WorkerOptions{Capacity: 2, Input: runner.InputStdin})
			c.WaitGraph(t, g.GraphID, 90*time.Second)
			gs := graphStatus(t, c, g.GraphID)
			if gs.State != taskdef.GraphCompleted {
				c.LogTaskLogs(t, g.GraphID)
				t.Fatalf("graph %s, want completed", gs.State)
			}
			if got, want := result(t, c, g), synth.FormatOSCounts(set.CountByOS(nil)); got != want {
				t.Fatalf("result\n%s\nwant\n%s", got, want)
			}
			docs, _, _ := set.Totals()
			var in int64
			for _, ts := range gs.Tasks {
				if ts.Kind == taskdef.KindMapper {
					in += lastRun(ts).Stats.RecordsIn
				}
			}
			if in != int64(docs) {
				t.Fatalf("records in %d, want %d", in, docs)
			}
		})
	}
}
