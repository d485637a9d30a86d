package outbox

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/clocktest"
	"github.com/af-project/af/internal/notify"
	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/smtptest"
	"github.com/af-project/af/internal/taskdef"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// TestBackoff: the wait doubles from min per failure up to max, and the
// jitter spreads it over [d/2, d).
func TestBackoff(t *testing.T) {
	t.Parallel()
	min, max := 30*time.Second, 10*time.Minute
	for _, c := range []struct {
		attempts int
		r        float64
		want     time.Duration
	}{
		{0, 0, 15 * time.Second},
		{1, 0, 15 * time.Second},
		{1, 0.5, 22500 * time.Millisecond},
		{2, 0, 30 * time.Second},
		{3, 0, time.Minute},
		{4, 0, 2 * time.Minute},
		{5, 0, 4 * time.Minute},
		{6, 0, 5 * time.Minute}, // capped: 10m/2
		{60, 0, 5 * time.Minute},
		{1000, 0.999, 5*time.Minute + time.Duration(float64(5*time.Minute)*0.999)},
		{1, 1, 15*time.Second + time.Duration(float64(15*time.Second)*0.999999)},
		{1, -1, 15 * time.Second},
	} {
		if got := Backoff(c.attempts, min, max, c.r); got != c.want {
			t.Errorf("Backoff(%d, r=%v) = %v, want %v", c.attempts, c.r, got, c.want)
		}
	}
	// Whatever the jitter, every wait is within [d/2, d) and they never
	// shrink from one attempt's ceiling to the next's floor.
	for a := 1; a < 20; a++ {
		lo, hi := Backoff(a, min, max, 0), Backoff(a, min, max, 0.999999)
		if lo <= 0 || hi > max || hi < lo {
			t.Errorf("attempt %d: [%v, %v]", a, lo, hi)
		}
	}
}

type fixture struct {
	q    *queue.Queue
	clk  *clocktest.Fake
	smtp *smtptest.Server
	path string
}

func newFixture(t *testing.T, opts ...smtptest.Option) *fixture {
	t.Helper()
	f := &fixture{clk: clocktest.New(t0), smtp: smtptest.Start(t, opts...), path: filepath.Join(t.TempDir(), "queue.db")}
	f.open(t)
	return f
}

func (f *fixture) open(t *testing.T) {
	t.Helper()
	q, err := queue.Open(f.path, queue.Options{Clock: f.clk})
	if err != nil {
		t.Fatal(err)
	}
	f.q = q
	t.Cleanup(func() { _ = q.Close() })
}

func (f *fixture) mailer(t *testing.T) *notify.Mailer {
	t.Helper()
	m, err := notify.New(notify.SMTPConfig{Host: f.smtp.Host(), Port: f.smtp.Port(), StartTLS: notify.StartTLSNever, From: "af@localhost"}, nil, notify.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (f *fixture) sender(t *testing.T, o Options) *Sender {
	t.Helper()
	o.Clock = f.clk
	if o.BaseURL == "" {
		o.BaseURL = "http://af.example.org"
	}
	if o.Rand == nil {
		o.Rand = func() float64 { return 0 }
	}
	return New(f.q, f.mailer(t), o)
}

// run starts s.Run and returns a stop that waits for it.
func run(s *Sender) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	return func() { cancel(); <-done }
}

// resolve creates a one-task graph and completes it (or, with fail, fails
// it), so its resolution writes an outbox entry.
func (f *fixture) resolve(t *testing.T, id, owner string, fail bool) {
	t.Helper()
	ctx := context.Background()
	task := taskdef.Task{
		GraphID: id, Created: f.clk.Now(), Deadline: f.clk.Now().Add(time.Hour),
		Metadata: taskdef.Metadata{Name: "job " + id, Owner: "someone@example.org"},
		Payload:  taskdef.Payload{Kind: taskdef.KindReducer, Image: "af/example:1", MaxRunTime: 60},
	}
	g := taskdef.Graph{GraphID: id, Name: "job " + id, Owner: owner, Tasks: []taskdef.GraphTask{{TaskID: id + "-t", Task: task}}}
	if _, err := f.q.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	cs, err := f.q.Claim(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 1})
	if err != nil || len(cs) != 1 {
		t.Fatalf("claim: %v %v", cs, err)
	}
	if fail {
		_, err = f.q.ReportFailed(ctx, cs[0].TaskID, cs[0].RunID, cs[0].RunToken, taskdef.ReportRequest{Message: "exit 1"})
	} else {
		_, err = f.q.ReportCompleted(ctx, cs[0].TaskID, cs[0].RunID, cs[0].RunToken, taskdef.ReportRequest{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func byGraph(msgs []smtptest.Message) map[string]int {
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

func stats(t *testing.T, q *queue.Queue) queue.OutboxStats {
	t.Helper()
	s, err := q.OutboxStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRefusingRelay: a relay that refuses the first attempts (451) still
// gets exactly one email per graph, each after the backoff the schedule
// says, and the entries end sent with their failed attempts counted.
func TestRefusingRelay(t *testing.T) {
	t.Parallel()
	const refusals = 3
	f := newFixture(t, smtptest.RefuseFirst(refusals))
	f.resolve(t, "graph-rr01", "ana@example.org", false)
	f.resolve(t, "graph-rr02", "bo@example.org", true)
	s := f.sender(t, Options{MinBackoff: time.Minute, MaxBackoff: 10 * time.Minute})
	stop := run(s)
	defer stop()

	// Each pass tries both entries: 1st pass refuses both, 2nd pass
	// refuses the first and delivers the second, 3rd delivers the first.
	// No pass may run before its backoff has passed on the fake clock.
	waits := []time.Duration{Backoff(1, time.Minute, 10*time.Minute, 0), Backoff(2, time.Minute, 10*time.Minute, 0)}
	for i, w := range waits {
		f.clk.WaitForTimer(t)
		if got := len(f.smtp.Messages()); got != i {
			t.Fatalf("before backoff %d: %d messages, want %d", i, got, i)
		}
		// Just short of the wait: nothing happens.
		f.clk.Advance(w - time.Millisecond)
		if got := f.smtp.Refused() + len(f.smtp.Messages()); got != []int{2, 4}[i] {
			t.Fatalf("a retry ran before its backoff: %d attempts", got)
		}
		f.clk.Advance(time.Millisecond)
		f.smtp.WaitFor(t, i+1, time.Minute)
	}
	msgs := f.smtp.WaitFor(t, 2, time.Minute)
	stop()
	if got := byGraph(f.smtp.Messages()); len(msgs) != 2 || got["graph-rr01"] != 1 || got["graph-rr02"] != 1 {
		t.Fatalf("emails per graph %v (%d messages)", got, len(msgs))
	}
	if f.smtp.Refused() != refusals {
		t.Errorf("relay refused %d attempts, want %d", f.smtp.Refused(), refusals)
	}
	for _, m := range msgs {
		id := m.Header.Get("Message-ID")
		if !strings.HasPrefix(id, "<outbox-") || !strings.HasSuffix(id, "@af>") {
			t.Errorf("Message-ID %q is not the entry's stable id", id)
		}
		if m.To[0] == "bo@example.org" && !strings.Contains(m.Subject, "failed") {
			t.Errorf("failed graph's subject %q", m.Subject)
		}
	}
	if st := stats(t, f.q); st != (queue.OutboxStats{Sent: 2}) {
		t.Errorf("outbox %+v", st)
	}
	for g, attempts := range map[string]int{"graph-rr01": 2, "graph-rr02": 1} {
		es, _ := f.q.OutboxEntries(context.Background(), g)
		if len(es) != 1 || es[0].Status != queue.OutboxSent || es[0].Attempts != attempts || !strings.Contains(es[0].LastError, "451") {
			t.Errorf("%s entry %+v", g, es)
		}
	}
	if a := s.Attempts(); a["sent"] != 2 || a["retry"] != 3 {
		t.Errorf("attempts %v", a)
	}
}

// TestRestartSendsPendingOnce: entries left pending by a stop (as by a
// crash: the queue file is closed and opened again) are sent by the next
// sender, once; a sender started after everything was sent sends nothing.
func TestRestartSendsPendingOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.resolve(t, "graph-rs01", "ana@example.org", false)
	if err := f.q.Close(); err != nil {
		t.Fatal(err)
	}
	f.open(t) // "restart"
	s := f.sender(t, Options{})
	if _, err := s.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.smtp.WaitFor(t, 1, time.Minute)
	if err := f.q.Close(); err != nil {
		t.Fatal(err)
	}
	f.open(t) // restart after the send
	s = f.sender(t, Options{})
	next, err := s.Pass(context.Background())
	if err != nil || !next.IsZero() {
		t.Fatalf("pass after restart: next %v err %v", next, err)
	}
	if n := len(f.smtp.Messages()); n != 1 {
		t.Errorf("%d emails, want 1", n)
	}
	// A new resolution after the restart wakes the running sender at
	// once (no timer, no poll) and is sent alone.
	stop := run(s)
	defer stop()
	f.resolve(t, "graph-rs02", "ana@example.org", false)
	f.smtp.WaitFor(t, 2, time.Minute)
	stop()
	if got := byGraph(f.smtp.Messages()); got["graph-rs01"] != 1 || got["graph-rs02"] != 1 || len(got) != 2 {
		t.Errorf("emails per graph %v", got)
	}
}

// TestSkippedAndFailed: a graph with no owner is done without an email; an
// owner that is no address is given up at once (no retry can fix it); an
// entry whose graph a rerun re-opened is skipped (the next resolution has
// its own); a relay that never accepts is given up after MaxAge, with
// the relay's error kept.
func TestSkippedAndFailed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, smtptest.RefuseFirst(1<<30))
	ctx := context.Background()
	f.resolve(t, "graph-sf01", "", false)
	f.resolve(t, "graph-sf02", "not an address", false)
	f.resolve(t, "graph-sf03", "ana@example.org", false)
	f.resolve(t, "graph-sf04", "bo@example.org", false)
	f.clk.Advance(time.Second)
	if _, err := f.q.Rerun(ctx, "graph-sf03-t"); err != nil {
		t.Fatal(err)
	}
	s := f.sender(t, Options{MinBackoff: time.Minute, MaxBackoff: time.Minute, MaxAge: 5 * time.Minute})
	// Passes one by one, so the test knows when each is over.
	for i := 0; i < 20 && stats(t, f.q).Pending > 0; i++ {
		if _, err := s.Pass(ctx); err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(time.Minute)
	}
	want := map[string]string{"graph-sf01": queue.OutboxSkipped, "graph-sf02": queue.OutboxFailed, "graph-sf03": queue.OutboxSkipped, "graph-sf04": queue.OutboxFailed}
	for g, status := range want {
		es, err := f.q.OutboxEntries(ctx, g)
		if err != nil || len(es) != 1 || es[0].Status != status {
			t.Errorf("%s: %+v %v, want %s", g, es, err, status)
		}
	}
	es, _ := f.q.OutboxEntries(ctx, "graph-sf04")
	if len(es) == 1 && (!strings.Contains(es[0].LastError, "451") || !strings.Contains(es[0].LastError, "given up")) {
		t.Errorf("given-up entry's error %q", es[0].LastError)
	}
	if n := len(f.smtp.Messages()); n != 0 {
		t.Errorf("%d emails", n)
	}
	if st := stats(t, f.q); st != (queue.OutboxStats{Skipped: 2, Failed: 2}) {
		t.Errorf("outbox %+v", st)
	}
}

// TestRecipientRefused: an owner the relay refuses for good (550 at RCPT)
// is given up after one attempt, and the other owners' emails still go.
func TestRecipientRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, smtptest.RejectRecipient("gone@example.org"))
	f.resolve(t, "graph-rf01", "gone@example.org", false)
	f.resolve(t, "graph-rf02", "ana@example.org", false)
	s := f.sender(t, Options{})
	next, err := s.Pass(context.Background())
	if err != nil || !next.IsZero() {
		t.Fatalf("pass: next %v err %v", next, err)
	}
	es, _ := f.q.OutboxEntries(context.Background(), "graph-rf01")
	if len(es) != 1 || es[0].Status != queue.OutboxFailed || es[0].Attempts != 0 || !strings.Contains(es[0].LastError, "550") {
		t.Errorf("refused owner's entry %+v", es)
	}
	if msgs := f.smtp.Messages(); len(msgs) != 1 || msgs[0].To[0] != "ana@example.org" {
		t.Errorf("messages %+v", msgs)
	}
	if st := stats(t, f.q); st != (queue.OutboxStats{Sent: 1, Failed: 1}) {
		t.Errorf("outbox %+v", st)
	}
}

// TestMessageIDStable: the Message-ID is a function of the entry, so a
// resend after a crash carries the one the first send did.
func TestMessageIDStable(t *testing.T) {
	t.Parallel()
	a, b := messageID("graph-1@5"), messageID("graph-1@5")
	if a != b || a == messageID("graph-1@6") {
		t.Errorf("ids %s %s %s", a, b, messageID("graph-1@6"))
	}
}

// TestLateAlert: a late run's alert entry is emailed once, as its own
// "is late" message to the owner, and one whose run completed before the
// sender got to it is skipped.
func TestLateAlert(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	task := taskdef.Task{
		GraphID: "late-run-graph", Created: f.clk.Now(), Deadline: f.clk.Now().Add(time.Hour),
		Metadata: taskdef.Metadata{Name: "daily@20131011", Owner: "analyst@example.org"},
		Payload:  taskdef.Payload{Kind: taskdef.KindReducer, Image: "af/example:1", MaxRunTime: 60},
	}
	g := taskdef.Graph{GraphID: "late-run-graph", Name: "daily@20131011", Owner: "analyst@example.org", Tasks: []taskdef.GraphTask{{TaskID: "late-run-graph-t", Task: task}}}
	if _, err := f.q.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	due := f.clk.Now()
	for range 2 { // written twice (a restart between alert and record): one entry
		if err := f.q.OutboxAlert(ctx, "late-run-graph", queue.AlertLate, due); err != nil {
			t.Fatal(err)
		}
	}
	f.resolve(t, "done-run-graph", "analyst@example.org", false)
	if err := f.q.OutboxAlert(ctx, "done-run-graph", queue.AlertLate, due.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	s := f.sender(t, Options{})
	stop := run(s)
	msgs := f.smtp.WaitFor(t, 2, time.Minute) // the late alert and done-run-graph's own email
	stop()
	var late []smtptest.Message
	for _, m := range msgs {
		if strings.HasSuffix(m.Subject, "is late") {
			late = append(late, m)
		}
	}
	if len(late) != 1 || late[0].Subject != "[af] daily@20131011 is late" || !strings.Contains(late[0].Text, "late-run-graph") {
		t.Fatalf("late alerts %+v; want one for daily@20131011", late)
	}
	if st := stats(t, f.q); st.Sent != 2 || st.Skipped != 1 || st.Pending != 0 {
		t.Errorf("outbox %+v; want 2 sent (the alert, the completed graph's email) and the completed run's alert skipped", st)
	}
}
