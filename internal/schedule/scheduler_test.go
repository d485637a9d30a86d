package schedule

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/af-project/af/internal/clocktest"
)

// queueDouble stands for af serve's queue behind the Launcher: graphs
// created by id (a second create of an id is the duplicate the queue
// refuses, which Launch treats as success), their states set by the test.
type queueDouble struct {
	mu       sync.Mutex
	graphs   map[string]*GraphState
	order    []RunRecord
	failNext int // machine faults to return before succeeding
	refuse   map[string]string
	launched chan RunRecord
	alerts   []string
	// published lists the results copied to their stable names;
	// failPublish fails that many copies first.
	published   []string
	failPublish int
}

func newQueueDouble() *queueDouble {
	return &queueDouble{graphs: map[string]*GraphState{}, refuse: map[string]string{}, launched: make(chan RunRecord, 100)}
}

func (q *queueDouble) Launch(_ context.Context, s Schedule, r RunRecord) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.failNext > 0 {
		q.failNext--
		return errors.New("dial tcp 127.0.0.1:9000: connection refused")
	}
	if msg, ok := q.refuse[r.Target.Format("20060102")]; ok {
		return &Refusal{Msg: msg}
	}
	if _, ok := q.graphs[r.GraphID]; ok {
		return nil // the duplicate: created by an earlier attempt
	}
	q.graphs[r.GraphID] = &GraphState{}
	q.order = append(q.order, r)
	q.launched <- r
	return nil
}

func (q *queueDouble) Graphs(_ context.Context, ids []string) (map[string]GraphState, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := map[string]GraphState{}
	for _, id := range ids {
		if g, ok := q.graphs[id]; ok {
			out[id] = *g
		}
	}
	return out, nil
}

func (q *queueDouble) Publish(_ context.Context, s Schedule, r RunRecord) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.failPublish > 0 {
		q.failPublish--
		return errors.New("s3: connection reset")
	}
	q.published = append(q.published, s.Name+"@"+r.Target.Format("20060102"))
	return nil
}

func (q *queueDouble) Late(_ context.Context, s Schedule, r RunRecord) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.alerts = append(q.alerts, s.Name+"@"+r.Target.Format("20060102"))
	return nil
}

// end marks every graph of the given targets ended.
func (q *queueDouble) end(completed bool, graphIDs ...string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, id := range graphIDs {
		q.graphs[id] = &GraphState{Ended: true, Completed: completed}
	}
}

func (q *queueDouble) targets() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var s []string
	for _, r := range q.order {
		t := r.Target.Format("20060102")
		if r.Kind == KindBackfill {
			t = "b" + t
		}
		s = append(s, t)
	}
	return strings.Join(s, ",")
}

type harness struct {
	t     *testing.T
	path  string
	db    *bolt.DB
	clock *clocktest.Fake
	q     *queueDouble
	sc    *Scheduler
}

func newHarness(t *testing.T, start time.Time) *harness {
	t.Helper()
	h := &harness{t: t, path: filepath.Join(t.TempDir(), "queue.db"), clock: clocktest.New(start), q: newQueueDouble()}
	h.open()
	t.Cleanup(func() { h.db.Close() })
	return h
}

// open (re)opens the bbolt file and makes a new scheduler over it, as af
// serve does when it starts.
func (h *harness) open() {
	h.t.Helper()
	db, err := bolt.Open(h.path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		h.t.Fatal(err)
	}
	st, err := NewStore(db, h.clock.Now)
	if err != nil {
		h.t.Fatal(err)
	}
	h.db = db
	h.sc = &Scheduler{Store: st, Launcher: h.q, Alerter: h.q, Clock: h.clock}
}

// restart closes the file and opens it again.
func (h *harness) restart() {
	h.t.Helper()
	if err := h.db.Close(); err != nil {
		h.t.Fatal(err)
	}
	h.open()
}

func (h *harness) pass() {
	h.t.Helper()
	if _, err := h.sc.Pass(context.Background()); err != nil {
		h.t.Fatalf("pass: %v", err)
	}
}

func (h *harness) create(s Schedule) Schedule {
	h.t.Helper()
	if s.Owner == "" {
		s.Owner = "alice"
	}
	if s.Image == "" {
		s.Image = "af/os-count"
	}
	if s.Template == nil {
		s.Template = []byte(`{}`)
	}
	s, err := h.sc.Store.Create(s)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func (h *harness) want(want string) {
	h.t.Helper()
	if got := h.q.targets(); got != want {
		h.t.Fatalf("runs launched: %q, want %q", got, want)
	}
}

func (h *harness) graphsOf(name string) []string {
	h.t.Helper()
	runs, err := h.sc.Store.Runs(name)
	if err != nil {
		h.t.Fatal(err)
	}
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.GraphID)
	}
	return ids
}

func TestTicksAcrossDayBoundaryAndDST(t *testing.T) {
	t.Parallel()
	berlin := mustLoc(t, "Europe/Berlin")
	h := newHarness(t, time.Date(2026, 3, 27, 12, 0, 0, 0, berlin))
	h.create(Schedule{Name: "daily", Cron: "5 16 * * *", Timezone: "Europe/Berlin"})
	h.pass()
	h.want("")
	for range 4 {
		h.clock.Advance(24 * time.Hour)
		h.pass()
	}
	// Ticks on the 27th, 28th, 29th (summer time starts), 30th.
	h.want("20260326,20260327,20260328,20260329")
	// A restart in the middle: nothing is made twice, the next tick comes.
	h.restart()
	h.pass()
	h.want("20260326,20260327,20260328,20260329")
	h.clock.Advance(24 * time.Hour)
	h.pass()
	h.want("20260326,20260327,20260328,20260329,20260330")
}

func TestHourlyTargets(t *testing.T) {
	t.Parallel()
	h := newHarness(t, time.Date(2026, 12, 2, 22, 30, 0, 0, time.UTC))
	h.create(Schedule{Name: "hourly", Cron: "0 * * * *"})
	for range 3 {
		h.clock.Advance(time.Hour)
		h.pass()
	}
	runs, _ := h.sc.Store.Runs("hourly")
	var got []string
	for _, r := range runs {
		got = append(got, r.Target.Format("2006010215"))
	}
	if strings.Join(got, ",") != "2026120222,2026120223,2026120300" {
		t.Errorf("hourly targets %v, want 22h and 23h of the 2nd and 0h of the 3rd", got)
	}
}

func TestCatchupAfterDowntime(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		catchup bool
		want    string
	}{
		{true, "20131009,20131010,20131011,20131012"},
		{false, "20131012"},
	} {
		h := newHarness(t, time.Date(2013, 10, 10, 12, 0, 0, 0, time.UTC))
		h.create(Schedule{Name: "daily", Cron: "5 16 * * *", Catchup: tc.catchup})
		h.pass()
		h.db.Close()
		// af serve is down for four days.
		h.clock.Advance(4 * 24 * time.Hour)
		h.open()
		h.pass()
		h.want(tc.want)
	}
}

func TestPauseAndResume(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		catchup bool
		want    string
	}{
		{true, "20131010,20131011,20131012,20131013"},
		{false, "20131010,20131013"},
	} {
		h := newHarness(t, time.Date(2013, 10, 11, 12, 0, 0, 0, time.UTC))
		h.create(Schedule{Name: "daily", Cron: "5 16 * * *", Catchup: tc.catchup})
		h.clock.Advance(24 * time.Hour)
		h.pass()
		if _, err := h.sc.Store.SetState("daily", Paused); err != nil {
			t.Fatal(err)
		}
		if _, err := h.sc.Store.SetState("daily", Paused); !errors.Is(err, ErrState) {
			t.Errorf("pausing a paused schedule: %v, want ErrState", err)
		}
		for range 3 {
			h.clock.Advance(24 * time.Hour)
			h.pass()
		}
		h.want("20131010")
		h.restart() // paused survives a restart
		h.pass()
		h.want("20131010")
		if _, err := h.sc.Store.SetState("daily", Active); err != nil {
			t.Fatal(err)
		}
		h.pass()
		h.want(tc.want)
	}
}

func TestMaxActive(t *testing.T) {
	t.Parallel()
	h := newHarness(t, time.Date(2013, 10, 10, 12, 0, 0, 0, time.UTC))
	h.create(Schedule{Name: "daily", Cron: "5 16 * * *", Catchup: true, MaxActive: 2})
	h.clock.Advance(5 * 24 * time.Hour) // five runs due
	h.pass()
	h.want("20131009,20131010")
	h.pass()
	h.want("20131009,20131010")
	h.q.end(false, h.graphsOf("daily")[0]) // one ends (failed counts as ended)
	h.pass()
	h.want("20131009,20131010,20131011")
	h.restart()
	h.pass()
	h.want("20131009,20131010,20131011")
	h.q.end(true, h.graphsOf("daily")...)
	h.pass()
	h.want("20131009,20131010,20131011,20131012,20131013")
}

func TestLateAlertOncePerRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, time.Date(2013, 10, 11, 12, 0, 0, 0, time.UTC))
	h.create(Schedule{Name: "daily", Cron: "5 16 * * *", ExpectWithin: 6 * time.Hour})
	h.clock.Advance(5 * time.Hour) // 17:00, the run for the 10th is launched
	next, err := h.sc.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2013, 10, 11, 22, 5, 0, 0, time.UTC); !next.Equal(want) {
		t.Errorf("next pass %s, want the alert time %s", next, want)
	}
	h.clock.Advance(5 * time.Hour) // 22:00: not late yet
	h.pass()
	if len(h.q.alerts) != 0 {
		t.Fatalf("alerts before the run is late: %v", h.q.alerts)
	}
	h.clock.Advance(10 * time.Minute)
	h.pass()
	h.pass()
	h.restart()
	h.pass()
	if strings.Join(h.q.alerts, ",") != "daily@20131010" {
		t.Fatalf("alerts %v, want one for the 10th", h.q.alerts)
	}
	// The next run completes in time: no alert.
	h.clock.Advance(18*time.Hour + 10*time.Minute)
	h.pass()
	ids := h.graphsOf("daily")
	h.q.end(true, ids[len(ids)-1])
	h.clock.Advance(7 * time.Hour)
	h.pass()
	if len(h.q.alerts) != 1 {
		t.Fatalf("alerts %v, want only the one for the 10th", h.q.alerts)
	}
}

func TestRestartMidLaunch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, time.Date(2013, 10, 11, 12, 0, 0, 0, time.UTC))
	h.create(Schedule{Name: "daily", Cron: "5 16 * * *"})
	h.q.failNext = 1 // the queue is down when the tick comes
	h.clock.Advance(5 * time.Hour)
	if _, err := h.sc.Pass(context.Background()); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("pass with the queue down: %v, want its error", err)
	}
	runs, _ := h.sc.Store.Runs("daily")
	if len(runs) != 1 || runs[0].State != RunLaunching || !strings.Contains(runs[0].Message, "retried") {
		t.Fatalf("runs after a failed launch: %+v, want one launching, to be retried", runs)
	}
	h.restart()
	h.pass()
	h.want("20131010")
	// A launch that reached the queue but whose record did not (killed
	// between the two): the next start launches the same graph id again,
	// which the queue has already.
	if err := h.sc.Store.setRun("daily", runs[0].Target, KindScheduled, func(r *RunRecord) { r.State = RunLaunching }); err != nil {
		t.Fatal(err)
	}
	h.restart()
	h.pass()
	h.want("20131010")
	h.q.mu.Lock()
	n := len(h.q.graphs)
	h.q.mu.Unlock()
	if n != 1 {
		t.Errorf("%d graphs on the queue, want 1", n)
	}
	if runs, _ := h.sc.Store.Runs("daily"); runs[0].State != RunLaunched {
		t.Errorf("run state %s, want launched", runs[0].State)
	}
}

func TestRefusedRunIsNotRetried(t *testing.T) {
	t.Parallel()
	h := newHarness(t, time.Date(2013, 10, 11, 12, 0, 0, 0, time.UTC))
	h.create(Schedule{Name: "daily", Cron: "5 16 * * *"})
	h.q.refuse["20131010"] = "the filter selects no files for 20131010"
	h.clock.Advance(5 * time.Hour)
	h.pass()
	h.pass()
	runs, _ := h.sc.Store.Runs("daily")
	if len(runs) != 1 || runs[0].State != RunRefused || !strings.Contains(runs[0].Message, "no files") {
		t.Fatalf("runs %+v, want one refused with the launcher's message", runs)
	}
	h.want("")
}

func TestBackfill(t *testing.T) {
	t.Parallel()
	h := newHarness(t, time.Date(2013, 10, 20, 12, 0, 0, 0, time.UTC))
	h.create(Schedule{Name: "daily", Cron: "5 16 * * *"})
	day := func(d int) time.Time { return time.Date(2013, 10, d, 0, 0, 0, 0, time.UTC) }
	runs, err := h.sc.Backfill("daily", day(11), day(13).Add(24*time.Hour-time.Second), 1, 100)
	if err != nil || len(runs) != 3 {
		t.Fatalf("Backfill = %d runs, %v; want 3", len(runs), err)
	}
	h.pass()
	h.want("b20131011")
	ids := h.graphsOf("daily")
	h.q.end(true, ids[0])
	h.clock.Advance(5 * time.Hour) // the schedule's own run for the 19th falls due too
	h.pass()
	h.want("b20131011,20131019,b20131012")
	// Asked again: nothing new.
	if again, err := h.sc.Backfill("daily", day(11), day(13), 1, 100); err != nil || len(again) != 0 {
		t.Errorf("second Backfill = %v, %v; want nothing new", again, err)
	}
	if _, err := h.sc.Backfill("daily", day(13), day(11), 1, 100); !errors.Is(err, ErrInvalid) {
		t.Errorf("backfill with from after to: %v", err)
	}
	if _, err := h.sc.Backfill("daily", day(1), day(28), 1, 10); err == nil || !strings.Contains(err.Error(), "shorter range") {
		t.Errorf("backfill over the limit: %v", err)
	}
	if _, err := h.sc.Backfill("nope", day(1), day(2), 1, 10); !errors.Is(err, ErrNotFound) {
		t.Errorf("backfill of an unknown schedule: %v", err)
	}
	// The schedule's run and the backfill's get different graph ids for
	// different targets, and a backfill of a date the schedule ran has
	// its own graph too.
	seen := map[string]bool{}
	for _, id := range h.graphsOf("daily") {
		if seen[id] {
			t.Errorf("graph id %s used twice", id)
		}
		seen[id] = true
	}
}

// TestRunLoop drives the scheduler's own loop with the fake clock: it
// waits on the clock until the next tick and launches then.
func TestRunLoop(t *testing.T) {
	t.Parallel()
	h := newHarness(t, time.Date(2013, 10, 11, 16, 0, 0, 0, time.UTC))
	h.create(Schedule{Name: "daily", Cron: "5 16 * * *"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.sc.Run(ctx); close(done) }()
	h.clock.WaitForTimer(t)
	h.clock.Advance(5 * time.Minute)
	select {
	case r := <-h.q.launched:
		if r.Target.Format("20060102") != "20131010" {
			t.Errorf("launched %s, want the 10th", r.Target)
		}
	case <-time.After(time.Minute):
		t.Fatal("no run launched after the tick")
	}
	cancel()
	<-done
}

func TestStoreRefuses(t *testing.T) {
	t.Parallel()
	h := newHarness(t, time.Date(2013, 10, 11, 16, 0, 0, 0, time.UTC))
	for _, tc := range []struct {
		s    Schedule
		want string
	}{
		{Schedule{Name: "Bad Name", Cron: "@daily", Image: "x"}, "name"},
		{Schedule{Name: "a", Cron: "5 16 * *", Image: "x"}, "--cron"},
		{Schedule{Name: "a", Cron: "@daily"}, "no image"},
		{Schedule{Name: "a", Cron: "@daily", Image: "x", MaxActive: -1}, "--max-active"},
		{Schedule{Name: "a", Cron: "@daily", Image: "x", Timezone: "Nowhere/Else"}, "time zone"},
	} {
		if _, err := h.sc.Store.Create(tc.s); err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Create(%+v) = %v, want ErrInvalid naming %q", tc.s, err, tc.want)
		}
	}
	h.create(Schedule{Name: "a", Cron: "@daily"})
	if _, err := h.sc.Store.Create(Schedule{Name: "a", Cron: "@daily", Image: "x"}); !errors.Is(err, ErrExists) {
		t.Errorf("second create: %v, want ErrExists", err)
	}
	s, err := h.sc.Store.Update("a", func(s *Schedule) error { s.Cron = "0 3 * * *"; s.Owner = "mallory"; return nil })
	if err != nil || s.Cron != "0 3 * * *" || s.Owner != "alice" {
		t.Errorf("Update = %+v, %v; want the new cron and the owner kept", s, err)
	}
	if err := h.sc.Store.Delete("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sc.Store.Get("a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
}

func TestCompletedRunsArePublishedOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, time.Date(2013, 10, 11, 12, 0, 0, 0, time.UTC))
	h.create(Schedule{Name: "daily", Cron: "5 16 * * *"})
	h.clock.Advance(5 * time.Hour)
	h.pass()
	h.clock.Advance(24 * time.Hour)
	h.pass()
	ids := h.graphsOf("daily")
	h.q.end(true, ids[0])  // the 10th completes
	h.q.end(false, ids[1]) // the 11th fails: nothing to publish
	h.q.failPublish = 1    // S3 is down on the first try
	if _, err := h.sc.Pass(context.Background()); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("pass with S3 down: %v", err)
	}
	h.restart()
	h.pass()
	h.pass()
	if got := strings.Join(h.q.published, ","); got != "daily@20131010" {
		t.Errorf("published %q, want the 10th once", got)
	}
}
