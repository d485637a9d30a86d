// Package queueclient is the Go client of the af queue's HTTP API (`af
// serve`): graphs and tasks for submitters, the claim/reclaim/report
// protocol for workers, artifacts, the file index and the pool key.
//
// Every call takes a context. Connection errors and 5xx answers are
// retried with exponential backoff and full jitter, a bounded number of
// times; 4xx answers never are. Errors from the server are *APIError
// values that match the sentinel errors with errors.Is.
//
// The calls a worker makes for one claimed run (reclaim, reports,
// artifacts) are methods of a *Run, which carries the run's token from the
// claim: the queue answers them only to the worker that claimed the run.
//
// No error of this package shows a URL's query: a failed request is
// described as "METHOD host/path: cause" (see requestErr), since a
// presigned S3 URL's query is a credential.
//
// Reading AF_QUEUE_URL and AF_TOKEN is the command line's job, not this
// package's.
package queueclient

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/af-project/af/internal/redact"
	"github.com/af-project/af/internal/taskdef"
)

// Sentinel errors; an *APIError matches the one of its status.
var (
	// ErrInvalid is a 400: the request is malformed; the message says how.
	ErrInvalid = errors.New("invalid request")
	// ErrUnauthorized is a 401: no token, or not one of the server's.
	ErrUnauthorized = errors.New("missing or bad token")
	// ErrForbidden is a 403: the token's role may not call the route, or
	// a run-scoped call lacks the run's token (the run belongs to the
	// worker that claimed it).
	ErrForbidden = errors.New("token lacks the role")
	// ErrNotFound is a 404: no such graph, task, run or artifact.
	ErrNotFound = errors.New("not found")
	// ErrExpired is a 410: the graph or task expired and af serve deleted
	// it; the message says when.
	ErrExpired = errors.New("expired")
	// ErrConflict is a 409: a different definition under an existing id,
	// or a report or reclaim from a run that is no longer current.
	ErrConflict = errors.New("conflict")
	// ErrTooLarge is a 413: the request body is over the server's limit.
	ErrTooLarge = errors.New("request too large")
	// ErrServer is any 5xx, after the retries.
	ErrServer = errors.New("queue server error")
	// ErrUnavailable is a 503: the server is shutting down or lacks a
	// feature (artifacts, index) it was not configured for.
	ErrUnavailable = errors.New("feature not available")
	// ErrUnreachable wraps connection failures that outlived the retries.
	ErrUnreachable = errors.New("queue unreachable")
	// ErrCertificate is an https queue whose certificate this client
	// does not trust (an unknown CA, another host name, expired). It is
	// not retried: give the CA with WithRootCAs.
	ErrCertificate = errors.New("queue's TLS certificate not trusted")
)

// APIError is an error answer of the queue: the HTTP status and the
// server's {"error", "code"} body.
type APIError struct {
	Status  int
	Code    string
	Message string
	// Method and Path say which call failed.
	Method, Path string
}

// Error says which call failed and the server's message.
func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, msg)
}

// Is matches the sentinel error of the status.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrInvalid:
		return e.Status == http.StatusBadRequest
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrExpired:
		return e.Status == http.StatusGone
	case ErrConflict:
		return e.Status == http.StatusConflict
	case ErrTooLarge:
		return e.Status == http.StatusRequestEntityTooLarge
	case ErrUnavailable:
		return e.Status == http.StatusServiceUnavailable
	case ErrServer:
		return e.Status >= 500
	}
	return false
}

// Client talks to one queue server. It is safe for concurrent use.
type Client struct {
	base     string
	token    string
	hc       *http.Client
	attempts int
	minWait  time.Duration
	maxWait  time.Duration
	agent    string
	sleep    func(context.Context, time.Duration) error
	// uploadAttempts, uploadMin and uploadMax are the artifact uploads'
	// own, longer, patience.
	uploadAttempts       int
	uploadMin, uploadMax time.Duration
	// roots, when set, are the CAs https is checked against
	// (WithRootCAs).
	roots *x509.CertPool
	// insecureHTTP allows tokens over plain http to any host;
	// insecure is the error calls carrying a token return without it
	// (nil when the URL is https or loopback).
	insecureHTTP bool
	insecure     error
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient replaces the HTTP client. It should not set a Timeout
// shorter than the longest claim-work wait; the client bounds each call by
// its context instead.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithRetries sets how many times a call is tried in all (at least 1).
func WithRetries(attempts int) Option {
	return func(c *Client) {
		if attempts < 1 {
			attempts = 1
		}
		c.attempts = attempts
	}
}

// WithBackoff sets the first and the largest wait between attempts.
func WithBackoff(first, max time.Duration) Option {
	return func(c *Client) { c.minWait, c.maxWait = first, max }
}

// WithUploadRetries sets how many times an artifact upload is tried in
// all (at least 1) and its backoff, whose waits are the upper half of a
// window doubling from first to max.
func WithUploadRetries(attempts int, first, maxWait time.Duration) Option {
	return func(c *Client) {
		c.uploadAttempts, c.uploadMin, c.uploadMax = max(attempts, 1), first, maxWait
	}
}

// WithUserAgent names the caller in the server's logs.
func WithUserAgent(ua string) Option { return func(c *Client) { c.agent = ua } }

// Defaults of New: six attempts with full-jitter waits growing from 100 ms
// ride out a server restart of a few seconds.
const (
	// DefaultAttempts is how many times a call is tried in all.
	DefaultAttempts = 6
	// DefaultMinWait is the first backoff window.
	DefaultMinWait = 100 * time.Millisecond
	// DefaultMaxWait caps the backoff window.
	DefaultMaxWait = 5 * time.Second
	// DefaultUploadAttempts, DefaultUploadMinWait and DefaultUploadMaxWait
	// are an artifact upload's: 20-40 s of waits in all, so a
	// result survives an S3 restart instead of costing the task's run.
	DefaultUploadAttempts = 9
	DefaultUploadMinWait  = 500 * time.Millisecond
	DefaultUploadMaxWait  = 8 * time.Second
)

// New returns a client of the queue at baseURL (e.g.
// http://127.0.0.1:8080) using the bearer token (empty for reads only).
// Over plain http to a host that is not loopback, every call carrying a
// token fails with ErrInsecureHTTP before sending anything, unless
// WithInsecureHTTP is given.
func New(baseURL, token string, opts ...Option) *Client {
	c := &Client{
		base:     strings.TrimRight(baseURL, "/"),
		token:    token,
		attempts: DefaultAttempts,
		minWait:  DefaultMinWait,
		maxWait:  DefaultMaxWait,
		agent:    "af-queueclient",
		sleep:    sleepCtx,

		uploadAttempts: DefaultUploadAttempts,
		uploadMin:      DefaultUploadMinWait,
		uploadMax:      DefaultUploadMaxWait,
	}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// Workers and the benchmark keep many concurrent calls open to
		// one host; the default of 2 idle connections would make most
		// calls dial anew.
		t.MaxIdleConnsPerHost = 256
		t.MaxIdleConns = 256
		c.hc = &http.Client{Transport: t}
	}
	if c.roots != nil {
		c.hc = withRoots(c.hc, c.roots)
	}
	c.insecure = checkTransport(c.base, c.insecureHTTP)
	return c
}

// BaseURL returns the queue's URL as given to New, without a trailing
// slash.
func (c *Client) BaseURL() string { return c.base }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// backoff returns the wait before attempt n (n >= 1): full jitter over an
// exponentially growing window.
func (c *Client) backoff(n int) time.Duration {
	w := c.minWait << min(n-1, 20)
	if w > c.maxWait || w <= 0 {
		w = c.maxWait
	}
	if w <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(w)) + 1)
}

// uploadBackoff is the wait before upload retry n (n >= 1): the upper
// half of a doubling window, so the waits add up to a known least
// patience.
func (c *Client) uploadBackoff(n int) time.Duration {
	w := c.uploadMin << min(n-1, 20)
	if w > c.uploadMax || w <= 0 {
		w = c.uploadMax
	}
	if w <= 1 {
		return max(w, 0)
	}
	return w/2 + time.Duration(rand.Int64N(int64(w/2)+1))
}

// request describes one call.
type request struct {
	method string
	path   string // escaped path and query
	body   any    // JSON-encoded when non-nil
	raw    []byte // sent as is when body is nil
	// timeout bounds each attempt beyond the caller's context (long-poll).
	timeout time.Duration
	// runToken goes in the run token header (run-scoped calls).
	runToken string
	// readerRun, with runToken, names the run a worker reads for
	// (taskdef.ReaderRunHeader).
	readerRun string
}

// do runs a call with retries and decodes a 2xx JSON answer into out
// (unless out is nil).
func (c *Client) do(ctx context.Context, r request, out any) error {
	resp, err := c.send(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	// Read to EOF (the encoder's trailing newline, a chunked answer's
	// last chunk) so the connection goes back to the pool instead of
	// being closed: keep-alive is most of a worker's per-call cost. The
	// buffer is pooled: a worker makes these calls all day.
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= maxPooledBuf {
			bufPool.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return fmt.Errorf("%s %s: read answer: %w", r.method, r.path, err)
	}
	if err := json.Unmarshal(buf.Bytes(), out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", r.method, r.path, err)
	}
	return nil
}

// bufPool holds answer buffers; ones grown past maxPooledBuf (a large
// graph's status) are left to the collector.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledBuf = 256 << 10

// send runs a call with retries and returns the 2xx response, whose body
// the caller closes.
func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	body := r.raw
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode body: %w", r.method, r.path, err)
		}
		body = b
	}
	var last error
	for attempt := 1; attempt <= c.attempts; attempt++ {
		if attempt > 1 {
			if err := c.sleep(ctx, c.backoff(attempt-1)); err != nil {
				return nil, errors.Join(err, last)
			}
		}
		resp, err := c.once(ctx, r, body)
		if err == nil {
			return resp, nil
		}
		last = err
		if !retryable(ctx, err) {
			return nil, err
		}
	}
	return nil, last
}

// once is one attempt.
func (c *Client) once(ctx context.Context, r request, body []byte) (*http.Response, error) {
	actx, cancel := ctx, context.CancelFunc(func() {})
	if r.timeout > 0 {
		actx, cancel = context.WithTimeout(ctx, r.timeout)
	}
	if c.insecure != nil && (c.token != "" || r.runToken != "") {
		cancel()
		return nil, c.insecure
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, r.method, c.base+r.path, rd)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s %s: %w", r.method, r.path, cause(err))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.agent)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if r.readerRun != "" {
		req.Header.Set(taskdef.ReaderRunHeader, r.readerRun)
	}
	if r.runToken != "" {
		req.Header.Set(taskdef.RunTokenHeader, r.runToken)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		cancel()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s %s: %w", r.method, r.path, ctx.Err())
		}
		if isCertError(err) {
			// No retry makes an untrusted certificate trusted.
			return nil, &certError{base: c.base, err: cause(err)}
		}
		return nil, &netError{method: r.method, base: c.base, path: r.path, err: cause(err)}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
		return resp, nil
	}
	defer cancel()
	defer resp.Body.Close()
	return nil, readAPIError(resp, r.method, r.path)
}

// cancelBody releases the attempt's timeout when the body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func readAPIError(resp *http.Response, method, path string) error {
	e := &APIError{Status: resp.StatusCode, Method: method, Path: path}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body taskdef.ErrorResponse
	if json.Unmarshal(data, &body) == nil && body.Error != "" {
		e.Message, e.Code = body.Error, body.Code
	} else {
		e.Message = strings.TrimSpace(string(data))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200] + "…"
		}
	}
	return e
}

// requestErr describes a failed HTTP request without its URL's query:
// Go's *url.Error prints the whole URL, and the query of a presigned S3
// URL is a credential that would then reach task messages, logs and
// emails. A *url.Error becomes "PUT host/path: cause"; the cause still
// matches errors.Is (context.Canceled, timeouts).
func requestErr(err error) error { return redact.Error(err) }

// cause is the reason a request to the queue failed, without the
// *url.Error around it (netError names method, base and path itself).
func cause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return redact.Error(ue.Err)
	}
	return requestErr(err)
}

// netError is a failure to talk to the server at all.
type netError struct {
	method, base, path string
	err                error
}

func (e *netError) Error() string {
	return fmt.Sprintf("cannot reach the queue at %s (%s %s): %v", e.base, e.method, e.path, e.err)
}

func (e *netError) Unwrap() []error { return []error{e.err, ErrUnreachable} }

// retryable says whether another attempt may succeed.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		// A per-owner limit lasts until the owner's tasks run: retrying
		// in seconds would only delay the message.
		return ae.Status >= 500 || (ae.Status == http.StatusTooManyRequests && ae.Code != taskdef.CodeOverLimit)
	}
	var ne *netError
	return errors.As(err, &ne)
}

func esc(s string) string { return url.PathEscape(s) }

// escName escapes an artifact name segment by segment so its slashes stay
// path separators.
func escName(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// CreateGraph posts a whole graph in one request (idempotent for an equal
// definition; ErrConflict says what differs otherwise).
func (c *Client) CreateGraph(ctx context.Context, g taskdef.Graph) (taskdef.GraphStatus, error) {
	var out taskdef.GraphStatus
	err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/graphs", body: g}, &out)
	return out, err
}

// PutProvenance records what a graph was made from (once; the same
// record again, as a retry sends it, is accepted).
func (c *Client) PutProvenance(ctx context.Context, p taskdef.Provenance) error {
	return c.do(ctx, request{method: http.MethodPut, path: "/api/v1/graphs/" + esc(p.GraphID) + "/provenance", body: p}, nil)
}

// Provenance returns what a graph was made from; a graph without a record
// is ErrNotFound.
func (c *Client) Provenance(ctx context.Context, graphID string) (taskdef.Provenance, error) {
	var out taskdef.Provenance
	err := c.do(ctx, request{method: http.MethodGet, path: "/api/v1/graphs/" + esc(graphID) + "/provenance"}, &out)
	return out, err
}

// CreateTask creates one task (idempotent like CreateGraph).
func (c *Client) CreateTask(ctx context.Context, taskID string, t taskdef.Task) (taskdef.TaskStatus, error) {
	var out taskdef.TaskStatus
	err := c.do(ctx, request{method: http.MethodPut, path: "/api/v1/tasks/" + esc(taskID), body: t}, &out)
	return out, err
}

// Graph returns a graph with every task's status.
func (c *Client) Graph(ctx context.Context, graphID string) (taskdef.GraphStatus, error) {
	var out taskdef.GraphStatus
	err := c.do(ctx, request{method: http.MethodGet, path: "/api/v1/graphs/" + esc(graphID)}, &out)
	return out, err
}

// Graphs lists up to limit graphs, newest first (limit <= 0: the server's
// default).
func (c *Client) Graphs(ctx context.Context, limit int) ([]taskdef.GraphSummary, error) {
	p := "/api/v1/graphs"
	if limit > 0 {
		p += "?limit=" + strconv.Itoa(limit)
	}
	var out taskdef.GraphList
	err := c.do(ctx, request{method: http.MethodGet, path: p}, &out)
	return out.Graphs, err
}

// ListGraphs lists the graphs q selects among those the caller may read,
// newest first.
func (c *Client) ListGraphs(ctx context.Context, q taskdef.GraphListQuery) ([]taskdef.GraphSummary, error) {
	p := "/api/v1/graphs"
	if enc := q.Encode(); enc != "" {
		p += "?" + enc
	}
	var out taskdef.GraphList
	err := c.do(ctx, request{method: http.MethodGet, path: p}, &out)
	return out.Graphs, err
}

// Task returns a task's status and runs.
func (c *Client) Task(ctx context.Context, taskID string) (taskdef.TaskStatus, error) {
	var out taskdef.TaskStatus
	err := c.do(ctx, request{method: http.MethodGet, path: "/api/v1/tasks/" + esc(taskID)}, &out)
	return out, err
}

// TaskDefinition returns a task's definition.
func (c *Client) TaskDefinition(ctx context.Context, taskID string) (taskdef.Task, error) {
	var out taskdef.Task
	err := c.do(ctx, request{method: http.MethodGet, path: "/api/v1/tasks/" + esc(taskID) + "/definition"}, &out)
	return out, err
}

// CancelGraph resolves every unresolved task of the graph
// exception/canceled.
func (c *Client) CancelGraph(ctx context.Context, graphID string) (taskdef.GraphStatus, error) {
	var out taskdef.GraphStatus
	err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/graphs/" + esc(graphID) + "/cancel"}, &out)
	return out, err
}

// Rerun schedules a resolved task again (TaskCluster's rerunTask); the
// answer also says what became of the tasks that depend on it (they wait
// for the new run, or run again on its new output). A task of a canceled
// graph is refused (ErrConflict): use RerunFailed.
func (c *Client) Rerun(ctx context.Context, taskID string) (taskdef.RerunResponse, error) {
	var out taskdef.RerunResponse
	err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/tasks/" + esc(taskID) + "/rerun"}, &out)
	return out, err
}

// RerunFailed reruns every failed or exception task of a graph (canceled
// ones too) in one transaction and re-opens the graph.
func (c *Client) RerunFailed(ctx context.Context, graphID string) (taskdef.GraphRerunResponse, error) {
	var out taskdef.GraphRerunResponse
	err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/graphs/" + esc(graphID) + "/rerun?failed=true"}, &out)
	return out, err
}

// MaxClaimWait is the longest long-poll the server honours.
const MaxClaimWait = 20 * time.Second

// ClaimWork asks for up to req.Tasks tasks, waiting up to wait (at most
// MaxClaimWait) for one to become claimable. An empty slice means the wait
// passed with nothing to do.
func (c *Client) ClaimWork(ctx context.Context, req taskdef.ClaimRequest, wait time.Duration) ([]taskdef.Claim, error) {
	wait = min(max(wait, 0), MaxClaimWait)
	var out taskdef.ClaimResponse
	p := "/api/v1/claim-work?wait=" + strconv.FormatInt(wait.Milliseconds(), 10) + "ms"
	// The attempt may legitimately last the whole wait; give the answer
	// some slack beyond it before calling the connection dead.
	err := c.do(ctx, request{method: http.MethodPost, path: p, body: req, timeout: wait + 30*time.Second}, &out)
	return out.Tasks, err
}

func runPath(taskID string, runID int, what string) string {
	return "/api/v1/tasks/" + esc(taskID) + "/runs/" + strconv.Itoa(runID) + "/" + what
}

// Run is one claimed run as the worker that claimed it acts for it: every
// call sends the run's token. Get one from Claimed or Run; it is safe for
// concurrent use.
type Run struct {
	c      *Client
	taskID string
	runID  int
	token  string
}

// Claimed returns the handle of the run a claim handed out.
func (c *Client) Claimed(cl taskdef.Claim) *Run { return c.Run(cl.TaskID, cl.RunID, cl.RunToken) }

// Run returns the handle of run runID of task taskID with the run's token
// (a worker that recorded its claims reports them after a restart).
func (c *Client) Run(taskID string, runID int, token string) *Run {
	return &Run{c: c, taskID: taskID, runID: runID, token: token}
}

// TaskID is the run's task.
func (r *Run) TaskID() string { return r.taskID }

// RunID is the run's number.
func (r *Run) RunID() int { return r.runID }

func (r *Run) request(what string, body any) request {
	return request{method: http.MethodPost, path: runPath(r.taskID, r.runID, what), body: body, runToken: r.token}
}

// Reclaim renews the run's lease and records its progress. ErrConflict
// means the run is no longer current: stop working on it.
func (r *Run) Reclaim(ctx context.Context, stats taskdef.Stats) (taskdef.ReclaimResponse, error) {
	var out taskdef.ReclaimResponse
	err := r.c.do(ctx, r.request("reclaim", taskdef.ReclaimRequest{Stats: stats}), &out)
	return out, err
}

// ReportCompleted resolves the run as completed.
func (r *Run) ReportCompleted(ctx context.Context, rep taskdef.ReportRequest) (taskdef.ReportResponse, error) {
	return r.report(ctx, "completed", rep)
}

// ReportFailed resolves the run as failed: the job's own code failed.
func (r *Run) ReportFailed(ctx context.Context, rep taskdef.ReportRequest) (taskdef.ReportResponse, error) {
	return r.report(ctx, "failed", rep)
}

// ReportException resolves the run as exception; rep.Reason is required
// (worker-shutdown, malformed-payload, resource-unavailable,
// internal-error, intermittent-task).
func (r *Run) ReportException(ctx context.Context, rep taskdef.ReportRequest) (taskdef.ReportResponse, error) {
	return r.report(ctx, "exception", rep)
}

func (r *Run) report(ctx context.Context, what string, rep taskdef.ReportRequest) (taskdef.ReportResponse, error) {
	var out taskdef.ReportResponse
	err := r.c.do(ctx, r.request(what, rep), &out)
	return out, err
}

// CreateArtifact returns a presigned PUT for an artifact of the run. The
// upload must send every header of the answer. The URL is a credential
// until it expires: keep it out of messages and logs.
func (r *Run) CreateArtifact(ctx context.Context, name, contentType string) (taskdef.ArtifactResponse, error) {
	var out taskdef.ArtifactResponse
	err := r.c.do(ctx, r.request("artifacts/"+escName(name), taskdef.ArtifactRequest{ContentType: contentType}), &out)
	return out, err
}

// UploadArtifact creates an artifact and PUTs body to S3. size must be the
// body's length (S3 needs it up front). A body that is an io.ReadSeeker is
// retried from its start on connection errors, 5xx and throttling answers
// and an expired presigned URL, each attempt with a fresh URL from the
// queue, with backoff (see WithUploadRetries); any other body is sent once.
// Errors name the upload URL's host and path, never its query.
func (r *Run) UploadArtifact(ctx context.Context, name, contentType string, body io.Reader, size int64) error {
	seeker, _ := body.(io.ReadSeeker)
	attempts := 1
	if seeker != nil {
		attempts = r.c.uploadAttempts
	}
	var last error
	for attempt := 1; attempt <= attempts; attempt++ {
		if attempt > 1 {
			if err := r.c.sleep(ctx, r.c.uploadBackoff(attempt-1)); err != nil {
				return errors.Join(err, last)
			}
			if _, err := seeker.Seek(0, io.SeekStart); err != nil {
				return fmt.Errorf("upload artifact %s: rewind the body: %w", name, err)
			}
		}
		retry, err := r.uploadOnce(ctx, name, contentType, body, size)
		if err == nil {
			return nil
		}
		last = err
		if !retry || ctx.Err() != nil {
			return err
		}
	}
	if attempts > 1 {
		return fmt.Errorf("%w (after %d tries)", last, attempts)
	}
	return last
}

// uploadOnce is one attempt of UploadArtifact; retry says whether another
// may succeed.
func (r *Run) uploadOnce(ctx context.Context, name, contentType string, body io.Reader, size int64) (bool, error) {
	a, err := r.CreateArtifact(ctx, name, contentType)
	if err != nil {
		// CreateArtifact retried the queue itself; one that stays
		// unreachable or failing may come back within the upload's
		// longer patience.
		return retryable(ctx, err) || errors.Is(err, ErrUnreachable), err
	}
	where := redact.URLString(a.PutURL)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, a.PutURL, io.NopCloser(body))
	if err != nil {
		return false, fmt.Errorf("upload artifact %s: %w", name, requestErr(err))
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	for k, v := range a.Headers {
		if strings.EqualFold(k, "Host") || strings.EqualFold(k, "Content-Length") {
			continue
		}
		req.Header.Set(k, v)
	}
	if req.Header.Get("Content-Type") == "" && a.ContentType != "" {
		req.Header.Set("Content-Type", a.ContentType)
	}
	resp, err := r.c.hc.Do(req)
	if err != nil {
		return true, fmt.Errorf("upload artifact %s of task %s run %d: %w", name, r.taskID, r.runID, requestErr(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		code, msg := s3ErrorParts(resp.Body)
		retry := resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout ||
			// The URL expired between CreateArtifact and the PUT (a
			// slow disk, a paused process): the next try gets a new one.
			resp.StatusCode == http.StatusForbidden && strings.Contains(strings.ToLower(msg), "expired")
		return retry, fmt.Errorf("upload artifact %s of task %s run %d: PUT %s: S3 answered %s%s", name, r.taskID, r.runID, where, resp.Status, formatS3Error(code, msg))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return false, nil
}

// s3Error is the code and message of an S3 error answer, as ": Code:
// Message", or "" when there is none. Only those two are kept: S3's
// SignatureDoesNotMatch answer also echoes the signature it was given and
// the canonical request with the credential, which must not reach a log.
func s3Error(body io.Reader) string { return formatS3Error(s3ErrorParts(body)) }

// s3ErrorParts reads an S3 error answer's code and message.
func s3ErrorParts(body io.Reader) (code, message string) {
	data, _ := io.ReadAll(io.LimitReader(body, 16<<10))
	var e struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	if xml.Unmarshal(data, &e) != nil {
		return "", ""
	}
	return e.Code, e.Message
}

func formatS3Error(code, message string) string {
	if code == "" {
		return ""
	}
	msg := code
	if message != "" {
		msg += ": " + message
	}
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return ": " + redact.Text(msg)
}

// ArtifactURL returns the queue URL of an artifact, which redirects to a
// presigned S3 GET. runID < 0 means the task's latest run.
func (c *Client) ArtifactURL(taskID string, runID int, name string) string {
	if runID < 0 {
		return c.base + "/api/v1/tasks/" + esc(taskID) + "/artifacts/" + escName(name)
	}
	return c.base + runPath(taskID, runID, "artifacts/"+escName(name))
}

// GetArtifact opens an artifact (runID < 0: the latest run's) through the
// queue's redirect to a presigned S3 GET. The caller closes the body. The
// redirect is followed by hand so the bearer token never reaches S3 (Go
// forwards Authorization to a redirect on the same host name, and MinIO on
// loopback shares it).
func (c *Client) GetArtifact(ctx context.Context, taskID string, runID int, name string) (io.ReadCloser, error) {
	return c.getArtifact(ctx, request{}, taskID, runID, name)
}

// GetArtifact opens an artifact of the run's own task or of one of its
// dependencies (runID < 0: the latest run's), as Client.GetArtifact does,
// reading as this run: a worker identity may read nothing else.
func (r *Run) GetArtifact(ctx context.Context, taskID string, runID int, name string) (io.ReadCloser, error) {
	as := request{runToken: r.token, readerRun: r.taskID + "/" + strconv.Itoa(r.runID)}
	return r.c.getArtifact(ctx, as, taskID, runID, name)
}

func (c *Client) getArtifact(ctx context.Context, as request, taskID string, runID int, name string) (io.ReadCloser, error) {
	loc, err := c.artifactLocation(ctx, as, taskID, runID, name)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc, nil)
	if err != nil {
		return nil, fmt.Errorf("get artifact %s: %w", name, requestErr(err))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get artifact %s of task %s: %w", name, taskID, requestErr(err))
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return nil, &APIError{Status: http.StatusNotFound, Code: "NotFound", Method: http.MethodGet, Path: name,
				Message: fmt.Sprintf("artifact %s of task %s is not in S3", name, taskID)}
		}
		return nil, fmt.Errorf("get artifact %s of task %s: GET %s: S3 answered %s%s", name, taskID, redact.URLString(loc), resp.Status, s3Error(resp.Body))
	}
	return resp.Body, nil
}

// ArtifactLocation returns the presigned S3 GET URL the queue redirects an
// artifact's URL to.
func (c *Client) ArtifactLocation(ctx context.Context, taskID string, runID int, name string) (string, error) {
	return c.artifactLocation(ctx, request{}, taskID, runID, name)
}

func (c *Client) artifactLocation(ctx context.Context, as request, taskID string, runID int, name string) (string, error) {
	p := strings.TrimPrefix(c.ArtifactURL(taskID, runID, name), c.base)
	hc := *c.hc
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cc := *c
	cc.hc = &hc
	resp, err := cc.send(ctx, request{method: http.MethodGet, path: p, runToken: as.runToken, readerRun: as.readerRun})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	loc := resp.Header.Get("Location")
	if resp.StatusCode/100 != 3 || loc == "" {
		return "", fmt.Errorf("GET %s: want a redirect to S3, got %s", p, resp.Status)
	}
	return loc, nil
}

// Artifacts lists a run's artifacts.
func (c *Client) Artifacts(ctx context.Context, taskID string, runID int) (taskdef.ArtifactList, error) {
	var out taskdef.ArtifactList
	err := c.do(ctx, request{method: http.MethodGet, path: runPath(taskID, runID, "artifacts")}, &out)
	return out, err
}

// IndexQuery returns the input objects a filter (the Filter.json document)
// selects from the server's file index; with etags, their ETags too
// (IndexResult.ETags).
func (c *Client) IndexQuery(ctx context.Context, filterJSON []byte, etags bool) (taskdef.IndexResult, error) {
	var out taskdef.IndexResult
	path := "/api/v1/index/query"
	if etags {
		path += "?etags=1"
	}
	err := c.do(ctx, request{method: http.MethodPost, path: path, raw: filterJSON}, &out)
	if err == nil && out.Error != "" {
		return taskdef.IndexResult{}, fmt.Errorf("index query: %s", out.Error)
	}
	if err == nil && etags && len(out.ETags) != len(out.Objects) {
		return taskdef.IndexResult{}, fmt.Errorf("index query: the server sent %d ETags for %d files; upgrade af serve (an older one sends none)", len(out.ETags), len(out.Objects))
	}
	return out, err
}

// IndexBuild asks the server to refresh its file index from S3 (the
// server holds the index file, so this is how `af index build` reaches it
// while `af serve` runs) and returns the build report. Another bucket,
// prefix or schema than the index holds is a 409 (ErrConflict) whose
// message says what the server indexes; a bucket S3 will not list is a
// 400 (ErrInvalid); neither is retried.
func (c *Client) IndexBuild(ctx context.Context, req taskdef.IndexBuildRequest) (taskdef.IndexBuildReport, error) {
	var out taskdef.IndexBuildReport
	err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/index/build", body: req}, &out)
	return out, err
}

// IndexStats returns the server's file index statistics.
func (c *Client) IndexStats(ctx context.Context) (taskdef.IndexStats, error) {
	var out taskdef.IndexStats
	err := c.do(ctx, request{method: http.MethodGet, path: "/api/v1/index/stats"}, &out)
	return out, err
}

// PoolKey returns the worker pool's public key file (`af keygen`'s
// output), so submitters need no key file.
func (c *Client) PoolKey(ctx context.Context) ([]byte, error) {
	resp, err := c.send(ctx, request{method: http.MethodGet, path: "/api/v1/pool-key"})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read pool key: %w", err)
	}
	return b, nil
}

// AddUser makes a new identity (admin) and returns it with its token,
// which the server shows this once.
func (c *Client) AddUser(ctx context.Context, req taskdef.UserRequest) (taskdef.UserToken, error) {
	var out taskdef.UserToken
	err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/users", body: req}, &out)
	return out, err
}

// Users lists the identities (admin), never their tokens.
func (c *Client) Users(ctx context.Context) ([]taskdef.User, error) {
	var out taskdef.UserList
	err := c.do(ctx, request{method: http.MethodGet, path: "/api/v1/users"}, &out)
	return out.Users, err
}

// RotateUser gives an identity a new token (admin); the old one stops
// working.
func (c *Client) RotateUser(ctx context.Context, name string) (taskdef.UserToken, error) {
	var out taskdef.UserToken
	err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/users/" + esc(name) + "/rotate", body: struct{}{}}, &out)
	return out, err
}

// RevokeUser ends an identity (admin): its token and sessions stop
// working.
func (c *Client) RevokeUser(ctx context.Context, name string) (taskdef.User, error) {
	var out taskdef.User
	err := c.do(ctx, request{method: http.MethodPost, path: "/api/v1/users/" + esc(name) + "/revoke", body: struct{}{}}, &out)
	return out, err
}
