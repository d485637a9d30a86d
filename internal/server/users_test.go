package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/smtptest"
	"github.com/af-project/af/internal/taskdef"
)

// unowned is testGraph with no owner anywhere: the server makes the
// caller its owner.
func unowned(n int, created time.Time) taskdef.Graph {
	g := testGraph(n, created)
	g.Owner = ""
	for i := range g.Tasks {
		g.Tasks[i].Task.Metadata.Owner = ""
	}
	return g
}

// afCLI runs the af binary against a server and returns its stdout and
// stderr.
func afCLI(t *testing.T, bin, url, token string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "AF_QUEUE_URL="+url, "AF_TOKEN="+token)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// raw makes one request and returns its status and body.
func raw(t *testing.T, method, url, token string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var tokenLine = regexp.MustCompile(`^[A-Za-z0-9_-]{43}\n$`)

// TestTwoUsersAndAPoolOnOneServe runs a real `af serve` (the binary),
// makes alice, bob and a worker pool with `af users add` (the real af
// binary, admin token), and checks that each identity is refused what is
// not its own with 403 and the reason: bob cannot cancel, rerun, add a
// task to, read, or read the logs and results of alice's graph; bob's
// list holds none of alice's graphs; an owner other than oneself is
// refused naming --owner; anonymous reads are refused; the pool's worker
// reads only the inputs of a run it holds; alice's email (from a real
// SMTP server) carries a link that opens her graph's page and status
// without signing in, and a tampered one does not; `af status --json`
// shows who created, claimed and resolved; rotation and revocation stop
// the old tokens with 401s that say so.
func TestTwoUsersAndAPoolOnOneServe(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := buildAF(t, dir)
	relay := smtptest.Start(t)
	addr := freePort(t)
	url := "http://" + addr
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf(`listen: %s
data: %s
tokens:
  - {name: admin, role: admin, token: %s}
smtp: {addr: %q, from: af@localhost, starttls: never, retry_min: 100ms, retry_max: 400ms}
`, addr, filepath.Join(dir, "data"), adminTok, relay.Addr())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	proc := startServe(t, bin, cfgPath, url)
	ctx := ctxT(t)

	add := func(name, role string, extra ...string) string {
		t.Helper()
		out, errOut, err := afCLI(t, bin, url, adminTok, append([]string{"users", "add", name, "--role", role}, extra...)...)
		if err != nil || !tokenLine.MatchString(out) {
			t.Fatalf("af users add %s: %v: stdout %q (want the token alone) stderr %s", name, err, out, errOut)
		}
		return strings.TrimSpace(out)
	}
	aliceTok := add("alice@example.com", "submit")
	bobTok := add("bob@example.com", "submit", "--email", "bob.b@example.org")
	poolTok := add("pool-a", "work")
	leadTok := add("lead@example.com", "read", "--expires", "720h")
	// Only an admin manages identities.
	if _, errOut, err := afCLI(t, bin, url, aliceTok, "users", "add", "eve@example.com", "--role", "admin"); err == nil || !strings.Contains(errOut, "role admin") {
		t.Fatalf("alice added an admin: %v %s", err, errOut)
	}
	if _, errOut, err := afCLI(t, bin, url, adminTok, "users", "add", "alice@example.com", "--role", "submit"); err == nil || !strings.Contains(errOut, "exists") {
		t.Fatalf("adding alice twice: %v %s", err, errOut)
	}
	list, _, err := afCLI(t, bin, url, adminTok, "users", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"alice@example.com", "bob.b@example.org", "pool-a", "admin", "config"} {
		if !strings.Contains(list, want) {
			t.Errorf("af users list lacks %s:\n%s", want, list)
		}
	}
	if !regexp.MustCompile(`lead@example\.com\s+read\s+users\s+-\s+\d{4}-\d\d-\d\d`).MatchString(list) {
		t.Errorf("af users list does not show lead's expiry:\n%s", list)
	}
	for _, tok := range []string{aliceTok, bobTok, poolTok, leadTok, adminTok} {
		if strings.Contains(list, tok) {
			t.Fatal("af users list shows a token")
		}
	}

	fast := queueclient.WithBackoff(time.Millisecond, 10*time.Millisecond)
	alice := queueclient.New(url, aliceTok, fast)
	bob := queueclient.New(url, bobTok, fast)
	pool := queueclient.New(url, poolTok, fast)
	anon := queueclient.New(url, "", fast)
	admin := queueclient.New(url, adminTok, fast)

	now := time.Now()
	// A missing owner is the caller; another owner is refused naming --owner.
	ga := unowned(2, now)
	st, err := alice.CreateGraph(ctx, ga)
	if err != nil || st.Owner != "alice@example.com" || st.CreatedBy != "alice@example.com" {
		t.Fatalf("alice's graph: owner %q created by %q, %v", st.Owner, st.CreatedBy, err)
	}
	spoof := unowned(1, now)
	spoof.Owner = "bob@example.com"
	if _, err := alice.CreateGraph(ctx, spoof); !errors.Is(err, queueclient.ErrForbidden) || !strings.Contains(err.Error(), "--owner") {
		t.Fatalf("alice posing as bob: %v, want 403 naming --owner", err)
	}
	// An admin creates on behalf of bob.
	gb := unowned(1, now)
	gb.Owner = "bob@example.com"
	if st, err := admin.CreateGraph(ctx, gb); err != nil || st.Owner != "bob@example.com" || st.CreatedBy != "admin" {
		t.Fatalf("admin for bob: %+v %v", st, err)
	}

	owned := "owned by alice@example.com"
	mapper := ga.Tasks[0].TaskID
	extra := testTask(ga.GraphID, "late", now)
	extra.Metadata.Owner = ""
	refusals := map[string]func() error{
		"cancel":      func() error { _, err := bob.CancelGraph(ctx, ga.GraphID); return err },
		"rerun task":  func() error { _, err := bob.Rerun(ctx, mapper); return err },
		"rerun graph": func() error { _, err := bob.RerunFailed(ctx, ga.GraphID); return err },
		"add task":    func() error { _, err := bob.CreateTask(ctx, taskdef.NewID(), extra); return err },
		"read graph":  func() error { _, err := bob.Graph(ctx, ga.GraphID); return err },
		"read task":   func() error { _, err := bob.Task(ctx, mapper); return err },
		"definition":  func() error { _, err := bob.TaskDefinition(ctx, mapper); return err },
		"read log":    func() error { _, err := bob.GetArtifact(ctx, mapper, -1, taskdef.LiveLogArtifact); return err },
		"read result": func() error { _, err := bob.GetArtifact(ctx, mapper, 0, taskdef.ResultArtifact); return err },
		"list run":    func() error { _, err := bob.Artifacts(ctx, mapper, 0); return err },
		"depend on one": func() error {
			d := testTask(taskdef.NewID(), "thief", now)
			d.Metadata.Owner = ""
			d.Dependencies = []string{mapper}
			_, err := bob.CreateTask(ctx, taskdef.NewID(), d)
			return err
		},
	}
	for what, call := range refusals {
		err := call()
		if !errors.Is(err, queueclient.ErrForbidden) || !strings.Contains(err.Error(), owned) && !strings.Contains(err.Error(), "not yours") {
			t.Errorf("bob %s alice's graph: %v, want 403 saying it is %s", what, err, owned)
		}
	}
	if gs, err := bob.Graphs(ctx, 100); err != nil || len(gs) != 1 || gs[0].GraphID != gb.GraphID {
		t.Errorf("bob's list: %+v %v, want only his graph", gs, err)
	}
	if _, err := anon.Graph(ctx, ga.GraphID); !errors.Is(err, queueclient.ErrUnauthorized) {
		t.Errorf("anonymous read: %v, want 401", err)
	}
	if _, err := pool.Graph(ctx, ga.GraphID); !errors.Is(err, queueclient.ErrForbidden) {
		t.Errorf("the pool reading a graph: %v, want 403", err)
	}
	// The read identity reads every graph and changes none.
	lead := queueclient.New(url, leadTok, fast)
	if gs, err := lead.Graphs(ctx, 100); err != nil || len(gs) != 2 {
		t.Errorf("lead's list: %d graphs, %v; want both", len(gs), err)
	}
	if _, err := lead.CancelGraph(ctx, ga.GraphID); !errors.Is(err, queueclient.ErrForbidden) {
		t.Errorf("lead canceling: %v, want 403", err)
	}

	// The pool claims alice's mappers; holding a run of alice's graph it
	// may read that task's artifacts (no bucket here: 503, not 403), and
	// not bob's graph's.
	// Three mappers are pending: alice's two and bob's one (fair shares
	// hand them out alice, bob, alice); put alice's first.
	claims, err := pool.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w1", Tasks: 3}, 5*time.Second)
	if err != nil || len(claims) != 3 {
		t.Fatalf("claims %d %v", len(claims), err)
	}
	sort.SliceStable(claims, func(i, j int) bool {
		return claims[i].Task.GraphID == ga.GraphID && claims[j].Task.GraphID != ga.GraphID
	})
	if claims[0].Task.GraphID != ga.GraphID || claims[1].Task.GraphID != ga.GraphID {
		t.Fatalf("claims: want two of alice's graph %s, got %s and %s", ga.GraphID, claims[0].Task.GraphID, claims[1].Task.GraphID)
	}
	hdr := func(c taskdef.Claim) map[string]string {
		return map[string]string{taskdef.ReaderRunHeader: fmt.Sprintf("%s/%d", c.TaskID, c.RunID), taskdef.RunTokenHeader: c.RunToken}
	}
	bobTask := gb.Tasks[0].TaskID
	if status, body := raw(t, "GET", url+"/api/v1/tasks/"+bobTask+"/artifacts/public/result.txt", poolTok, hdr(claims[0])); status != http.StatusForbidden || !strings.Contains(body, "not an input") {
		t.Errorf("the pool reading bob's result with a run of alice's: %d %s, want 403", status, body)
	}
	if status, body := raw(t, "GET", url+"/api/v1/tasks/"+claims[0].TaskID+"/artifacts/public/result.txt", poolTok, hdr(claims[0])); status != http.StatusServiceUnavailable {
		t.Errorf("the pool reading its own run's task: %d %s, want 503 (no bucket), past the check", status, body)
	}
	wrong := hdr(claims[0])
	wrong[taskdef.RunTokenHeader] = claims[1].RunToken
	if status, _ := raw(t, "GET", url+"/api/v1/tasks/"+claims[0].TaskID, poolTok, wrong); status != http.StatusForbidden {
		t.Errorf("the pool reading with another run's token: %d, want 403", status)
	}
	for _, c := range claims {
		if _, err := pool.Claimed(c).ReportCompleted(ctx, taskdef.ReportRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	claims, err = pool.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w1", Tasks: 2}, 5*time.Second)
	if err != nil || len(claims) != 2 {
		t.Fatalf("reducer claims %d %v", len(claims), err)
	}
	if claims[0].Task.GraphID != ga.GraphID {
		claims[0], claims[1] = claims[1], claims[0]
	}
	// The reducer's run reads its mappers' results (past the check).
	if status, body := raw(t, "GET", url+"/api/v1/tasks/"+mapper+"/artifacts/public/result.txt", poolTok, hdr(claims[0])); status != http.StatusServiceUnavailable {
		t.Errorf("the reducer reading its mapper's result: %d %s, want 503 (no bucket), past the check", status, body)
	}
	if _, err := pool.Claimed(claims[0]).ReportCompleted(ctx, taskdef.ReportRequest{}); err != nil {
		t.Fatal(err)
	}

	// Alice's email: to her address, with a link that opens without
	// signing in.
	msgs, err := relay.Wait(ctx, 1)
	if err != nil {
		t.Fatalf("no email: %v\n%s", err, proc.logs.String())
	}
	if len(msgs[0].To) != 1 || msgs[0].To[0] != "alice@example.com" {
		t.Fatalf("email to %v", msgs[0].To)
	}
	link := regexp.MustCompile(`https?://\S+/graphs/` + ga.GraphID + `\?cap=[^\s"<>]+`).FindString(msgs[0].Text)
	if link == "" {
		t.Fatalf("email has no capability link:\n%s", msgs[0].Text)
	}
	if status, body := raw(t, "GET", link, "", nil); status != http.StatusOK || !strings.Contains(body, ga.GraphID) {
		t.Errorf("the emailed link: %d %.300s", status, body)
	}
	capQ := link[strings.Index(link, "?"):]
	if status, body := raw(t, "GET", url+"/api/v1/graphs/"+ga.GraphID+capQ, "", nil); status != http.StatusOK || !strings.Contains(body, `"state":"completed"`) {
		t.Errorf("the graph's status with the link's capability: %d %.300s", status, body)
	}
	if status, _ := raw(t, "GET", url+"/api/v1/graphs/"+gb.GraphID+capQ, "", nil); status != http.StatusForbidden {
		t.Errorf("alice's capability on bob's graph: %d, want 403", status)
	}
	tampered := link[:len(link)-2] + "AA"
	if status, body := raw(t, "GET", tampered, "", nil); status != http.StatusForbidden || !strings.Contains(body, "not valid") {
		t.Errorf("a tampered link: %d %.300s, want 403", status, body)
	}

	// The audit trail in `af status --json`.
	out, errOut, err := afCLI(t, bin, url, aliceTok, "status", ga.GraphID, "--json")
	if err != nil {
		t.Fatalf("af status: %v %s", err, errOut)
	}
	var gs taskdef.GraphStatus
	if err := json.Unmarshal([]byte(out), &gs); err != nil {
		t.Fatal(err)
	}
	if gs.CreatedBy != "alice@example.com" {
		t.Errorf("graph created by %q", gs.CreatedBy)
	}
	for _, ts := range gs.Tasks {
		r := ts.Runs[len(ts.Runs)-1]
		if ts.CreatedBy != "alice@example.com" || r.ClaimedBy != "pool-a" || r.ResolvedBy != "pool-a" {
			t.Errorf("task %s: created by %q, run claimed by %q resolved by %q", ts.TaskID, ts.CreatedBy, r.ClaimedBy, r.ResolvedBy)
		}
	}
	// Bob cancels his own graph (its reducer is running): the trail
	// names him.
	st, err = bob.CancelGraph(ctx, gb.GraphID)
	if err != nil || st.CanceledBy != "bob@example.com" || st.State != taskdef.GraphCanceled {
		t.Fatalf("bob's cancel: %+v %v", st, err)
	}
	for _, ts := range st.Tasks {
		if r := ts.Runs[len(ts.Runs)-1]; ts.Kind == taskdef.KindReducer && (r.ResolvedBy != "bob@example.com" || r.ClaimedBy != "pool-a") {
			t.Errorf("bob's reducer run: claimed by %q resolved by %q", r.ClaimedBy, r.ResolvedBy)
		}
	}
	// Bob's email goes to the address his identity names (--email).
	msgs, err = relay.Wait(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs[1].To) != 1 || msgs[1].To[0] != "bob.b@example.org" || !strings.Contains(msgs[1].Text, gb.GraphID) {
		t.Errorf("bob's email to %v", msgs[1].To)
	}

	// Rotation: the old token stops (401), the new one works.
	newTok, _, err := afCLI(t, bin, url, adminTok, "users", "rotate", "alice@example.com")
	if err != nil || !tokenLine.MatchString(newTok) {
		t.Fatalf("rotate: %v %q", err, newTok)
	}
	if _, err := alice.Graph(ctx, ga.GraphID); !errors.Is(err, queueclient.ErrUnauthorized) {
		t.Errorf("alice's old token after rotation: %v, want 401", err)
	}
	if _, err := queueclient.New(url, strings.TrimSpace(newTok)).Graph(ctx, ga.GraphID); err != nil {
		t.Errorf("alice's new token: %v", err)
	}
	// Revocation: 401 saying revoked.
	if _, _, err := afCLI(t, bin, url, adminTok, "users", "revoke", "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Graphs(ctx, 10); !errors.Is(err, queueclient.ErrUnauthorized) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("bob after revocation: %v, want 401 saying revoked", err)
	}
	if _, errOut, err := afCLI(t, bin, url, adminTok, "users", "revoke", "admin"); err == nil || !strings.Contains(errOut, "config file") {
		t.Errorf("revoking the config's admin: %v %s", err, errOut)
	}
}
