package worker_test

// Tests of issue 12's retries where faults happen, all against real
// components: MinIO killed and restarted on its address and data, the
// queue server stopped and restarted over the same queue.db, and the
// Docker engine with a job image that is, then is not, on the worker.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"

	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
)

// outage is how long the tests keep a component down: longer than the
// queue client's six quick tries (about 3 s), shorter than the S3 read's
// and the upload's patience (20-40 s) and the lease.
const (
	minioOutage = 15 * time.Second
	queueOutage = 10 * time.Second
)

func wantCleanResult(t *testing.T, c *clustertest.Cluster, g taskdef.Graph, set *synth.Set) {
	t.Helper()
	gs := graphStatus(t, c, g.GraphID)
	if gs.State != taskdef.GraphCompleted {
		c.LogTaskLogs(t, g.GraphID)
		t.Fatalf("graph %s, want completed", gs.State)
	}
	if got, want := result(t, c, g), synth.FormatOSCounts(set.CountByOS(nil)); got != want {
		t.Fatalf("result\n%s\nwant (a clean run's counts)\n%s", got, want)
	}
}

// TestMinIOOutageWhileMappersRun kills MinIO while mappers run and starts
// it again 15 s later on the same address and data. Worker A's mappers,
// running when MinIO goes, finish during the outage and retry their
// uploads; worker B, started during the outage, claims the other mappers
// and retries their S3 GETs. The graph completes with a clean run's
// result, each mapper in one run: the outage is ridden out where it
// happened.
func TestMinIOOutageWhileMappersRun(t *testing.T) {
	t.Parallel()
	img := faultImage(t, "python")
	c := clustertest.Start(t, clustertest.Options{})
	set := smallData(t, 12, 40, 71) // four mappers of three files
	files := upload(t, c, set)
	// About 5 s of work per mapper: A's two finish, and upload, while
	// MinIO is down.
	g := withEnv(graphFor(t, c, img, files), map[string]string{envSleep: "0.04"})
	createGraph(t, c, g)
	a := uniqueID("s3down-a")
	c.StartWorker(t, a, clustertest.WorkerOptions{Capacity: 2})
	waitRunningInContainer(t, c, a, mapperIDs(g))
	c.MinIO.Kill()
	down := time.Now()
	t.Logf("minio killed; down for %s", minioOutage)
	b := uniqueID("s3down-b")
	c.StartWorker(t, b, clustertest.WorkerOptions{Capacity: 2})
	time.Sleep(minioOutage - time.Since(down)) // the fault's length, not a wait for a condition
	if err := c.MinIO.Restart(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	t.Logf("minio restarted after %s", up.Sub(down).Round(time.Millisecond))
	c.WaitGraph(t, g.GraphID, 3*time.Minute)
	wantCleanResult(t, c, g, set)
	runs, retriedGETs, waitedUploads := 0, 0, 0
	for _, m := range mapperIDs(g) {
		ts := taskStatus(t, c, m)
		runs += len(ts.Runs)
		// A's mappers started before the kill and have 5 s of work: one
		// resolved after the restart waited for S3 with its result.
		if r := ts.Runs[0]; r.WorkerID == a && r.Started.Before(down) && r.Resolved.After(up) {
			waitedUploads++
		}
		if log := liveLog(t, c, m); strings.Contains(log, "s3 GET "+clustertest.InputBucket+"/") && strings.Contains(log, "failed (") {
			retriedGETs++
		}
		for _, r := range ts.Runs {
			t.Logf("mapper %s run %d on %s: %s/%s %s", m, r.RunID, r.WorkerID, r.State, r.ReasonResolved, r.Message)
		}
	}
	if runs != len(mapperIDs(g)) {
		t.Errorf("%d mapper runs, want one each: the outage should be ridden out where it happened", runs)
	}
	if waitedUploads == 0 {
		t.Errorf("no mapper of worker A was resolved after the restart: no upload waited out the outage")
	}
	t.Logf("outage %s: %d mappers retried S3 GETs, %d waited with their result upload", up.Sub(down).Round(time.Millisecond), retriedGETs, waitedUploads)
	if retriedGETs == 0 {
		t.Errorf("no mapper's log names a retried S3 GET: worker B did not read during the outage")
	}
}

// TestQueueOutageReportLandsLater stops af serve while a mapper runs and
// starts it again, over the same queue.db, 10 s later: the mapper finishes
// meanwhile, keeps its result, retries its upload and its report until the
// queue is back, and is not run again.
func TestQueueOutageReportLandsLater(t *testing.T) {
	t.Parallel()
	img := faultImage(t, "python")
	c := clustertest.Start(t, clustertest.Options{Lease: time.Minute})
	set := smallData(t, 6, 40, 72) // two mappers of three files
	files := upload(t, c, set)
	// About 2.5 s per mapper: both finish while the queue is down.
	g := withEnv(graphFor(t, c, img, files), map[string]string{envSleep: "0.02"})
	createGraph(t, c, g)
	id := uniqueID("qdown")
	c.StartWorker(t, id, clustertest.WorkerOptions{Capacity: 2})
	victim := waitRunningInContainer(t, c, id, mapperIDs(g))
	c.StopServer(t)
	t.Logf("af serve stopped while %s runs; down for %s", victim, queueOutage)
	time.Sleep(queueOutage) // the fault's length, not a wait for a condition
	c.StartServer(t)
	t.Log("af serve restarted")
	c.WaitGraph(t, g.GraphID, 2*time.Minute)
	wantCleanResult(t, c, g, set)
	ts := taskStatus(t, c, victim)
	if len(ts.Runs) != 1 || ts.Runs[0].State != taskdef.StateCompleted || ts.Runs[0].WorkerID != id {
		t.Fatalf("mapper %s has runs %+v, want its one run completed by %s: the upload and report should have waited for the queue", victim, ts.Runs, id)
	}
	for _, m := range mapperIDs(g) {
		if n := len(taskStatus(t, c, m).Runs); n != 1 {
			t.Errorf("mapper %s ran %d times, want once", m, n)
		}
	}
}

// reportFront is a proxy in front of the queue server for one worker: from
// the first completion report it sees, it cuts every call for a while, as
// a queue that went away just as a mapper finished; then it lets them
// through again.
type reportFront struct {
	rp       *httputil.ReverseProxy
	outage   time.Duration
	mu       sync.Mutex
	blocked  time.Time // zero: not yet
	cutCalls int
}

func (f *reportFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if f.blocked.IsZero() && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/completed") {
		f.blocked = time.Now()
	}
	cut := !f.blocked.IsZero() && time.Since(f.blocked) < f.outage
	if cut {
		f.cutCalls++
	}
	f.mu.Unlock()
	if cut {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	f.rp.ServeHTTP(w, r)
}

// TestReportRetriedUntilTheQueueIsBack: the queue is unreachable from the
// moment a mapper reports completed, for 10 s: the worker keeps the
// result, retries the report (and renews the lease) until the queue
// answers, and the mapper is not run again.
func TestReportRetriedUntilTheQueueIsBack(t *testing.T) {
	t.Parallel()
	img := faultImage(t, "python")
	c := clustertest.Start(t, clustertest.Options{Lease: time.Minute})
	set := smallData(t, 3, 20, 74) // one mapper
	files := upload(t, c, set)
	g := graphFor(t, c, img, files)
	createGraph(t, c, g)
	target, err := url.Parse(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	front := &reportFront{rp: httputil.NewSingleHostReverseProxy(target), outage: queueOutage}
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)
	id := uniqueID("report")
	c.StartWorker(t, id, clustertest.WorkerOptions{Capacity: 1, QueueURL: srv.URL})
	c.WaitGraph(t, g.GraphID, 2*time.Minute)
	wantCleanResult(t, c, g, set)
	front.mu.Lock()
	blocked, cutCalls := front.blocked, front.cutCalls
	front.mu.Unlock()
	if blocked.IsZero() || cutCalls < 2 {
		t.Fatalf("the front cut %d calls (blocked at %v): the report was not retried", cutCalls, blocked)
	}
	ts := taskStatus(t, c, mapperIDs(g)[0])
	if len(ts.Runs) != 1 || ts.Runs[0].State != taskdef.StateCompleted {
		t.Fatalf("mapper runs %+v, want one, completed", ts.Runs)
	}
	if d := ts.Runs[0].Resolved.Sub(blocked); d < queueOutage-time.Second {
		t.Errorf("the mapper resolved %s after its first report was cut, want after the %s outage", d, queueOutage)
	}
	if !strings.Contains(c.Logs.String(), "report delivered after the queue came back") {
		t.Errorf("the worker's log does not say the report was retried")
	}
	t.Logf("the front cut %d calls in %s; the report landed %s after the first try", cutCalls, queueOutage, ts.Runs[0].Resolved.Sub(blocked).Round(time.Millisecond))
}

// tagImage gives the image src a new tag for the test, removed at its end.
func tagImage(t *testing.T, src, tag string) {
	t.Helper()
	d, err := runner.NewDockerClient()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.ImageTag(ctx, src, tag); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d, err := runner.NewDockerClient()
		if err != nil {
			return
		}
		defer d.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Untags only: the image itself stays under its own tag.
		_, _ = d.ImageRemove(ctx, tag, image.RemoveOptions{})
	})
}

// TestMissingImageRunsOnAnotherWorker: a worker that lacks a task's image
// hands the task back (exception/resource-unavailable, naming the image
// and how to load it), and a worker that has it runs the new run.
func TestMissingImageRunsOnAnotherWorker(t *testing.T) {
	t.Parallel()
	src := faultImage(t, "python")
	c := clustertest.Start(t, clustertest.Options{})
	set := smallData(t, 3, 20, 73) // one mapper
	tag := "af-test/i12-retries-image:" + strings.ToLower(taskdef.NewID()[:8])
	g := graphFor(t, c, tag, upload(t, c, set))
	createGraph(t, c, g)
	mapper := mapperIDs(g)[0]

	// Worker A, on a host without the image (the tag does not exist yet).
	a := uniqueID("noimage")
	wa := c.StartWorker(t, a, clustertest.WorkerOptions{Capacity: 1})
	waitUntil(t, time.Minute, "worker A hands the mapper back", func() (bool, string) {
		ts := taskStatus(t, c, mapper)
		return len(ts.Runs) >= 2, fmt.Sprintf("%s with %d runs", ts.State, len(ts.Runs))
	})
	if err := wa.Stop(); err != nil {
		t.Fatal(err)
	}
	// Worker B, on a host with the image.
	tagImage(t, src, tag)
	b := uniqueID("hasimage")
	c.StartWorker(t, b, clustertest.WorkerOptions{Capacity: 1})
	c.WaitGraph(t, g.GraphID, 2*time.Minute)
	wantCleanResult(t, c, g, set)

	ts := taskStatus(t, c, mapper)
	r0, last := ts.Runs[0], lastRun(ts)
	if r0.WorkerID != a || r0.State != taskdef.StateException || r0.ReasonResolved != taskdef.ReasonResourceUnavail {
		t.Errorf("first run: worker %s, %s/%s; want %s, exception/%s", r0.WorkerID, r0.State, r0.ReasonResolved, a, taskdef.ReasonResourceUnavail)
	}
	for _, want := range []string{tag, a, "docker load"} {
		if !strings.Contains(r0.Message, want) {
			t.Errorf("first run's message lacks %q: %s", want, r0.Message)
		}
	}
	if last.WorkerID != b || last.State != taskdef.StateCompleted || last.ReasonCreated != taskdef.ReasonRetry {
		t.Errorf("last run: worker %s, %s, created %s; want %s, completed, created %s", last.WorkerID, last.State, last.ReasonCreated, b, taskdef.ReasonRetry)
	}
}

// TestMissingImageEverywhereEndsNamingIt: when no worker has the image,
// the task ends after its retries, exception/resource-unavailable, and
// the message names the image and how to load it. The worker pauses its
// claims after each hand-back (2 s, then 4 s), so a worker with the image
// would have claimed the new run first.
func TestMissingImageEverywhereEndsNamingIt(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t)
	c := clustertest.Start(t, clustertest.Options{})
	set := smallData(t, 3, 5, 26)
	img := "af-test/no-such-image:" + strings.ToLower(taskdef.NewID()[:8])
	g := graphFor(t, c, img, upload(t, c, set))
	for i := range g.Tasks {
		g.Tasks[i].Task.Retries = 2
	}
	createGraph(t, c, g)
	id := uniqueID("noimage")
	c.StartWorker(t, id, clustertest.WorkerOptions{Capacity: 1})
	c.WaitGraph(t, g.GraphID, time.Minute)
	ts := taskStatus(t, c, mapperIDs(g)[0])
	if len(ts.Runs) != 3 {
		t.Fatalf("mapper has %d runs, want 3 (one and two retries)", len(ts.Runs))
	}
	r := lastRun(ts)
	if ts.State != taskdef.StateException || r.ReasonResolved != taskdef.ReasonResourceUnavail {
		t.Fatalf("mapper %s/%s, want exception/%s", ts.State, r.ReasonResolved, taskdef.ReasonResourceUnavail)
	}
	for _, want := range []string{img, id, "make images", "docker load"} {
		if !strings.Contains(r.Message, want) {
			t.Errorf("message lacks %q: %s", want, r.Message)
		}
	}
	for i := 1; i < len(ts.Runs); i++ {
		prev, next := ts.Runs[i-1], ts.Runs[i]
		if prev.Resolved == nil || next.Started == nil {
			t.Fatalf("runs %+v lack times", ts.Runs)
		}
		want := time.Duration(1<<(i-1)) * 2 * time.Second
		if gap := next.Started.Sub(*prev.Resolved); gap < want-200*time.Millisecond {
			t.Errorf("run %d claimed %s after run %d was handed back, want the claim pause of %s", i, gap, i-1, want)
		}
	}
}
