package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/browsertest"
	"github.com/af-project/af/internal/clocktest"
	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/smtptest"
	"github.com/af-project/af/internal/taskdef"
)

// usersEnv is a whole server (Serve: ticks and the outbox) on a real
// listener, with a fake clock, a real SMTP server and the config's admin
// and work tokens.
type usersEnv struct {
	url   string
	clock *clocktest.Fake
	mail  *smtptest.Server
	admin *queueclient.Client
	work  *queueclient.Client
}

func newUsersEnv(t *testing.T, monitorURL string) *usersEnv {
	t.Helper()
	e := &usersEnv{clock: newFakeClock(), mail: smtptest.Start(t)}
	dir := t.TempDir()
	q, err := queue.Open(filepath.Join(dir, "queue.db"), queue.Options{Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "http://" + ln.Addr().String()
	if monitorURL == "" {
		monitorURL = e.url
	}
	cfg := Config{Data: dir, Tokens: []Token{{Name: "admin", Role: RoleAdmin, Token: adminTok}, {Name: "work", Role: RoleWork, Token: workTok}},
		SMTP: SMTPConfig{Addr: e.mail.Addr(), From: "af@example.org"}, MonitorURL: monitorURL, ExpireEvery: -1}
	if err := cfg.Normalize("test"); err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, Deps{Queue: q, Clock: e.clock, TickEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	e.admin = queueclient.New(e.url, adminTok)
	e.work = queueclient.New(e.url, workTok)
	return e
}

// addUser makes an identity through the admin API and returns its client.
func (e *usersEnv) addUser(t *testing.T, name, role string, expires *time.Time) (*queueclient.Client, string) {
	t.Helper()
	out, err := e.admin.AddUser(ctxT(t), taskdef.UserRequest{Name: name, Role: role, Expires: expires})
	if err != nil {
		t.Fatal(err)
	}
	return queueclient.New(e.url, out.Token), out.Token
}

// complete runs every task of the queue to completion as the work token.
func (e *usersEnv) complete(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		cs, err := e.work.ClaimWork(ctxT(t), taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 1}, 5*time.Second)
		if err != nil || len(cs) != 1 {
			t.Fatalf("claim %d: %v %v", i, cs, err)
		}
		if _, err := e.work.Claimed(cs[0]).ReportCompleted(ctxT(t), taskdef.ReportRequest{}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEmailedLinkExpiresWithItsGraph: the link in the owner's email
// (taken from the email a real SMTP server received) opens the graph's
// page, status and result without signing in until the graph expires
// (fake clock), and is refused after; an identity past its --expires gets
// 401 saying it expired.
func TestEmailedLinkExpiresWithItsGraph(t *testing.T) {
	t.Parallel()
	e := newUsersEnv(t, "")
	ctx := ctxT(t)
	exp := e.clock.Now().Add(48 * time.Hour)
	alice, _ := e.addUser(t, "alice@example.com", "submit", &exp)
	g := unowned(2, e.clock.Now())
	if _, err := alice.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	e.complete(t, 3)
	msgs, err := e.mail.Wait(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	link := regexp.MustCompile(`http://\S+/graphs/` + g.GraphID + `\?cap=[^\s"<>]+`).FindString(msgs[0].Text)
	result := regexp.MustCompile(`http://\S+/api/v1/tasks/\S+/artifacts/public/result\.txt\?cap=[^\s"<>]+`).FindString(msgs[0].Text)
	if link == "" || result == "" {
		t.Fatalf("email lacks the capability links:\n%s", msgs[0].Text)
	}
	capQ := link[strings.Index(link, "?"):]
	check := func(what string, wantOK bool) {
		t.Helper()
		for _, u := range []string{link, e.url + "/api/v1/graphs/" + g.GraphID + capQ, e.url + "/api/v1/tasks/" + g.Tasks[0].TaskID + capQ} {
			status, body := raw(t, "GET", u, "", nil)
			if wantOK && status != http.StatusOK || !wantOK && (status != http.StatusForbidden || !strings.Contains(body, "expired")) {
				t.Errorf("%s: GET %s: %d %.200s", what, u, status, body)
			}
		}
		// The result link gets past the check (no bucket here: 503).
		if status, body := raw(t, "GET", result, "", nil); wantOK != (status == http.StatusServiceUnavailable) {
			t.Errorf("%s: result link: %d %.200s", what, status, body)
		}
	}
	check("fresh link", true)
	// The capability is for this graph only: another task's path refuses.
	other := unowned(1, e.clock.Now())
	if _, err := alice.CreateGraph(ctx, other); err != nil {
		t.Fatal(err)
	}
	if status, _ := raw(t, "GET", e.url+"/api/v1/graphs/"+other.GraphID+capQ, "", nil); status != http.StatusForbidden {
		t.Errorf("the link's capability on another graph: %d, want 403", status)
	}

	e.clock.Advance(49 * time.Hour)
	if _, err := alice.Graphs(ctx, 10); !errors.Is(err, queueclient.ErrUnauthorized) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("alice past --expires: %v, want 401 saying expired", err)
	}
	e.clock.Advance(30 * 24 * time.Hour) // past the tasks' expires
	check("expired link", false)
}

// TestSignInInChromium: in headless Chromium, the emailed link opens its
// graph's page with its tasks without signing in; a graph's page sends a
// visitor to sign in; pasting alice's token signs her in (the cookie is
// HttpOnly, so the page's script cannot read it) and shows her graph;
// signing out ends the session on the server. The Set-Cookie carries
// HttpOnly and SameSite=Strict, and Secure when the monitor_url is https.
func TestSignInInChromium(t *testing.T) {
	t.Parallel()
	e := newUsersEnv(t, "")
	ctx := ctxT(t)
	alice, aliceTok := e.addUser(t, "alice@example.com", "submit", nil)
	g := unowned(2, e.clock.Now())
	if _, err := alice.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	browser := browsertest.Start(t)
	wait := 30 * time.Second

	// The emailed link, in a browser that never signed in: the page's
	// script carries the capability on to its reads, so the tasks and
	// the result show.
	e.complete(t, 3)
	msgs, err := e.mail.Wait(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	link := regexp.MustCompile(`http://\S+/graphs/` + g.GraphID + `\?cap=[^\s"<>]+`).FindString(msgs[0].Text)
	if link == "" {
		t.Fatalf("no capability link in:\n%s", msgs[0].Text)
	}
	capTab := browser.NewTab(t)
	must(t, capTab.Navigate(link, wait))
	must(t, capTab.WaitFor(`location.pathname === '/graphs/`+g.GraphID+`' && document.querySelectorAll('#tasks .trow[data-state="completed"]').length === 3`, wait))
	if n := len(capTab.Errors()); n > 0 {
		t.Errorf("the capability page logged errors: %v", capTab.Errors())
	}

	tab := browser.NewTab(t)
	must(t, tab.Navigate(e.url+"/graphs/"+g.GraphID, wait))
	must(t, tab.WaitFor(`location.pathname === '/signin' && !!document.getElementById('signin-token')`, wait))
	must(t, tab.Eval(`document.getElementById('signin-token').value = `+jsString(aliceTok)+`; true`, nil))
	must(t, tab.Click(`#signin-submit`, wait))
	must(t, tab.WaitFor(`location.pathname === '/graphs/`+g.GraphID+`' && document.querySelectorAll('#tasks .trow').length === 3`, wait))
	var cookie string
	must(t, tab.Eval(`document.cookie`, &cookie))
	if strings.Contains(cookie, sessionCookie) {
		t.Errorf("the page's script reads the session cookie: %q", cookie)
	}
	// Sign out: the server forgets the session, the page needs sign-in.
	must(t, tab.Click(`form.signout button`, wait))
	must(t, tab.WaitFor(`location.pathname === '/signin'`, wait))
	must(t, tab.Navigate(e.url+"/graphs/"+g.GraphID, wait))
	must(t, tab.WaitFor(`location.pathname === '/signin'`, wait))

	// The cookie's attributes, and a wrong token.
	for _, tc := range []struct {
		monitor    string
		wantSecure bool
	}{{"", false}, {"https://af.example.org", true}} {
		ue := e
		if tc.monitor != "" {
			ue = newUsersEnv(t, tc.monitor)
		}
		_, tok := ue.addUser(t, "carol@example.com", "read", nil)
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.PostForm(ue.url+"/signin", url.Values{"token": {tok}, "next": {"//evil.example/x"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		sc := resp.Header.Get("Set-Cookie")
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/graphs" ||
			!strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Strict") || strings.Contains(sc, "Secure") != tc.wantSecure {
			t.Errorf("monitor %q: sign-in %d to %q, Set-Cookie %q", tc.monitor, resp.StatusCode, resp.Header.Get("Location"), sc)
		}
		if strings.Contains(sc, tok) {
			t.Error("the cookie carries the token")
		}
		resp, err = client.PostForm(ue.url+"/signin", url.Values{"token": {"x" + tok}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Set-Cookie") != "" {
			t.Errorf("a wrong token: %d, cookie %q", resp.StatusCode, resp.Header.Get("Set-Cookie"))
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func jsString(s string) string {
	return `'` + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + `'`
}
