package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
)

func TestArtifactsRoundTripThroughPresignedURLs(t *testing.T) {
	t.Parallel()
	m := miniotest.Start(t)
	ctx := ctxT(t)
	// The server creates its bucket, as af serve does on first start.
	created, err := EnsureBucket(ctx, m.S3, "artifacts")
	if err != nil || !created {
		t.Fatalf("EnsureBucket: %v %v", created, err)
	}
	if created, err := EnsureBucket(ctx, m.S3, "artifacts"); err != nil || created {
		t.Fatalf("EnsureBucket again: %v %v", created, err)
	}
	e := newEnv(t, envOpts{s3: m.S3, bucket: "artifacts"})
	g := testGraph(1, e.clock.Now())
	if _, err := e.submit.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	claims, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w"}, 0)
	if err != nil || len(claims) != 1 {
		t.Fatalf("claim %v %v", claims, err)
	}
	c := claims[0]
	result := []byte("\"linux\"\t3\n\"windows\"\t5\n")
	if err := e.work.Claimed(c).UploadArtifact(ctx, taskdef.ResultArtifact, "text/plain", bytes.NewReader(result), int64(len(result))); err != nil {
		t.Fatal(err)
	}
	logText := []byte("started\n")
	if err := e.work.Claimed(c).UploadArtifact(ctx, taskdef.LiveLogArtifact, "text/plain; charset=utf-8", bytes.NewReader(logText), int64(len(logText))); err != nil {
		t.Fatal(err)
	}
	// The object is where the layout says, with the task's expiry.
	key := "art/" + c.TaskID + "/0/" + taskdef.ResultArtifact
	head, err := m.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("artifacts"), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("object %s: %v", key, err)
	}
	if aws.ToString(head.ContentType) != "text/plain" {
		t.Errorf("content type %q", aws.ToString(head.ContentType))
	}
	exp, err := http.ParseTime(aws.ToString(head.ExpiresString))
	if err != nil || !exp.Equal(c.Task.Expires.Truncate(time.Second)) {
		t.Errorf("object Expires %q (%v), want the task's %v", aws.ToString(head.ExpiresString), err, c.Task.Expires)
	}

	// Read it back through the queue's redirect, by run and as latest.
	for _, run := range []int{0, -1} {
		rc, err := e.reader.GetArtifact(ctx, c.TaskID, run, taskdef.ResultArtifact)
		if err != nil {
			t.Fatalf("get run %d: %v", run, err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, result) {
			t.Fatalf("run %d artifact %q, want %q", run, got, result)
		}
	}
	loc, err := e.reader.ArtifactLocation(ctx, c.TaskID, 0, taskdef.LiveLogArtifact)
	if err != nil || !strings.HasPrefix(loc, m.Endpoint+"/artifacts/art/") || !strings.Contains(loc, "X-Amz-Signature=") {
		t.Fatalf("redirect %q %v: want a presigned URL on the configured endpoint", loc, err)
	}
	list, err := e.reader.Artifacts(ctx, c.TaskID, 0)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int64{}
	for _, a := range list.Artifacts {
		names[a.Name] = a.Size
	}
	if len(names) != 2 || names[taskdef.ResultArtifact] != int64(len(result)) || names[taskdef.LiveLogArtifact] != int64(len(logText)) {
		t.Fatalf("list %+v", list.Artifacts)
	}

	// Missing artifact: 404 from the queue, not an S3 error page.
	if _, err := e.reader.GetArtifact(ctx, c.TaskID, 0, "public/nothing.txt"); !errors.Is(err, queueclient.ErrNotFound) {
		t.Fatalf("missing artifact: %v", err)
	}
	if _, err := e.reader.GetArtifact(ctx, c.TaskID, 7, taskdef.ResultArtifact); !errors.Is(err, queueclient.ErrNotFound) {
		t.Fatalf("missing run: %v", err)
	}

	// After the run resolves the worker may still upload its final log
	// within the grace, not after.
	if _, err := e.work.Claimed(c).ReportFailed(ctx, taskdef.ReportRequest{Message: "exit 1"}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Duration(e.cfg.ArtifactGrace) - time.Second)
	if err := e.work.Claimed(c).UploadArtifact(ctx, taskdef.LiveLogArtifact, "text/plain", strings.NewReader("final\n"), 6); err != nil {
		t.Fatalf("upload within grace: %v", err)
	}
	e.clock.Advance(2 * time.Second)
	_, err = e.work.Claimed(c).CreateArtifact(ctx, taskdef.LiveLogArtifact, "text/plain")
	var ae *queueclient.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, "within") {
		t.Fatalf("upload after grace: %v, want 409 explaining the grace", err)
	}

	// Names that would escape the run's prefix are refused.
	// Plain "../" is cleaned away by the router's redirect; escaped
	// forms reach the handler and must be refused there.
	for _, bad := range []string{"%2E%2E/x", "public/%2E%2E%2F%2E%2E%2Fy", "public%2F%2Fx", "public/%2E/x", "a%5Cb", "ctl%01", "%2Fabs"} {
		status, body := do(t, e, routeCase{method: "POST", path: "/api/v1/tasks/" + c.TaskID + "/runs/0/artifacts/" + bad, body: `{}`}, workTok)
		if status != http.StatusBadRequest {
			t.Errorf("name %q: %d %s", bad, status, body)
		}
	}
	// The presigned PUT must be used with its headers: a PUT with another
	// content type is refused by S3.
	e2 := newEnv(t, envOpts{s3: m.S3, bucket: "artifacts"})
	g2 := testGraph(1, e2.clock.Now())
	if _, err := e2.submit.CreateGraph(ctx, g2); err != nil {
		t.Fatal(err)
	}
	cl, err := e2.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w"}, 0)
	if err != nil || len(cl) != 1 {
		t.Fatal(err)
	}
	ar, err := e2.work.Claimed(cl[0]).CreateArtifact(ctx, "public/x.txt", "text/plain")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPut, ar.PutURL, strings.NewReader("x"))
	req.Header.Set("Content-Type", "application/evil")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		t.Fatalf("S3 accepted a PUT with a different content type than signed")
	}
	if !strings.Contains(e.srv.metricsText(t), `af_artifact_requests_total{op="create",result="ok"}`) {
		t.Error("artifact metrics missing")
	}
}
