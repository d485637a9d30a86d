package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/worker"
)

// leakMarkers are what a presigned URL or its query leaves in text.
var leakMarkers = []string{"X-Amz-Signature", "X-Amz-Credential", "X-Amz-Algorithm", "x-amz-signature", "Signature=", "AWSAccessKeyId"}

func assertNoPresigned(t *testing.T, where, text string) {
	t.Helper()
	for _, m := range leakMarkers {
		if i := strings.Index(text, m); i >= 0 {
			t.Errorf("%s carries %q: …%s…", where, m, text[max(0, i-200):min(len(text), i+200)])
		}
	}
}

// failingFront is a proxy in front of MinIO that presigned artifact URLs
// name: it cuts the connection of every PUT of a result artifact; of the
// first task's first live-log PUT it spoils the signature, so that MinIO
// itself answers 403 SignatureDoesNotMatch, and it cuts the second task's
// first live-log PUT. Everything else reaches MinIO as sent (a task's
// later live-log PUTs, the last of them before its report among them).
type failingFront struct {
	rp         *httputil.ReverseProxy
	resultCuts atomic.Int32
	mu         sync.Mutex
	livePuts   map[string]int // by task
}

func cut(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

func newFailingFront(t *testing.T, minio string) *httptest.Server {
	target, err := url.Parse(minio)
	if err != nil {
		t.Fatal(err)
	}
	f := &failingFront{livePuts: map[string]int{}, rp: &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host // the signature covers the host the client saw
	}}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv
}

func (f *failingFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/"+taskdef.ResultArtifact) {
		f.resultCuts.Add(1)
		cut(w)
		return
	}
	if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/"+taskdef.LiveLogArtifact) {
		// /<bucket>/<task>/<run>/public/logs/live.log
		task := strings.Split(r.URL.Path, "/")[2]
		f.mu.Lock()
		f.livePuts[task]++
		first, nth := f.livePuts[task] == 1, len(f.livePuts)
		f.mu.Unlock()
		switch {
		case first && nth == 1:
			q := r.URL.Query()
			q.Set("X-Amz-Signature", strings.Repeat("0", len(q.Get("X-Amz-Signature"))))
			r.URL.RawQuery = q.Encode()
		case first && nth == 2:
			cut(w)
			return
		}
	}
	f.rp.ServeHTTP(w, r)
}

// TestFailedUploadLeaksNoPresignedURL makes a mapper's result upload fail
// (the connection to S3 is cut) and one live-log upload fail (MinIO
// refuses a spoiled signature): the task's message, its live log, the
// worker's log, the owner's email and the status JSON name the upload's
// host and path, never the presigned URL's query.
func TestFailedUploadLeaksNoPresignedURL(t *testing.T) {
	t.Parallel()
	image := faultImage(t, "python")
	var front *failingFront
	c := clustertest.Start(t, clustertest.Options{ArtifactFront: func(minio string) string {
		srv := newFailingFront(t, minio)
		front = srv.Config.Handler.(*failingFront)
		return srv.URL
	}})
	set := smallData(t, 6, 40, 41) // two mappers of three files
	files := upload(t, c, set)
	// About 2.5 s of work: the live log goes up on the way.
	g := withEnv(graphFor(t, c, image, files), map[string]string{envSleep: "0.02"})
	// Every result upload is cut: one run per task, two tries per upload,
	// so the failure is reported instead of retried for minutes.
	for i := range g.Tasks {
		g.Tasks[i].Task.Retries = 0
	}
	createGraph(t, c, g)
	c.StartWorker(t, uniqueID("leak"), clustertest.WorkerOptions{Capacity: 1, UploadAttempts: 2})
	c.WaitGraph(t, g.GraphID, 2*time.Minute)

	front.mu.Lock()
	livePuts := fmt.Sprint(front.livePuts)
	tasks := len(front.livePuts)
	front.mu.Unlock()
	if front.resultCuts.Load() < 2 || tasks < 2 {
		t.Fatalf("the front cut %d result uploads and saw live-log uploads %s (want two mappers' results cut); the test did not exercise the failures", front.resultCuts.Load(), livePuts)
	}
	frontHost := strings.TrimPrefix(*mustFrontURL(t, c), "http://")
	var liveWhere []string
	for _, mapper := range mapperIDs(g) {
		run := lastRun(taskStatus(t, c, mapper))
		if run.State != taskdef.StateException || run.ReasonResolved != taskdef.ReasonResourceUnavail {
			t.Fatalf("mapper run %s/%s %q, want exception/resource-unavailable", run.State, run.ReasonResolved, run.Message)
		}
		// The message says where the upload went: host and path.
		wantWhere := "PUT " + frontHost + "/" + clustertest.ArtifactBucket + "/" + mapper + "/0/" + taskdef.ResultArtifact
		if !strings.Contains(run.Message, wantWhere) || strings.Contains(run.Message, "?") {
			t.Errorf("message %q, want it to name %q and no query", run.Message, wantWhere)
		}
		assertNoPresigned(t, "the task message", run.Message)
		t.Logf("task message: %s", run.Message)
		// The live log (the last upload, before the report, went through).
		log := liveLog(t, c, mapper)
		if !strings.Contains(log, "result: exception/resource-unavailable") || !strings.Contains(log, wantWhere) {
			t.Errorf("live log lacks the result line naming %q:\n%s", wantWhere, log)
		}
		assertNoPresigned(t, "the live log", log)
		liveWhere = append(liveWhere, "PUT "+frontHost+"/"+clustertest.ArtifactBucket+"/"+mapper+"/0/"+taskdef.LiveLogArtifact+": ")
	}

	// The status JSON as any reader gets it.
	for _, path := range []string{"/api/v1/tasks/" + mapperIDs(g)[0], "/api/v1/graphs/" + g.GraphID} {
		resp, err := http.Get(c.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assertNoPresigned(t, "GET "+path, string(body))
	}
	// The monitor page's HTML.
	if resp, err := http.Get(c.URL + "/graphs/" + g.GraphID); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assertNoPresigned(t, "the monitor page", string(body))
	}

	// The worker's own log: it warned about the refused live-log upload,
	// with S3's code and message, and the cut one, with host and path.
	logs := c.Logs.String()
	if !strings.Contains(logs, "upload live log") || !strings.Contains(logs, "SignatureDoesNotMatch") ||
		!(strings.Contains(logs, liveWhere[0]) || strings.Contains(logs, liveWhere[1])) {
		t.Errorf("the worker did not log both failed live-log uploads by host and path:\n%s", logs)
	}
	assertNoPresigned(t, "the worker's log", logs)

	// The owner's email.
	msgs := c.SMTP.WaitFor(t, 1, 30*time.Second)
	for _, m := range msgs {
		if !strings.Contains(m.Text, frontHost) {
			t.Errorf("email does not quote the failure:\n%s", m.Text)
		}
		assertNoPresigned(t, "the owner's email", string(m.Data)+m.Text+m.HTML)
	}
}

// mustFrontURL is the public endpoint the cluster's presigned URLs name,
// read back from a presigned GET of the live log.
func mustFrontURL(t *testing.T, c *clustertest.Cluster) *string {
	t.Helper()
	gs, err := c.Submit.Graphs(context.Background(), 1)
	if err != nil || len(gs) == 0 {
		t.Fatalf("graphs: %v", err)
	}
	g, err := c.Submit.Graph(context.Background(), gs[0].GraphID)
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range g.Tasks {
		loc, err := c.Submit.ArtifactLocation(context.Background(), ts.TaskID, -1, taskdef.LiveLogArtifact)
		if err != nil {
			continue
		}
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		s := u.Scheme + "://" + u.Host
		return &s
	}
	t.Fatal("no live log to read the artifact endpoint from")
	return nil
}

// TestRestartedWorkerHandsRunsBack kills a worker process mid-task and
// starts it again with the same id: the restarted worker reports the
// killed run exception/worker-shutdown within seconds (the lease is five
// minutes), the task runs again and the graph completes with a clean
// run's counts. The run's record lives in a private state dir outside the
// scratch root and is gone once the task ran.
func TestRestartedWorkerHandsRunsBack(t *testing.T) {
	t.Parallel()
	image := faultImage(t, "python")
	workerBinary(t)
	c := clustertest.Start(t, clustertest.Options{Lease: 5 * time.Minute})
	set := smallData(t, 3, 40, 29)
	files := upload(t, c, set)
	// About 6 s of work: long enough to be caught mid-task.
	g := withEnv(graphFor(t, c, image, files), map[string]string{envSleep: "0.05"})
	createGraph(t, c, g)

	id := uniqueID("restart")
	p := startProcWorker(t, c, id, "--capacity", "1")
	victim := waitRunningInContainer(t, c, id, mapperIDs(g))
	killed := lastRun(taskStatus(t, c, victim))

	stateDir := filepath.Join(c.Dir, "scratch-"+id+".state")
	fi, err := os.Stat(stateDir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir %s: %v %v, want mode 0700", stateDir, fi, err)
	}
	rec := filepath.Join(stateDir, victim+"-0.json")
	rfi, err := os.Stat(rec)
	if err != nil || rfi.Mode().Perm() != 0o600 {
		t.Fatalf("run record %s: %v %v, want mode 0600", rec, rfi, err)
	}
	var r struct {
		TaskID   string `json:"taskId"`
		RunID    int    `json:"runId"`
		RunToken string `json:"runToken"`
	}
	if b, err := os.ReadFile(rec); err != nil || json.Unmarshal(b, &r) != nil || r.TaskID != victim || r.RunID != 0 || len(r.RunToken) != 43 {
		t.Fatalf("run record %s: %+v %v", rec, r, err)
	}

	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 30*time.Second); err == nil {
		t.Fatal("the killed worker exited 0")
	}
	restarted := time.Now()
	startProcWorker(t, c, id, "--capacity", "1")
	waitUntil(t, 30*time.Second, "the restarted worker hands the killed run back", func() (bool, string) {
		r0 := taskStatus(t, c, victim).Runs[0]
		return r0.State == taskdef.StateException, string(r0.State)
	})
	handedBack := time.Since(restarted)
	ts := taskStatus(t, c, victim)
	r0 := ts.Runs[0]
	if r0.ReasonResolved != taskdef.ReasonWorkerShutdown || r0.Message != worker.RestartMessage || r0.WorkerID != id {
		t.Errorf("killed run: %s/%s %q by %s, want exception/%s %q by %s", r0.State, r0.ReasonResolved, r0.Message, r0.WorkerID, taskdef.ReasonWorkerShutdown, worker.RestartMessage, id)
	}
	if lease := killed.TakenUntil.Sub(*killed.Started); handedBack > lease/5 {
		t.Errorf("the run came back %s after the restart; the lease is %s", handedBack, lease)
	}
	t.Logf("the killed run came back %s after the restart", handedBack.Round(time.Millisecond))

	c.WaitGraph(t, g.GraphID, 2*time.Minute)
	if gs := graphStatus(t, c, g.GraphID); gs.State != taskdef.GraphCompleted {
		c.LogTaskLogs(t, g.GraphID)
		t.Fatalf("graph %s, want completed", gs.State)
	}
	if got, want := result(t, c, g), synth.FormatOSCounts(set.CountByOS(nil)); got != want {
		t.Fatalf("result after the restart\n%s\nwant (a clean run's counts)\n%s", got, want)
	}
	last := lastRun(taskStatus(t, c, victim))
	if last.State != taskdef.StateCompleted || last.ReasonCreated != taskdef.ReasonRetry || last.RunID == 0 {
		t.Errorf("last run %d: %s, created %s; want a completed retry", last.RunID, last.State, last.ReasonCreated)
	}
	waitUntil(t, 10*time.Second, "the state dir is empty once every run is reported", func() (bool, string) {
		es, err := os.ReadDir(stateDir)
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return err == nil && len(es) == 0, strings.Join(names, ", ")
	})
}
