package server

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/clocktest"
	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/smtptest"
	"github.com/af-project/af/internal/taskdef"
)

// TestServerEmailsOwnersOfGraphsItEnds: whatever ends a graph (the last
// worker report, a passed deadline, a cancel), its owner gets one email,
// from the server's outbox (workers send none).
func TestServerEmailsOwnersOfGraphsItEnds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		end      func(t *testing.T, c *queueclient.Client, clock *clocktest.Fake, graphID string)
		wantBody string
		// wantSubject is the outcome the subject names.
		wantSubject string
	}{
		{name: "report", end: func(t *testing.T, c *queueclient.Client, _ *clocktest.Fake, _ string) {
			w := queueclient.New(c.BaseURL(), workTok)
			for i := 0; i < 3; i++ {
				cs, err := w.ClaimWork(ctxT(t), taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 1}, 0)
				if err != nil || len(cs) != 1 {
					t.Fatalf("claim %d: %v %v", i, cs, err)
				}
				if _, err := w.Claimed(cs[0]).ReportCompleted(ctxT(t), taskdef.ReportRequest{}); err != nil {
					t.Fatal(err)
				}
			}
		}, wantBody: "Result:", wantSubject: "completed"},
		{name: "deadline", end: func(t *testing.T, _ *queueclient.Client, clock *clocktest.Fake, _ string) {
			clock.Advance(25 * time.Hour)
		}, wantBody: "deadline-exceeded", wantSubject: "failed"},
		{name: "cancel", end: func(t *testing.T, c *queueclient.Client, _ *clocktest.Fake, graphID string) {
			if _, err := c.CancelGraph(ctxT(t), graphID); err != nil {
				t.Fatal(err)
			}
		}, wantBody: "was canceled", wantSubject: "canceled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mail := smtptest.Start(t)
			clock := newFakeClock()
			dir := t.TempDir()
			q, err := queue.Open(filepath.Join(dir, "queue.db"), queue.Options{Clock: clock})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { q.Close() })
			cfg := Config{Data: dir, Tokens: []Token{{Name: "s", Role: RoleSubmit, Token: submitTok}, {Name: "w", Role: RoleWork, Token: workTok}},
				SMTP: SMTPConfig{Addr: mail.Addr(), From: "af@example.org"}, MonitorURL: "http://af.example.org"}
			if err := cfg.Normalize("test"); err != nil {
				t.Fatal(err)
			}
			srv, err := New(cfg, Deps{Queue: q, Clock: clock, TickEvery: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, ln) }()
			t.Cleanup(func() { cancel(); <-done })
			c := queueclient.New("http://"+ln.Addr().String(), submitTok)

			g := testGraph(2, clock.Now())
			if _, err := c.CreateGraph(ctxT(t), g); err != nil {
				t.Fatal(err)
			}
			tc.end(t, c, clock, g.GraphID)
			msgs := mail.WaitFor(t, 1, 30*time.Second)
			m := msgs[0]
			if m.To[0] != "owner@example.org" || !strings.HasSuffix(m.Subject, ": "+tc.wantSubject) {
				t.Fatalf("email to %v subject %q", m.To, m.Subject)
			}
			if !strings.Contains(m.Text, "http://af.example.org/graphs/"+g.GraphID) || !strings.Contains(m.Text, tc.wantBody) {
				t.Fatalf("email body lacks the monitor link or %q:\n%s", tc.wantBody, m.Text)
			}
			// Exactly one: the entry is marked sent, and no other exists.
			octx := ctxT(t)
			es, err := q.OutboxEntries(octx, g.GraphID)
			for octx.Err() == nil && err == nil && len(es) == 1 && es[0].Status == queue.OutboxPending {
				// The mark follows the relay's answer by one commit.
				<-time.After(10 * time.Millisecond)
				es, err = q.OutboxEntries(octx, g.GraphID)
			}
			if err != nil || len(es) != 1 || es[0].Status != queue.OutboxSent || len(mail.Messages()) != 1 {
				t.Fatalf("outbox %+v %v, %d messages; want one entry sent, one message", es, err, len(mail.Messages()))
			}
			if !strings.Contains(srv.metricsText(t), `af_outbox_emails{state="sent"} 1`) {
				t.Errorf("metrics lack the sent email")
			}
		})
	}
}
