package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/smtptest"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/testbin"
)

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

var testNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func newLogger() (*slog.Logger, *testbin.SyncBuffer) {
	var b testbin.SyncBuffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), &b
}

func completedSummary() GraphSummaryForMail {
	return GraphSummaryForMail{
		GraphID:    "G1aaaaaaaaaa",
		Name:       "os-count",
		Owner:      "ana@example.org",
		State:      taskdef.GraphCompleted,
		MonitorURL: "http://af.example.org/graphs/G1aaaaaaaaaa",
		ResultURL:  "http://af.example.org/api/v1/tasks/Rtaskaaaaaaa/artifacts/public/result.txt",
		Duration:   90 * time.Second,
		Files:      1200,
		Bytes:      3 << 30,
	}
}

func failedSummary() GraphSummaryForMail {
	s := completedSummary()
	s.State = taskdef.GraphFailed
	s.Failed = []FailedTask{
		{TaskID: "Mtask0000001", Name: "mapper 1", State: taskdef.StateFailed, Reason: taskdef.ReasonFailed,
			Message: "Traceback (most recent call last):\nKeyError: 'os'", LogURL: "http://af.example.org/api/v1/tasks/Mtask0000001/artifacts/public/logs/live.log"},
		{TaskID: "Mtask0000002", Name: "mapper 2", State: taskdef.StateException, Reason: taskdef.ReasonClaimExpired,
			LogURL: "http://af.example.org/api/v1/tasks/Mtask0000002/artifacts/public/logs/live.log"},
	}
	s.FailedTotal = 60
	return s
}

func TestCompose(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		summary    GraphSummaryForMail
		subject    string
		contains   []string
		notContain []string
	}{
		{
			name:       "completed",
			summary:    completedSummary(),
			subject:    "[af] os-count: completed",
			contains:   []string{`"os-count" completed`, "Monitor:  http://af.example.org/graphs/G1aaaaaaaaaa", "Result:   http://af.example.org/api/v1/tasks/Rtaskaaaaaaa/artifacts/public/result.txt", "1m30s", "1200 files, 3.0 GiB"},
			notContain: []string{"did not complete"},
		},
		{
			name:    "failed lists tasks with reasons and logs",
			summary: failedSummary(),
			subject: "[af] os-count: failed",
			contains: []string{
				"60 task(s) did not complete",
				"- mapper 1 (Mtask0000001): failed\n", "    KeyError: 'os'",
				"- mapper 2 (Mtask0000002): exception, claim-expired",
				"log: http://af.example.org/api/v1/tasks/Mtask0000002/artifacts/public/logs/live.log",
				"...and 58 more; see the monitor page.",
			},
			notContain: []string{"Result:"},
		},
		{
			name:     "nameless graph uses its id",
			summary:  GraphSummaryForMail{GraphID: "G2bbbbbbbbbb", State: taskdef.GraphCompleted, MonitorURL: "http://x/graphs/G2bbbbbbbbbb"},
			subject:  "[af] G2bbbbbbbbbb: completed",
			contains: []string{"Monitor:  http://x/graphs/G2bbbbbbbbbb"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := Compose(tc.summary)
			if m.Subject != tc.subject {
				t.Errorf("subject %q, want %q", m.Subject, tc.subject)
			}
			if m.To != tc.summary.Owner {
				t.Errorf("to %q, want the owner %q", m.To, tc.summary.Owner)
			}
			for _, c := range tc.contains {
				if !strings.Contains(m.Text, c) {
					t.Errorf("text lacks %q:\n%s", c, m.Text)
				}
			}
			for _, c := range tc.notContain {
				if strings.Contains(m.Text, c) {
					t.Errorf("text has %q:\n%s", c, m.Text)
				}
			}
			if !strings.Contains(m.HTML, `href="`+tc.summary.MonitorURL+`"`) {
				t.Errorf("html lacks the monitor link:\n%s", m.HTML)
			}
		})
	}
}

// A long failure message keeps the user's file and line, which a
// traceback has at its end, in both parts of the email.
func TestComposeKeepsTracebackEnd(t *testing.T) {
	t.Parallel()
	s := failedSummary()
	s.Failed[0].Message = "the job exited with code 1: KeyError: 'os' (at /job/job.py line 14)\nTraceback (most recent call last):\n" +
		strings.Repeat("  File \"/usr/lib/python3/dist-packages/af_helper.py\", line 120, in run_map\n    fn(doc_id, dims, value, ctx)\n", 40) +
		"  File \"/job/job.py\", line 14, in map\n    os_name = dims[\"os\"]\nKeyError: 'os'"
	m := Compose(s)
	for _, part := range []string{m.Text, m.HTML} {
		for _, want := range []string{"(at /job/job.py line 14)", "line 14, in map", "bytes cut …]"} {
			if !strings.Contains(part, want) {
				t.Errorf("email lacks %q:\n%s", want, part)
			}
		}
	}
}

func TestComposeEscapesHTML(t *testing.T) {
	t.Parallel()
	s := failedSummary()
	s.Name = `<script>alert(1)</script>`
	s.Failed[0].Message = `<img src=x onerror=alert(1)>`
	s.MonitorURL = "javascript:alert(1)"
	m := Compose(s)
	for _, bad := range []string{"<script>", "<img", `href="javascript:`} {
		if strings.Contains(m.HTML, bad) {
			t.Errorf("html contains %q unescaped:\n%s", bad, m.HTML)
		}
	}
}

func TestFromStatus(t *testing.T) {
	t.Parallel()
	created := testNow.Add(-10 * time.Minute)
	resolved := testNow
	gs := taskdef.GraphStatus{
		GraphID: "G1aaaaaaaaaa", Name: "os-count", Owner: "ana@example.org", State: taskdef.GraphFailed,
		Created: created, Resolved: &resolved, ResultTaskID: "Rtaskaaaaaaa",
		Tasks: []taskdef.TaskStatus{
			{TaskID: "Mtask0000001", Name: "mapper 1", Kind: taskdef.KindMapper, State: taskdef.StateCompleted,
				Runs: []taskdef.Run{
					{RunID: 0, State: taskdef.StateException, ReasonResolved: taskdef.ReasonClaimExpired, Stats: taskdef.Stats{Files: 2, Bytes: 10}},
					{RunID: 1, State: taskdef.StateCompleted, Stats: taskdef.Stats{Files: 3, Bytes: 300}},
				}},
			{TaskID: "Mtask0000002", Name: "mapper 2", Kind: taskdef.KindMapper, State: taskdef.StateFailed,
				Runs: []taskdef.Run{{RunID: 0, State: taskdef.StateFailed, ReasonResolved: taskdef.ReasonFailed, Message: "exit status 1", Stats: taskdef.Stats{Files: 1, Bytes: 20}}}},
			{TaskID: "Rtaskaaaaaaa", Name: "reducer", Kind: taskdef.KindReducer, State: taskdef.StateException,
				Runs: []taskdef.Run{{RunID: 0, State: taskdef.StateException, ReasonResolved: taskdef.ReasonDependencyFailed}}},
		},
	}
	s := FromStatus(gs, "http://af.example.org/")
	if s.MonitorURL != "http://af.example.org/graphs/G1aaaaaaaaaa" {
		t.Errorf("monitor URL %q", s.MonitorURL)
	}
	if s.ResultURL != "http://af.example.org/api/v1/tasks/Rtaskaaaaaaa/artifacts/public/result.txt" {
		t.Errorf("result URL %q", s.ResultURL)
	}
	if s.Duration != 10*time.Minute || s.Files != 4 || s.Bytes != 320 {
		t.Errorf("duration %v files %d bytes %d; want 10m, 4 files, 320 bytes from the last runs", s.Duration, s.Files, s.Bytes)
	}
	if len(s.Failed) != 2 || s.FailedTotal != 2 {
		t.Fatalf("failed %+v", s.Failed)
	}
	if f := s.Failed[0]; f.TaskID != "Mtask0000002" || f.Reason != taskdef.ReasonFailed || f.Message != "exit status 1" ||
		f.LogURL != "http://af.example.org/api/v1/tasks/Mtask0000002/artifacts/public/logs/live.log" {
		t.Errorf("first failed task %+v", f)
	}
	if f := s.Failed[1]; f.State != taskdef.StateException || f.Reason != taskdef.ReasonDependencyFailed {
		t.Errorf("second failed task %+v", f)
	}

	// Many failures: the list is bounded, the total is not.
	many := taskdef.GraphStatus{GraphID: "G3cccccccccc", State: taskdef.GraphFailed}
	for range MaxFailedListed + 7 {
		many.Tasks = append(many.Tasks, taskdef.TaskStatus{TaskID: "x", State: taskdef.StateFailed})
	}
	if s := FromStatus(many, "http://h"); len(s.Failed) != MaxFailedListed || s.FailedTotal != MaxFailedListed+7 {
		t.Errorf("listed %d of %d", len(s.Failed), s.FailedTotal)
	}
}

func smtpCfg(s *smtptest.Server) SMTPConfig {
	return SMTPConfig{Host: s.Host(), Port: s.Port(), From: "af@example.org", Timeout: 10 * time.Second}
}

func TestSendArrives(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	m, err := New(smtpCfg(srv), nil, WithClock(fixedClock{testNow}))
	if err != nil {
		t.Fatal(err)
	}
	msg := Compose(failedSummary())
	if err := m.Send(context.Background(), msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := srv.WaitFor(t, 1, 10*time.Second)[0]
	if got.ParseErr != nil {
		t.Fatalf("received message does not parse: %v\n%s", got.ParseErr, got.Data)
	}
	if got.From != "af@example.org" || len(got.To) != 1 || got.To[0] != "ana@example.org" {
		t.Errorf("envelope from %q to %v", got.From, got.To)
	}
	if got.Subject != "[af] os-count: failed" {
		t.Errorf("subject %q", got.Subject)
	}
	if d := got.Header.Get("Date"); d != testNow.Format(time.RFC1123Z) {
		t.Errorf("Date %q, want the clock's %q", d, testNow.Format(time.RFC1123Z))
	}
	if got.Text != strings.ReplaceAll(msg.Text, "\n", "\r\n") {
		t.Errorf("text body changed in transit:\n got %q\nwant %q", got.Text, msg.Text)
	}
	for _, link := range []string{failedSummary().MonitorURL, failedSummary().Failed[0].LogURL} {
		if !strings.Contains(got.HTML, `href="`+link+`"`) {
			t.Errorf("html part lacks a link to %s", link)
		}
	}
	for _, line := range strings.Split(string(got.Data), "\r\n") {
		if len(line) > 998 {
			t.Errorf("line of %d bytes exceeds SMTP's limit", len(line))
		}
	}
}

func TestSendAuth(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.WithAuth("relay", "s3cret"))
	cases := []struct {
		name, user, pass string
		wantErr          string
	}{
		{"right password", "relay", "s3cret", ""},
		{"wrong password", "relay", "nope", "auth as relay"},
		{"no credentials", "", "", "mail from"},
	}
	delivered := 0
	for _, tc := range cases {
		cfg := smtpCfg(srv)
		cfg.Username, cfg.Password = tc.user, tc.pass
		log, logs := newLogger()
		m, err := New(cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		err = m.Send(context.Background(), Compose(completedSummary()))
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			delivered++
		} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), srv.Addr()) {
			t.Errorf("%s: error %v, want one naming %q and the server %s", tc.name, err, tc.wantErr, srv.Addr())
		}
		if tc.pass != "" && strings.Contains(logs.String(), tc.pass) {
			t.Errorf("%s: the password appears in the log:\n%s", tc.name, logs.String())
		}
	}
	got := srv.WaitFor(t, delivered, 10*time.Second)
	if len(got) != 1 || got[0].AuthUser != "relay" {
		t.Fatalf("%d messages; want exactly the authenticated one", len(got))
	}
}

func TestSendTLS(t *testing.T) {
	t.Parallel()
	cert, err := smtptest.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	trust := &tls.Config{RootCAs: cert.Roots}
	const (
		starttls = "starttls"
		implicit = "implicit"
		plain    = "plain"
	)
	cases := []struct {
		name     string
		server   string
		mode     string
		implicit bool
		tls      *tls.Config
		wantErr  string // "" means delivered
		wantTLS  bool
	}{
		{"starttls always with the test CA", starttls, StartTLSAlways, false, trust, "", true},
		{"starttls auto upgrades when offered", starttls, StartTLSAuto, false, trust, "", true},
		{"untrusted certificate is refused", starttls, StartTLSAlways, false, nil, "certificate", false},
		{"never: AUTH is not offered in the clear", starttls, StartTLSNever, false, trust, "does not offer AUTH", false},
		{"always against a server without STARTTLS", plain, StartTLSAlways, false, trust, "does not offer STARTTLS", false},
		{"auto against a server without STARTTLS sends in the clear", plain, StartTLSAuto, false, trust, "", false},
		{"implicit TLS", implicit, "", true, trust, "", true},
		{"implicit TLS with an untrusted certificate", implicit, "", true, nil, "certificate", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var srv *smtptest.Server
			cfg := SMTPConfig{StartTLS: tc.mode, ImplicitTLS: tc.implicit, TLSConfig: tc.tls}
			switch tc.server {
			case starttls:
				srv = smtptest.Start(t, smtptest.WithTLS(cert), smtptest.WithAuth("relay", "s3cret"))
			case implicit:
				srv = smtptest.Start(t, smtptest.WithTLS(cert), smtptest.WithImplicitTLS(), smtptest.WithAuth("relay", "s3cret"))
			default:
				srv = smtptest.Start(t)
			}
			base := smtpCfg(srv)
			cfg.Host, cfg.Port, cfg.From, cfg.Timeout = base.Host, base.Port, base.From, base.Timeout
			if tc.server != plain {
				cfg.Username, cfg.Password = "relay", "s3cret"
			}
			m, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = m.Send(context.Background(), Compose(completedSummary()))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if n := len(srv.Messages()); n != 0 {
					t.Fatalf("%d messages delivered despite the error", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			got := srv.WaitFor(t, 1, 10*time.Second)[0]
			if got.TLS != tc.wantTLS {
				t.Fatalf("delivered with TLS %v, want %v", got.TLS, tc.wantTLS)
			}
			if got.Subject != "[af] os-count: completed" {
				t.Fatalf("subject %q", got.Subject)
			}
		})
	}
}

func TestSendServerDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	log, logs := newLogger()
	m, err := New(SMTPConfig{Host: "127.0.0.1", Port: addr.Port, Username: "relay", Password: "hunter2-secret"}, log)
	if err != nil {
		t.Fatal(err)
	}
	err = m.Send(context.Background(), Compose(completedSummary()))
	if err == nil || !strings.Contains(err.Error(), addr.String()) || !strings.Contains(err.Error(), "ana@example.org") {
		t.Fatalf("error %v, want one naming the server %s and the recipient", err, addr)
	}
	out := logs.String()
	if !strings.Contains(out, "not delivered") || !strings.Contains(out, "graphs/G1aaaaaaaaaa") {
		t.Errorf("undelivered message not logged in full:\n%s", out)
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("password in the log:\n%s", out)
	}
}

func TestSendHonoursContext(t *testing.T) {
	t.Parallel()
	// A server that accepts connections and never greets.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			accepted <- struct{}{}
		}
	}()
	addr := ln.Addr().(*net.TCPAddr)
	m, err := New(SMTPConfig{Host: "127.0.0.1", Port: addr.Port, Timeout: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- m.Send(ctx, Compose(completedSummary())) }()
	select {
	case <-accepted:
	case <-time.After(30 * time.Second):
		t.Fatal("Send never connected")
	}
	// Send is connecting or waiting for the greeting; cancelling ends it.
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Send did not return after its context was canceled")
	}

	// The configured timeout bounds a relay that never answers.
	m, err = New(SMTPConfig{Host: "127.0.0.1", Port: addr.Port, Timeout: 300 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = m.Send(context.Background(), Compose(completedSummary()))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "greeting") {
		t.Fatalf("error %v, want the deadline while waiting for the greeting", err)
	}
}

func TestNotConfiguredLogs(t *testing.T) {
	t.Parallel()
	log, logs := newLogger()
	m, err := New(SMTPConfig{}, log)
	if err != nil {
		t.Fatal(err)
	}
	if m.Configured() {
		t.Fatal("empty config reports configured")
	}
	if err := m.Send(context.Background(), Compose(failedSummary())); err != nil {
		t.Fatalf("Send without SMTP: %v", err)
	}
	out := logs.String()
	for _, want := range []string{"level=INFO", "ana@example.org", "[af] os-count: failed", "http://af.example.org/graphs/G1aaaaaaaaaa", "KeyError"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestHeaderInjection(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	m, err := New(smtpCfg(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := completedSummary()
	s.Name = "evil\r\nBcc: victim@example.org\r\n\r\nforged body\nX-Injected: 1"
	if err := m.Send(context.Background(), Compose(s)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := srv.WaitFor(t, 1, 10*time.Second)[0]
	if len(got.To) != 1 || got.To[0] != "ana@example.org" {
		t.Errorf("recipients %v", got.To)
	}
	for _, h := range []string{"Bcc", "X-Injected"} {
		if v := got.Header.Get(h); v != "" {
			t.Errorf("injected header %s: %q", h, v)
		}
	}
	if got.Subject != "[af] evil Bcc: victim@example.org forged body X-Injected: 1: completed" {
		t.Errorf("subject %q", got.Subject)
	}

	// A recipient with a line break is refused, not sent.
	for _, to := range []string{"ana@example.org\r\nBcc: victim@example.org", "not an address", ""} {
		err := m.Send(context.Background(), Message{To: to, Subject: "x", Text: "y"})
		if err == nil || !strings.Contains(err.Error(), "recipient") {
			t.Errorf("recipient %q: error %v", to, err)
		}
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("%d messages reached the server, want 1", n)
	}
}

func TestLongUnicodeSubject(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t)
	m, err := New(smtpCfg(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := completedSummary()
	s.Name = strings.Repeat("Ünïcødé ", 40)
	if err := m.Send(context.Background(), Compose(s)); err != nil {
		t.Fatal(err)
	}
	got := srv.WaitFor(t, 1, 10*time.Second)[0]
	if !strings.HasPrefix(got.Subject, "[af] Ünïcødé Ünïcødé") || !strings.HasSuffix(got.Subject, "…: completed") {
		t.Errorf("subject %q", got.Subject)
	}
	for _, line := range strings.Split(string(got.Data), "\r\n") {
		if len(line) > 998 {
			t.Errorf("line of %d bytes exceeds SMTP's limit", len(line))
		}
	}
}

// TestComposeCanceled: a canceled graph's email says canceled in the
// subject and once in the body, and lists only the tasks that failed for
// another reason, not each canceled one.
func TestComposeCanceled(t *testing.T) {
	t.Parallel()
	resolved := testNow
	gs := taskdef.GraphStatus{
		GraphID: "G4dddddddddd", Name: "os-count", Owner: "ana@example.org", State: taskdef.GraphCanceled,
		Created: testNow.Add(-time.Minute), Resolved: &resolved,
		Tasks: []taskdef.TaskStatus{
			{TaskID: "Mtask0000001", Name: "mapper 1", Kind: taskdef.KindMapper, State: taskdef.StateCompleted,
				Runs: []taskdef.Run{{RunID: 0, State: taskdef.StateCompleted}}},
			{TaskID: "Mtask0000002", Name: "mapper 2", Kind: taskdef.KindMapper, State: taskdef.StateFailed,
				Runs: []taskdef.Run{{RunID: 0, State: taskdef.StateFailed, ReasonResolved: taskdef.ReasonFailed, Message: "exit status 1"}}},
		},
	}
	for i := 3; i < 8; i++ {
		gs.Tasks = append(gs.Tasks, taskdef.TaskStatus{TaskID: fmt.Sprintf("Mtask000000%d", i), Name: fmt.Sprintf("mapper %d", i),
			Kind: taskdef.KindMapper, State: taskdef.StateException,
			Runs: []taskdef.Run{{RunID: 0, State: taskdef.StateException, ReasonResolved: taskdef.ReasonCanceled}}})
	}
	s := FromStatus(gs, "http://af.example.org")
	if s.Canceled != 5 || s.FailedTotal != 1 || len(s.Failed) != 1 {
		t.Fatalf("canceled %d, failed %d %+v; want 5 canceled and the one failed task", s.Canceled, s.FailedTotal, s.Failed)
	}
	m := Compose(s)
	if m.Subject != "[af] os-count: canceled" {
		t.Errorf("subject %q", m.Subject)
	}
	for _, body := range []string{m.Text, m.HTML} {
		if n := strings.Count(body, "canceled"); n < 2 {
			t.Errorf("body says canceled %d times, want the headline and one line:\n%s", n, body)
		}
		if strings.Contains(body, "Mtask0000003") || strings.Contains(body, "graph canceled") {
			t.Errorf("body lists a canceled task one by one:\n%s", body)
		}
		for _, w := range []string{"was canceled", "5 task(s)", "af rerun G4dddddddddd --failed", "Mtask0000002"} {
			if !strings.Contains(body, w) {
				t.Errorf("body lacks %q:\n%s", w, body)
			}
		}
	}
}

// TestAddQuery: the read capability reaches every link of the email (the
// monitor page, the result, each failed task's log), and an empty one
// changes none.
func TestAddQuery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		query string
		want  string
	}{{"cap=1.abc", "?cap=1.abc"}, {"", ""}} {
		s := GraphSummaryForMail{MonitorURL: "http://af/graphs/g1", ResultURL: "http://af/api/v1/tasks/r/artifacts/public/result.txt",
			Failed: []FailedTask{{LogURL: "http://af/api/v1/tasks/m/artifacts/public/logs/live.log"}}}
		s.AddQuery(tc.query)
		for _, u := range []string{s.MonitorURL, s.ResultURL, s.Failed[0].LogURL} {
			if !strings.HasSuffix(u, tc.want) || strings.Count(u, "?") != strings.Count(tc.want, "?") {
				t.Errorf("query %q: link %s", tc.query, u)
			}
		}
	}
}
