package queueclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

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

// TestUploadRetriesWithAFreshURL: an upload whose PUT meets a 503, a cut
// connection and an expired URL is tried again from the body's start,
// each time with a new presigned URL from the queue, and lands whole; a
// 4xx that is not an expiry, and a body that cannot be rewound, are tried
// once.
func TestUploadRetriesWithAFreshURL(t *testing.T) {
	t.Parallel()
	body := strings.Repeat("a line of the result\n", 5000)
	tests := []struct {
		name string
		// answers are the S3 answers to successive PUTs: a status, or
		// 0 to cut the connection.
		answers   []int
		expired   bool
		seekable  bool
		wantPuts  int
		wantErr   string
		wantStore bool
	}{
		{name: "503, cut, expired, ok", answers: []int{503, 0, 403, 200}, expired: true, seekable: true, wantPuts: 4, wantStore: true},
		{name: "gives up after its tries", answers: []int{503, 503, 503, 503}, seekable: true, wantPuts: 3, wantErr: "after 3 tries"},
		{name: "403 not an expiry is final", answers: []int{403, 200}, seekable: true, wantPuts: 1, wantErr: "403"},
		{name: "a stream is sent once", answers: []int{503, 200}, wantPuts: 1, wantErr: "503"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			puts, urls := 0, 0
			var stored string
			var seenURLs []string
			s3 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				answer := tc.answers[min(puts, len(tc.answers)-1)]
				puts++
				seenURLs = append(seenURLs, r.URL.RawQuery)
				mu.Unlock()
				switch answer {
				case 0:
					conn, _, err := http.NewResponseController(w).Hijack()
					if err == nil {
						conn.Close()
					}
				case 200:
					if string(b) != body {
						t.Errorf("S3 got %d bytes, want the body's %d", len(b), len(body))
					}
					mu.Lock()
					stored = string(b)
					mu.Unlock()
				case 403:
					msg := "Access Denied."
					if tc.expired {
						msg = "Request has expired"
					}
					w.WriteHeader(403)
					_, _ = w.Write([]byte(`<Error><Code>AccessDenied</Code><Message>` + msg + `</Message></Error>`))
				default:
					w.WriteHeader(answer)
				}
			}))
			defer s3.Close()
			queue := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				urls++
				n := urls
				mu.Unlock()
				_ = json.NewEncoder(w).Encode(taskdef.ArtifactResponse{PutURL: fmt.Sprintf("%s/b/k?X-Amz-Signature=%d", s3.URL, n), ContentType: "text/plain"})
			}))
			defer queue.Close()
			// Three tries in all, or as many as there are answers.
			tries := max(3, min(len(tc.answers), tc.wantPuts))
			run := fastClient(queue.URL, WithUploadRetries(tries, time.Millisecond, 5*time.Millisecond)).Run("abcdefgh", 0, "tok")
			var rd io.Reader = strings.NewReader(body)
			if !tc.seekable {
				rd = io.MultiReader(strings.NewReader(body))
			}
			err := run.UploadArtifact(context.Background(), "public/result.txt", "text/plain", rd, int64(len(body)))
			mu.Lock()
			defer mu.Unlock()
			if puts != tc.wantPuts || urls != tc.wantPuts {
				t.Fatalf("%d PUTs with %d presigned URLs, want %d of each", puts, urls, tc.wantPuts)
			}
			for i := 1; i < len(seenURLs); i++ {
				if seenURLs[i] == seenURLs[i-1] {
					t.Errorf("PUT %d reused the URL of PUT %d", i, i-1)
				}
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				noQuery(t, tc.name, err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantStore && stored != body {
				t.Fatal("the body S3 stored is not the upload's")
			}
		})
	}
}
