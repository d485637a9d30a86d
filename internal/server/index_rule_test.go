package server

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/af-project/af/internal/index"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
)

// countingTransport counts the requests a client sends.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// TestIndexBuildRefusals: through the server, a build of another prefix
// or bucket than the index holds is a 409 with the very message a local
// `af index build --db` gives, and a bucket S3 will not list is a 400;
// the client sends each once (4xx are not retried).
func TestIndexBuildRefusals(t *testing.T) {
	t.Parallel()
	m := miniotest.Start(t, "telemetry", "other")
	ctx := ctxT(t)
	e := newEnv(t, envOpts{s3: m.S3})
	key := layout.Key("data", []string{"saved-session", "Firefox", "nightly", "30.0a1", "20140301030201", "20140302"}, 2, "a", "gz")
	m.Put(t, "telemetry", key, []byte("x"))
	counter := &countingTransport{}
	client := queueclient.New(e.http.URL, submitTok, queueclient.WithHTTPClient(&http.Client{Transport: counter}),
		queueclient.WithBackoff(time.Millisecond, 10*time.Millisecond))
	if _, err := client.IndexBuild(ctx, taskdef.IndexBuildRequest{Bucket: "telemetry", Prefix: ptr("data")}); err != nil {
		t.Fatal(err)
	}
	// The same source in a local index file, for the local messages.
	local, err := index.Open(filepath.Join(t.TempDir(), "local.db"), index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	if _, err := local.Refresh(ctx, m.S3, index.Request{Bucket: "telemetry", Prefix: ptr("data")}, nil); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		req    taskdef.IndexBuildRequest
		status int
		code   string
		want   string
	}{
		{name: "another prefix", req: taskdef.IndexBuildRequest{Prefix: ptr("logs")}, status: http.StatusConflict, code: "IndexSource",
			want: "the index holds s3://telemetry/data/ and cannot also hold s3://telemetry/logs/"},
		{name: "the whole bucket", req: taskdef.IndexBuildRequest{Bucket: "telemetry", Prefix: ptr("")}, status: http.StatusConflict, code: "IndexSource",
			want: "cannot also hold s3://telemetry/ "},
		{name: "another bucket", req: taskdef.IndexBuildRequest{Bucket: "other"}, status: http.StatusConflict, code: "IndexSource",
			want: "cannot also hold s3://other/data/"},
		{name: "another schema", req: taskdef.IndexBuildRequest{Schema: []byte(`{"version":1,"dimensions":[{"field_name":"x","allowed_values":"*"},{"field_name":"y","allowed_values":"*"}]}`)}, status: http.StatusConflict, code: "IndexSource",
			want: "was built with the dimensions"},
	} {
		before := counter.n.Load()
		_, err := client.IndexBuild(ctx, tc.req)
		var ae *queueclient.APIError
		if !errors.As(err, &ae) || ae.Status != tc.status || ae.Code != tc.code || !strings.Contains(ae.Message, tc.want) {
			t.Errorf("%s: %v, want %d %s with %q", tc.name, err, tc.status, tc.code, tc.want)
			continue
		}
		if n := counter.n.Load() - before; n != 1 {
			t.Errorf("%s: %d requests, want 1 (a 4xx is not retried)", tc.name, n)
		}
		// The local build of the same request says the same.
		req := index.Request{Bucket: tc.req.Bucket, Prefix: tc.req.Prefix}
		if tc.req.Schema != nil {
			s, err := layout.ParseSchema("schema", tc.req.Schema)
			if err != nil {
				t.Fatal(err)
			}
			req.Schema = &s
		}
		if _, lerr := local.Refresh(ctx, m.S3, req, nil); lerr == nil || lerr.Error() != ae.Message {
			t.Errorf("%s: local build says\n  %v\nthe server\n  %s", tc.name, lerr, ae.Message)
		}
	}

	// A bucket that does not exist, on a fresh server: 400, sent once.
	fresh := newEnv(t, envOpts{s3: m.S3})
	client = queueclient.New(fresh.http.URL, submitTok, queueclient.WithHTTPClient(&http.Client{Transport: counter}),
		queueclient.WithBackoff(time.Millisecond, 10*time.Millisecond))
	before := counter.n.Load()
	_, err = client.IndexBuild(ctx, taskdef.IndexBuildRequest{Bucket: "no-such-bucket"})
	var ae *queueclient.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Code != "BucketNotListable" || !strings.Contains(ae.Message, `bucket "no-such-bucket" does not exist`) {
		t.Fatalf("missing bucket: %v, want 400 saying it does not exist", err)
	}
	if n := counter.n.Load() - before; n != 1 {
		t.Errorf("missing bucket: %d requests, want 1", n)
	}
	freshLocal, err := index.Open(filepath.Join(t.TempDir(), "fresh.db"), index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer freshLocal.Close()
	if _, lerr := freshLocal.Refresh(context.Background(), m.S3, index.Request{Bucket: "no-such-bucket"}, nil); lerr == nil || lerr.Error() != ae.Message {
		t.Errorf("missing bucket: local build says %v, the server %s", lerr, ae.Message)
	}
	// The refused first build committed the server's index to nothing.
	if _, err := client.IndexBuild(ctx, taskdef.IndexBuildRequest{Bucket: "telemetry", Prefix: ptr("data")}); err != nil {
		t.Fatalf("build after the refusal: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }
