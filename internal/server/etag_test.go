package server

import (
	"io"
	"net/http"
	"testing"

	"github.com/af-project/af/internal/taskdef"
)

// TestGraphStatusETag: an unchanged graph answers 304 to the ETag it gave;
// any change gives a new ETag and the new body.
func TestGraphStatusETag(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)
	g := testGraph(3, e.clock.Now())
	if _, err := e.submit.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	get := func(etag string) (int, string, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.http.URL+"/api/v1/graphs/"+g.GraphID, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+readTok)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("ETag"), body
	}
	code, tag1, body := get("")
	if code != http.StatusOK || tag1 == "" || len(body) == 0 {
		t.Fatalf("first GET: %d etag %q, %d bytes", code, tag1, len(body))
	}
	if code, tag, body := get(tag1); code != http.StatusNotModified || tag != tag1 || len(body) != 0 {
		t.Fatalf("unchanged graph: %d etag %q, %d bytes; want 304 with the same etag and no body", code, tag, len(body))
	}
	claims, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 1}, 0)
	if err != nil || len(claims) != 1 {
		t.Fatalf("claim: %v %d", err, len(claims))
	}
	code, tag2, body := get(tag1)
	if code != http.StatusOK || tag2 == tag1 || len(body) == 0 {
		t.Fatalf("changed graph: %d etag %q (was %q), %d bytes; want 200 with a new etag", code, tag2, tag1, len(body))
	}
}
