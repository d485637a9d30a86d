package queueclient

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

// These tests exercise the client's own retry and error logic against
// httptest servers that misbehave on purpose; the real server's routes are
// covered end to end in internal/server.

func fastClient(url string, opts ...Option) *Client {
	return New(url, "tok-123", append([]Option{WithBackoff(time.Millisecond, 5*time.Millisecond), WithUploadRetries(3, time.Millisecond, 5*time.Millisecond)}, opts...)...)
}

func TestRetriesOn5xxThenSucceeds(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("Authorization"); got != "Bearer tok-123" {
			t.Errorf("Authorization = %q", got)
		}
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(taskdef.TaskStatus{TaskID: "abcdefgh", State: taskdef.StatePending})
	}))
	defer srv.Close()
	st, err := fastClient(srv.URL).Task(context.Background(), "abcdefgh")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != taskdef.StatePending || calls.Load() != 3 {
		t.Fatalf("state %q after %d calls, want pending after 3", st.State, calls.Load())
	}
}

func TestErrorsAreTypedAndNever4xxRetried(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status   int
		sentinel error
		calls    int32
	}{
		{400, ErrInvalid, 1},
		{401, ErrUnauthorized, 1},
		{403, ErrForbidden, 1},
		{404, ErrNotFound, 1},
		{409, ErrConflict, 1},
		{413, ErrTooLarge, 1},
		{500, ErrServer, 3},
		{503, ErrUnavailable, 3},
	}
	for _, tc := range cases {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(`{"error":"task xyz: something specific","code":"Code` + http.StatusText(tc.status)[:3] + `"}`))
			}))
			defer srv.Close()
			_, err := fastClient(srv.URL, WithRetries(3)).Rerun(context.Background(), "abcdefgh")
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("err %v is not %v", err, tc.sentinel)
			}
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != tc.status || ae.Message != "task xyz: something specific" || !strings.HasPrefix(ae.Code, "Code") {
				t.Fatalf("APIError = %+v", ae)
			}
			if calls.Load() != tc.calls {
				t.Fatalf("%d calls, want %d", calls.Load(), tc.calls)
			}
			for _, other := range []error{ErrNotFound, ErrConflict, ErrUnauthorized} {
				if other != tc.sentinel && errors.Is(err, other) {
					t.Fatalf("err %v also matches %v", err, other)
				}
			}
		})
	}
}

func TestUnreachableAfterRetries(t *testing.T) {
	t.Parallel()
	// A port nobody listens on: grab one and close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := fastClient("http://"+addr, WithRetries(3))
	_, err = c.Graph(context.Background(), "abcdefgh")
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	if !strings.Contains(err.Error(), "cannot reach the queue at http://"+addr) {
		t.Fatalf("message %q does not name the queue", err)
	}
}

func TestConnectionErrorThenServerComesUp(t *testing.T) {
	t.Parallel()
	// The server is started only after the client's first attempt failed,
	// on the address it tried: the retry must find it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	firstFailed := make(chan struct{})
	var once atomic.Bool
	c := fastClient("http://"+addr, WithRetries(200))
	c.sleep = func(ctx context.Context, d time.Duration) error {
		if once.CompareAndSwap(false, true) {
			close(firstFailed)
		}
		return sleepCtx(ctx, time.Millisecond)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Graph(context.Background(), "abcdefgh")
		done <- err
	}()
	<-firstFailed
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("re-listen on %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(taskdef.GraphStatus{GraphID: "abcdefgh", State: taskdef.GraphRunning})
	}))
	srv.Listener = l2
	srv.Start()
	defer srv.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("client did not recover")
	}
}

func TestContextCancelStopsRetries(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	c := fastClient(srv.URL, WithRetries(1000))
	c.sleep = func(ctx context.Context, d time.Duration) error {
		if calls.Load() >= 2 {
			cancel()
		}
		return sleepCtx(ctx, d)
	}
	_, err := c.Graph(ctx, "abcdefgh")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n := calls.Load(); n > 3 {
		t.Fatalf("%d calls after cancel", n)
	}
}

func TestClaimWorkSendsWaitAndBody(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v1/claim-work" {
			t.Errorf("%s %s", r.Method, r.URL.Path)
		}
		if got := r.URL.Query().Get("wait"); got != "20000ms" {
			t.Errorf("wait = %q, want 20000ms (capped)", got)
		}
		var req taskdef.ClaimRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.WorkerID != "w1" || req.Tasks != 4 {
			t.Errorf("body %+v %v", req, err)
		}
		_ = json.NewEncoder(w).Encode(taskdef.ClaimResponse{Tasks: []taskdef.Claim{{TaskID: "t1234567", RunID: 2}}})
	}))
	defer srv.Close()
	got, err := fastClient(srv.URL).ClaimWork(context.Background(), taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w1", Tasks: 4}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].TaskID != "t1234567" || got[0].RunID != 2 {
		t.Fatalf("claims = %+v", got)
	}
}

func TestBackoffGrowsAndIsBounded(t *testing.T) {
	t.Parallel()
	c := New("http://x", "", WithBackoff(10*time.Millisecond, 80*time.Millisecond))
	for n := 1; n < 40; n++ {
		limit := min(10*time.Millisecond<<min(n-1, 20), 80*time.Millisecond)
		for range 20 {
			d := c.backoff(n)
			if d <= 0 || d > limit {
				t.Fatalf("backoff(%d) = %v, want in (0, %v]", n, d, limit)
			}
		}
	}
}

func TestIndexQueryStreamError(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"bucket":"b","prefix":"","objects":[{"key":"a","size":1}],"error":"index closed"}`))
	}))
	defer srv.Close()
	_, err := fastClient(srv.URL).IndexQuery(context.Background(), []byte(`{}`), false)
	if err == nil || !strings.Contains(err.Error(), "index closed") {
		t.Fatalf("err = %v, want the streamed error", err)
	}
}
