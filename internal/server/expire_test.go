package server

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
)

// listKeys lists every key under prefix in the bucket.
func listKeys(t *testing.T, m *miniotest.Server, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	pg := s3.NewListObjectsV2Paginator(m.S3, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

// TestExpirySweepDeletesRecordsAndArtifacts runs af serve's expiry loop on
// the fake clock over a real bbolt queue and a real MinIO: an expired
// graph's tasks go in batches of expire_batch, artifacts first, and its ids
// answer 410 saying "expired"; an unexpired graph keeps everything.
func TestExpirySweepDeletesRecordsAndArtifacts(t *testing.T) {
	t.Parallel()
	m := miniotest.Start(t, "artifacts")
	ctx := ctxT(t)
	e := newEnv(t, envOpts{s3: m.S3, bucket: "artifacts"})
	e.srv.cfg.ExpireBatch = 2

	old := testGraph(4, e.clock.Now()) // expires in 30 days
	if _, err := e.submit.CreateGraph(ctx, old); err != nil {
		t.Fatal(err)
	}
	// One mapper runs and uploads through the API; every task gets more
	// objects written straight to the bucket (several runs' worth).
	claims, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w"}, 0)
	if err != nil || len(claims) != 1 {
		t.Fatalf("claim %v %v", claims, err)
	}
	run := e.work.Claimed(claims[0])
	if err := run.UploadArtifact(ctx, taskdef.LiveLogArtifact, "text/plain", strings.NewReader("log\n"), 4); err != nil {
		t.Fatal(err)
	}
	if _, err := run.ReportCompleted(ctx, taskdef.ReportRequest{}); err != nil {
		t.Fatal(err)
	}
	for _, gt := range old.Tasks {
		for _, name := range []string{"0/public/a.txt", "1/public/b.txt"} {
			m.Put(t, "artifacts", "art/"+gt.TaskID+"/"+name, []byte("x"))
		}
	}
	e.clock.Advance(10 * 24 * time.Hour)
	young := testGraph(1, e.clock.Now()) // expires 40 days after the start
	if _, err := e.submit.CreateGraph(ctx, young); err != nil {
		t.Fatal(err)
	}
	keep := "art/" + young.Tasks[0].TaskID + "/0/public/result.txt"
	m.Put(t, "artifacts", keep, []byte("kept"))

	// Before the expiry loop starts, so that these advances fire none of
	// its timers: past the old graph's expiry, resolved (deadline
	// exceeded) and past artifact_grace + artifact_put_ttl (25 minutes:
	// late uploads) after.
	e.clock.Advance(20*24*time.Hour + time.Hour)
	if _, err := e.q.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(30 * time.Minute)

	// The expiry loop, on the fake clock; each sweep's report arrives on
	// sweeps.
	sweeps := make(chan queue.SweepReport, 16)
	e.srv.onSweep = func(rep queue.SweepReport, err error) {
		if err != nil {
			t.Errorf("sweep: %v", err)
		}
		sweeps <- rep
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(sctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	sweep := func() queue.SweepReport {
		t.Helper()
		e.clock.WaitForTimer(t)
		e.clock.Advance(time.Duration(e.cfg.ExpireEvery))
		select {
		case rep := <-sweeps:
			return rep
		case <-ctx.Done():
			t.Fatal("no sweep")
		}
		return queue.SweepReport{}
	}

	rep := sweep()
	if rep.Graphs != 1 || rep.Tasks != 5 || rep.MaxBatch != 2 || rep.Batches != 3 {
		t.Fatalf("sweep %+v, want 5 tasks in batches of at most 2", rep)
	}
	for _, gt := range old.Tasks {
		if keys := listKeys(t, m, "artifacts", "art/"+gt.TaskID+"/"); len(keys) != 0 {
			t.Errorf("task %s still has artifacts %q", gt.TaskID, keys)
		}
	}
	if keys := listKeys(t, m, "artifacts", "art/"); len(keys) != 1 || keys[0] != keep {
		t.Errorf("bucket holds %q, want only the young graph's %s", keys, keep)
	}

	// Every route of the expired ids says so: 410 Gone, "expired".
	var ae *queueclient.APIError
	_, err = e.reader.Graph(ctx, old.GraphID)
	if !errors.As(err, &ae) || ae.Status != http.StatusGone || ae.Code != "Expired" || !errors.Is(err, queueclient.ErrExpired) ||
		!strings.Contains(ae.Message, "graph "+old.GraphID+" expired at ") {
		t.Fatalf("graph: %v, want 410 expired", err)
	}
	task := old.Tasks[0].TaskID
	for name, call := range map[string]func() error{
		"task":       func() error { _, err := e.reader.Task(ctx, task); return err },
		"definition": func() error { _, err := e.reader.TaskDefinition(ctx, task); return err },
		"artifact":   func() error { _, err := e.reader.GetArtifact(ctx, task, -1, taskdef.LiveLogArtifact); return err },
		"run list":   func() error { _, err := e.reader.Artifacts(ctx, task, 0); return err },
		"rerun":      func() error { _, err := e.submit.Rerun(ctx, task); return err },
		"cancel":     func() error { _, err := e.submit.CancelGraph(ctx, old.GraphID); return err },
	} {
		err := call()
		if !errors.As(err, &ae) || ae.Status != http.StatusGone || !strings.Contains(ae.Message, "expired") {
			t.Errorf("%s: %v, want 410 expired", name, err)
		}
	}
	// The young graph is whole.
	if gs, err := e.reader.Graph(ctx, young.GraphID); err != nil || len(gs.Tasks) != 2 {
		t.Fatalf("young graph: %v", err)
	}
	// An unknown id is still "not found".
	if _, err := e.reader.Graph(ctx, taskdef.NewID()); !errors.Is(err, queueclient.ErrNotFound) {
		t.Fatalf("unknown graph: %v", err)
	}
}

// TestNoArtifactsForExpiredTasks: once a task is past its expiry, its
// worker can no longer create artifacts (they would outlive the sweep).
func TestNoArtifactsForExpiredTasks(t *testing.T) {
	t.Parallel()
	m := miniotest.Start(t, "artifacts")
	ctx := ctxT(t)
	e := newEnv(t, envOpts{s3: m.S3, bucket: "artifacts"})
	g := testGraph(1, e.clock.Now())
	for i := range g.Tasks {
		g.Tasks[i].Task.Deadline = e.clock.Now().Add(time.Hour)
		g.Tasks[i].Task.Expires = e.clock.Now().Add(time.Hour)
	}
	if _, err := e.submit.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	claims, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w"}, 0)
	if err != nil || len(claims) != 1 {
		t.Fatalf("claim %v %v", claims, err)
	}
	run := e.work.Claimed(claims[0])
	if err := run.UploadArtifact(ctx, "public/a.txt", "text/plain", bytes.NewReader([]byte("a")), 1); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	_, err = run.CreateArtifact(ctx, "public/b.txt", "text/plain")
	var ae *queueclient.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusGone || !strings.Contains(ae.Message, "expired") {
		t.Fatalf("artifact of an expired task: %v, want 410", err)
	}
}

// TestExpirySweepResumesAfterRestart: af serve dies mid-sweep, after a
// batch's artifacts were deleted and before its records were; the
// restarted server's sweep finishes the graph and leaves no object behind.
func TestExpirySweepResumesAfterRestart(t *testing.T) {
	t.Parallel()
	m := miniotest.Start(t, "artifacts")
	ctx := ctxT(t)
	e := newEnv(t, envOpts{s3: m.S3, bucket: "artifacts"})
	g := testGraph(5, e.clock.Now())
	if _, err := e.submit.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	for _, gt := range g.Tasks {
		m.Put(t, "artifacts", "art/"+gt.TaskID+"/0/public/log.txt", []byte("x"))
	}
	e.clock.Advance(31 * 24 * time.Hour)
	if _, err := e.q.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)

	// The sweep the server would run, dying in its second batch after S3
	// and before the queue.
	calls := 0
	_, err := e.q.Sweep(ctx, queue.SweepOptions{Batch: 2, BeforeDelete: func(ctx context.Context, ids []string) error {
		calls++
		if err := e.srv.deleteArtifacts(ctx, ids); err != nil {
			return err
		}
		if calls == 2 {
			return errors.New("killed")
		}
		return nil
	}})
	if err == nil || calls != 2 {
		t.Fatalf("interrupted sweep: %v after %d batches", err, calls)
	}
	if keys := listKeys(t, m, "artifacts", "art/"); len(keys) != 2 {
		t.Fatalf("after two batches' deletions the bucket holds %q, want the last 2 tasks' objects", keys)
	}
	path := e.q.Path()
	if err := e.q.Close(); err != nil {
		t.Fatal(err)
	}

	q, err := queue.Open(path, queue.Options{Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	cfg := e.cfg
	cfg.ExpireBatch = 2
	srv, err := New(cfg, Deps{Queue: q, Clock: e.clock, S3: m.S3})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := srv.SweepExpired(ctx)
	if err != nil || rep.Tasks != 4 || rep.MaxBatch != 2 || len(rep.Done) != 1 {
		t.Fatalf("sweep after the restart: %+v %v, want the 4 tasks left", rep, err)
	}
	if keys := listKeys(t, m, "artifacts", "art/"); len(keys) != 0 {
		t.Fatalf("the bucket still holds %q", keys)
	}
	for _, gt := range g.Tasks {
		if _, err := q.Task(ctx, gt.TaskID); !errors.Is(err, queue.ErrNotFound) {
			t.Fatalf("task %s after the sweep: %v", gt.TaskID, err)
		}
		if _, ok, err := q.Expired(ctx, "task", gt.TaskID); !ok || err != nil {
			t.Fatalf("task %s has no tombstone: %v", gt.TaskID, err)
		}
	}
}
