package queueclient

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/af-project/af/internal/taskdef"
)

const presignedQuery = "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20300102%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20300102T030405Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=0123456789abcdef"

func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func noQuery(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	for _, m := range []string{"X-Amz", "?", "Signature=", "0123456789abcdef", "AKIAEXAMPLE", "aws4_request"} {
		if strings.Contains(err.Error(), m) {
			t.Errorf("%s: error %q carries %q", what, err, m)
		}
	}
}

// TestRunSendsItsToken checks that every run-scoped call carries the run's
// token and other calls carry none.
func TestRunSendsItsToken(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Method+" "+r.URL.Path] = r.Header.Get(taskdef.RunTokenHeader)
		mu.Unlock()
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	c := fastClient(srv.URL)
	ctx := context.Background()
	run := c.Claimed(taskdef.Claim{TaskID: "abcdefgh", RunID: 2, RunToken: "the-token"})
	if run.TaskID() != "abcdefgh" || run.RunID() != 2 {
		t.Fatalf("run %s/%d", run.TaskID(), run.RunID())
	}
	_, _ = run.Reclaim(ctx, taskdef.Stats{})
	_, _ = run.ReportCompleted(ctx, taskdef.ReportRequest{})
	_, _ = run.ReportFailed(ctx, taskdef.ReportRequest{})
	_, _ = run.ReportException(ctx, taskdef.ReportRequest{Reason: taskdef.ReasonWorkerShutdown})
	_, _ = run.CreateArtifact(ctx, "public/x.txt", "text/plain")
	_, _ = c.Graph(ctx, "graphgraph")
	want := map[string]string{
		"POST /api/v1/tasks/abcdefgh/runs/2/reclaim":                "the-token",
		"POST /api/v1/tasks/abcdefgh/runs/2/completed":              "the-token",
		"POST /api/v1/tasks/abcdefgh/runs/2/failed":                 "the-token",
		"POST /api/v1/tasks/abcdefgh/runs/2/exception":              "the-token",
		"POST /api/v1/tasks/abcdefgh/runs/2/artifacts/public/x.txt": "the-token",
		"GET /api/v1/graphs/graphgraph":                             "",
	}
	mu.Lock()
	defer mu.Unlock()
	for k, v := range want {
		if got, ok := seen[k]; !ok || got != v {
			t.Errorf("%s: run token %q (called: %v), want %q", k, got, ok, v)
		}
	}
}

// TestArtifactErrorsNameHostAndPathOnly fails presigned PUTs and GETs (a
// closed port; S3's 403 SignatureDoesNotMatch, which echoes the signature
// and the credential) and checks the errors name the host and path and
// S3's code and message, never the URL's query.
func TestArtifactErrorsNameHostAndPathOnly(t *testing.T) {
	t.Parallel()
	dead := closedAddr(t)
	s3 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message><AWSAccessKeyId>AKIAEXAMPLE</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256 20300102T030405Z 20300102/us-east-1/s3/aws4_request</StringToSign><SignatureProvided>0123456789abcdef</SignatureProvided><CanonicalRequest>PUT /b/k X-Amz-Credential=AKIAEXAMPLE%2F20300102&amp;X-Amz-Signature=0123456789abcdef</CanonicalRequest></Error>`))
	}))
	defer s3.Close()
	var target string
	queue := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			http.Redirect(w, r, target, http.StatusSeeOther)
			return
		}
		_ = json.NewEncoder(w).Encode(taskdef.ArtifactResponse{PutURL: target, ContentType: "text/plain"})
	}))
	defer queue.Close()
	c := fastClient(queue.URL)
	ctx := context.Background()
	run := c.Run("abcdefgh", 0, "tok")
	for _, tc := range []struct{ name, url, where, cause string }{
		{"closed port", "http://" + dead + "/bucket/abcdefgh/0/public/result.txt" + presignedQuery, "PUT " + dead + "/bucket/abcdefgh/0/public/result.txt: ", "connection refused"},
		{"403", s3.URL + "/bucket/abcdefgh/0/public/result.txt" + presignedQuery, "PUT " + strings.TrimPrefix(s3.URL, "http://") + "/bucket/abcdefgh/0/public/result.txt: S3 answered 403 Forbidden: SignatureDoesNotMatch: The request signature", ""},
	} {
		target = tc.url
		err := run.UploadArtifact(ctx, "public/result.txt", "text/plain", strings.NewReader("x"), 1)
		noQuery(t, "upload, "+tc.name, err)
		if !strings.Contains(err.Error(), tc.where) || !strings.Contains(err.Error(), tc.cause) {
			t.Errorf("upload, %s: %q, want %q and %q", tc.name, err, tc.where, tc.cause)
		}
		_, err = c.GetArtifact(ctx, "abcdefgh", 0, "public/result.txt")
		noQuery(t, "get, "+tc.name, err)
		if where := strings.Replace(tc.where, "PUT", "GET", 1); !strings.Contains(err.Error(), where) {
			t.Errorf("get, %s: %q, want %q", tc.name, err, where)
		}
	}
	// A canceled upload still says so to errors.Is.
	target = "http://" + dead + "/b/k" + presignedQuery
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err := run.UploadArtifact(cctx, "public/result.txt", "text/plain", strings.NewReader("x"), 1)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("canceled upload: %v", err)
	}
	noQuery(t, "canceled upload", err)
}

// TestQueueErrorsHaveNoURL checks that an unreachable queue's error names
// the queue and the call, with the cause and without Go's quoted URL.
func TestQueueErrorsHaveNoURL(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t)
	c := fastClient("http://"+addr, WithRetries(1))
	_, err := c.Run("abcdefgh", 0, "secret-run-token").Reclaim(context.Background(), taskdef.Stats{})
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v", err)
	}
	msg := err.Error()
	if strings.Contains(msg, `"http://`) || strings.Contains(msg, "secret-run-token") || !strings.Contains(msg, "connection refused") ||
		!strings.Contains(msg, "POST /api/v1/tasks/abcdefgh/runs/0/reclaim") {
		t.Errorf("message %q", msg)
	}
}
