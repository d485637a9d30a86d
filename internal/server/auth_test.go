package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/af-project/af/internal/taskdef"
)

type routeCase struct {
	method, path string
	body         string
	need         Role // "" for reads
}

func stateChangingRoutes(t *testing.T, e *env) []routeCase {
	g := testGraph(2, e.clock.Now())
	gb, _ := json.Marshal(g)
	tb, _ := json.Marshal(testTask(g.GraphID, "extra", e.clock.Now()))
	task := "/api/v1/tasks/" + g.Tasks[0].TaskID
	report := `{"reason":"worker-shutdown","stats":{}}`
	return []routeCase{
		{"POST", "/api/v1/graphs", string(gb), RoleSubmit},
		{"PUT", "/api/v1/tasks/" + taskdef.NewID(), string(tb), RoleSubmit},
		{"POST", "/api/v1/graphs/" + g.GraphID + "/cancel", "", RoleSubmit},
		{"POST", task + "/rerun", "", RoleSubmit},
		{"POST", "/api/v1/index/build", `{}`, RoleSubmit},
		{"POST", "/api/v1/claim-work?wait=0", `{"workerGroup":"g","workerId":"w","tasks":1}`, RoleWork},
		{"POST", task + "/runs/0/reclaim", `{"stats":{}}`, RoleWork},
		{"POST", task + "/runs/0/completed", report, RoleWork},
		{"POST", task + "/runs/0/failed", report, RoleWork},
		{"POST", task + "/runs/0/exception", report, RoleWork},
		{"POST", task + "/runs/0/artifacts/public/logs/live.log", `{"contentType":"text/plain"}`, RoleWork},
	}
}

func readRoutes(e *env) []routeCase {
	id := taskdef.NewID()
	return []routeCase{
		{"GET", "/api/v1/graphs", "", ""},
		{"GET", "/api/v1/graphs/" + id, "", ""},
		{"GET", "/api/v1/tasks/" + id, "", ""},
		{"GET", "/api/v1/tasks/" + id + "/definition", "", ""},
		{"GET", "/api/v1/tasks/" + id + "/runs/0/artifacts", "", ""},
		{"GET", "/api/v1/tasks/" + id + "/runs/0/artifacts/public/result.txt", "", ""},
		{"GET", "/api/v1/tasks/" + id + "/artifacts/public/result.txt", "", ""},
		{"POST", "/api/v1/index/query", `{"version":1,"dimensions":[]}`, ""},
		{"GET", "/api/v1/index/stats", "", ""},
		{"GET", "/api/v1/pool-key", "", ""},
		{"GET", "/metrics", "", ""},
		{"GET", "/graphs", "", ""},
		{"GET", "/graphs/" + id, "", ""},
		{"GET", "/schedules", "", ""},
		{"GET", "/schedules/daily", "", ""},
	}
}

func do(t *testing.T, e *env, rc routeCase, token string) (int, string) {
	t.Helper()
	var body io.Reader
	if rc.body != "" {
		body = strings.NewReader(rc.body)
	}
	req, err := http.NewRequest(rc.method, e.http.URL+rc.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
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

func TestStateChangingRoutesNeedTheirRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	for _, rc := range stateChangingRoutes(t, e) {
		wrong := workTok
		if rc.need == RoleWork {
			wrong = submitTok
		}
		right := submitTok
		if rc.need == RoleWork {
			right = workTok
		}
		cases := []struct {
			name, token string
			want        func(int) bool
		}{
			{"no token", "", func(s int) bool { return s == http.StatusUnauthorized }},
			{"unknown token", "x" + right, func(s int) bool { return s == http.StatusUnauthorized }},
			{"wrong role", wrong, func(s int) bool { return s == http.StatusForbidden }},
			{"right role", right, func(s int) bool { return s != http.StatusUnauthorized && s != http.StatusForbidden }},
			{"admin", adminTok, func(s int) bool { return s != http.StatusUnauthorized && s != http.StatusForbidden }},
		}
		for _, c := range cases {
			status, body := do(t, e, rc, c.token)
			if !c.want(status) {
				t.Errorf("%s %s with %s: %d %s", rc.method, rc.path, c.name, status, body)
			}
			if status == http.StatusUnauthorized || status == http.StatusForbidden {
				var eb struct{ Error, Code string }
				if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error == "" || eb.Code == "" {
					t.Errorf("%s %s with %s: body %q is not a JSON error", rc.method, rc.path, c.name, body)
				}
			}
		}
	}
	// The graph route really created the graph with the submit token.
	status, _ := do(t, e, routeCase{method: "GET", path: "/api/v1/graphs"}, submitTok)
	if status != http.StatusOK {
		t.Fatalf("list graphs: %d", status)
	}
}

// TestReadsOpenOrClosedByConfig: reads are closed to anonymous callers by
// default (401 naming AF_TOKEN and /signin), and public_reads: true opens
// every read route. With reads closed, the read identity reads every
// route, the shared submit token the graphs no registered identity owns,
// and the work token none of them without a run it holds (403).
func TestReadsOpenOrClosedByConfig(t *testing.T) {
	t.Parallel()
	open := true
	for _, tc := range []struct {
		name   string
		public *bool
	}{{"default closed", nil}, {"public_reads true", &open}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOpts{publicReads: tc.public})
			for _, rc := range readRoutes(e) {
				status, body := do(t, e, rc, "")
				page := strings.HasPrefix(rc.path, "/graphs") || strings.HasPrefix(rc.path, "/schedules")
				switch {
				case tc.public != nil && (status == http.StatusUnauthorized || status == http.StatusForbidden):
					t.Errorf("%s %s without token: %d %s, want open", rc.method, rc.path, status, body)
				case tc.public == nil && page && status != http.StatusSeeOther:
					t.Errorf("%s %s without token: %d, want 303 to /signin", rc.method, rc.path, status)
				case tc.public == nil && !page && status != http.StatusUnauthorized:
					t.Errorf("%s %s without token: %d, want 401", rc.method, rc.path, status)
				case tc.public == nil && !page && !strings.Contains(body, "AF_TOKEN"):
					t.Errorf("%s %s without token: %s does not say how to fix it", rc.method, rc.path, body)
				}
				for _, tok := range []string{readTok, submitTok, adminTok} {
					status, body := do(t, e, rc, tok)
					if tok == submitTok && rc.path == "/metrics" && tc.public == nil {
						// /metrics: read and admin only.
						if status != http.StatusForbidden || !strings.Contains(body, "metrics_public") {
							t.Errorf("/metrics with the submit token: %d %s, want 403 naming metrics_public", status, body)
						}
						continue
					}
					if status == http.StatusUnauthorized || status == http.StatusForbidden {
						t.Errorf("%s %s with a token: %d %s", rc.method, rc.path, status, body)
					}
				}
				if tc.public == nil && strings.HasPrefix(rc.path, "/api/v1/tasks") {
					if status, body := do(t, e, rc, workTok); status != http.StatusForbidden || !strings.Contains(body, taskdef.ReaderRunHeader) {
						t.Errorf("%s %s with the work token and no run: %d %s, want 403 naming %s", rc.method, rc.path, status, body, taskdef.ReaderRunHeader)
					}
				}
			}
		})
	}
}

func TestTokensNeverLogged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	routes := append(stateChangingRoutes(t, e), readRoutes(e)...)
	bad := "not-a-real-token-" + NewToken()
	for _, rc := range routes {
		for _, tok := range []string{adminTok, submitTok, workTok, bad} {
			do(t, e, rc, tok)
		}
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"route":"POST /api/v1/graphs"`) || !strings.Contains(logs, `"token":"the-submitter"`) {
		t.Fatalf("request log lines missing (the test would prove nothing):\n%.2000s", logs)
	}
	for _, tok := range []string{adminTok, submitTok, workTok, bad} {
		h := sha256.Sum256([]byte(tok))
		for _, secret := range []string{tok, tok[len(tok)-20:], hex.EncodeToString(h[:])} {
			if strings.Contains(logs, secret) {
				t.Fatalf("log contains a token (or its hash)")
			}
		}
	}
	if regexp.MustCompile(`(?i)bearer\s+[A-Za-z0-9_-]{16,}|authorization`).MatchString(logs) {
		t.Fatalf("log shows the Authorization header")
	}
}

func TestTokenSetLookup(t *testing.T) {
	t.Parallel()
	h := sha256.Sum256([]byte("hashed-token-value-123"))
	ts := newTokenSet([]Token{
		{Name: "a", Role: RoleAdmin, Token: "plain-token-value-1234"},
		{Name: "w", Role: RoleWork, SHA256: hex.EncodeToString(h[:])},
	})
	cases := []struct {
		tok  string
		name string
		role Role
		ok   bool
	}{
		{"plain-token-value-1234", "a", RoleAdmin, true},
		{"hashed-token-value-123", "w", RoleWork, true},
		{"plain-token-value-123", "", "", false},
		{"plain-token-value-12345", "", "", false},
		{"", "", "", false},
		{hex.EncodeToString(h[:]), "", "", false}, // the hash itself is not a token
	}
	for _, c := range cases {
		name, role, ok := ts.lookup(c.tok)
		if name != c.name || role != c.role || ok != c.ok {
			t.Errorf("lookup(%q) = %q %q %v, want %q %q %v", c.tok, name, role, ok, c.name, c.role, c.ok)
		}
	}
	for _, c := range []struct {
		have, need Role
		ok         bool
	}{
		{RoleAdmin, RoleSubmit, true}, {RoleAdmin, RoleWork, true}, {RoleSubmit, RoleSubmit, true},
		{RoleSubmit, RoleWork, false}, {RoleWork, RoleSubmit, false}, {RoleWork, RoleWork, true},
		{RoleRead, RoleSubmit, false}, {RoleSubmit, RoleAdmin, false},
	} {
		if got := allows(c.have, c.need); got != c.ok {
			t.Errorf("allows(%s, %s) = %v", c.have, c.need, got)
		}
	}
	for _, hv := range []string{"Bearer abc", "bearer abc", "BEARER  abc "} {
		r, _ := http.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", hv)
		if got := bearer(r); got != "abc" {
			t.Errorf("bearer(%q) = %q", hv, got)
		}
	}
	r, _ := http.NewRequest("GET", "/", bytes.NewReader(nil))
	r.Header.Set("Authorization", "Basic abc")
	if got := bearer(r); got != "" {
		t.Errorf("Basic auth read as bearer %q", got)
	}
}
