package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/smtptest"
)

// emailsByGraph counts the messages per graph id (the "Graph:" line of
// the owner's email).
func emailsByGraph(msgs []smtptest.Message) map[string]int {
	out := map[string]int{}
	for _, m := range msgs {
		for _, line := range strings.Split(m.Text, "\n") {
			if g, ok := strings.CutPrefix(line, "Graph:"); ok {
				out[strings.TrimSpace(g)]++
			}
		}
	}
	return out
}

// TestOutboxKill9 runs a real `af serve` process whose relay refuses every
// attempt (451) while a graph ends, kills it with SIGKILL once the email
// is known to be pending (a refused attempt), and starts it again with the
// relay accepting: the email is sent, once. A second kill -9 after the
// send and a restart send nothing again: a graph ended after that restart
// gets its own email and the first graph still has exactly one. The SMTP
// password (from password_env) appears in no log line.
func TestOutboxKill9(t *testing.T) {
	t.Parallel()
	const user, password = "af-relay", "s3cret-relay-pw"
	dir := t.TempDir()
	bin := buildAF(t, dir)
	addr, smtpAddr := freePort(t), freePort(t)
	url := "http://" + addr
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf(`listen: %s
data: %s
tokens:
  - {name: submit, role: submit, token: %s}
  - {name: work, role: work, token: %s}
  - {name: reader, role: read, token: %s}
smtp:
  addr: %s
  from: af@localhost
  username: %s
  password_env: AF_TEST_SMTP_PASSWORD
  starttls: never
  retry_min: 100ms
  retry_max: 400ms
`, addr, filepath.Join(dir, "data"), submitTok, workTok, readTok, smtpAddr, user)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := "AF_TEST_SMTP_PASSWORD=" + password
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	refusing, err := smtptest.Listen(smtpAddr, smtptest.WithAuth(user, password), smtptest.RefuseFirst(1<<30))
	if err != nil {
		t.Fatal(err)
	}
	defer refusing.Close()
	var logs []string
	proc := startServeWith(t, bin, cfgPath, url, "info", env)
	submit := queueclient.New(url, submitTok, queueclient.WithRetries(50), queueclient.WithBackoff(10*time.Millisecond, 200*time.Millisecond))
	g1 := testGraph(1, time.Now())
	if _, err := submit.CreateGraph(ctx, g1); err != nil {
		t.Fatal(err)
	}
	if _, err := submit.CancelGraph(ctx, g1.GraphID); err != nil {
		t.Fatal(err)
	}
	// Two refused attempts: the entry is pending and was retried after
	// its backoff.
	if err := refusing.WaitRefused(ctx, 2); err != nil {
		t.Fatalf("%v\n%s", err, proc.logs.String())
	}
	if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-proc.done
	logs = append(logs, proc.logs.String())
	if err := refusing.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(refusing.Messages()); n != 0 {
		t.Fatalf("the refusing relay accepted %d messages", n)
	}

	relay, err := smtptest.Listen(smtpAddr, smtptest.WithAuth(user, password))
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	proc = startServeWith(t, bin, cfgPath, url, "info", env)
	msgs, err := relay.Wait(ctx, 1)
	if err != nil {
		t.Fatalf("no email after the restart: %v\n%s", err, proc.logs.String())
	}
	m := msgs[0]
	if m.AuthUser != user || len(m.To) != 1 || m.To[0] != "owner@example.org" || !strings.Contains(m.Subject, "os-count") {
		t.Errorf("email: auth %q to %v subject %q", m.AuthUser, m.To, m.Subject)
	}
	if !strings.Contains(m.Text, g1.GraphID) {
		t.Errorf("email does not name graph %s:\n%s", g1.GraphID, m.Text)
	}
	waitMetric(ctx, t, url, `af_outbox_emails{state="sent"} 1`)

	// Kill -9 after the send; the restarted server must not send again.
	if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-proc.done
	logs = append(logs, proc.logs.String())
	proc = startServeWith(t, bin, cfgPath, url, "info", env)
	g2 := testGraph(1, time.Now())
	if _, err := submit.CreateGraph(ctx, g2); err != nil {
		t.Fatal(err)
	}
	if _, err := submit.CancelGraph(ctx, g2.GraphID); err != nil {
		t.Fatal(err)
	}
	// The sender goes through due entries oldest first: had g1's entry
	// been pending still, it would have gone out before g2's.
	if _, err := relay.Wait(ctx, 2); err != nil {
		t.Fatalf("no email for the second graph: %v\n%s", err, proc.logs.String())
	}
	waitMetric(ctx, t, url, `af_outbox_emails{state="sent"} 2`)
	got := emailsByGraph(relay.Messages())
	if len(relay.Messages()) != 2 || got[g1.GraphID] != 1 || got[g2.GraphID] != 1 {
		t.Errorf("emails per graph %v (%d messages), want one each", got, len(relay.Messages()))
	}
	logs = append(logs, proc.logs.String())
	all := strings.Join(logs, "\n")
	if strings.Contains(all, password) {
		t.Errorf("the SMTP password is in af serve's log")
	}
	for _, want := range []string{"outbox: email not sent; will retry", "outbox: owner emailed", "451"} {
		if !strings.Contains(all, want) {
			t.Errorf("af serve's log lacks %q", want)
		}
	}
	t.Logf("figures: relay refused %d attempts before the kill -9; emails after restart: %d for 2 graphs (one each)", refusing.Refused(), len(relay.Messages()))
}

// waitMetric scrapes /metrics until it has the line (the gauge reads the
// queue at scrape time, so it follows the marks).
func waitMetric(ctx context.Context, t *testing.T, url, line string) {
	t.Helper()
	var body string
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+readTok)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			if strings.Contains(body, line) {
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("/metrics never showed %q:\n%s", line, body)
}
