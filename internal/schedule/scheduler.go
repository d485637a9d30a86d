package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Clock is the scheduler's time: the wall clock in af serve, a fake one in
// tests (internal/clocktest).
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// GraphState is what the scheduler needs to know of a run's graph.
type GraphState struct {
	// Ended: the graph is done, failed, canceled or expired.
	Ended bool
	// Completed: it ended done.
	Completed bool
}

// Launcher makes and follows runs' graphs (af serve: render the template,
// query the index, mint and seal credentials, post the graph).
type Launcher interface {
	// Launch creates the graph run.GraphID for a run of s. A graph of
	// that id existing already is success: a launch is repeated after a
	// restart. An error wrapping a *Refusal is the run's own fault (its
	// filter renders invalid or selects nothing), recorded and not
	// retried; any other error is the machine's, and the run is launched
	// again on the next pass.
	Launch(ctx context.Context, s Schedule, run RunRecord) error
	// Graphs reports the state of each graph; a graph it does not know is
	// absent from the map.
	Graphs(ctx context.Context, graphIDs []string) (map[string]GraphState, error)
	// Publish copies a completed run's result to its stable name
	// (schedules/NAME/TARGET/result.txt in the artifact bucket). It is
	// called until it succeeds once; a copy made twice is the same copy.
	Publish(ctx context.Context, s Schedule, run RunRecord) error
}

// Alerter tells a schedule's owner a run is late. Late must send at most
// one alert per (schedule, target, kind) however often it is called (af
// serve writes an outbox entry keyed by them), since a restart between
// the alert and the record of it calls it again.
type Alerter interface {
	Late(ctx context.Context, s Schedule, run RunRecord) error
}

// Refusal is a run the launcher will not make, for a reason of the run's
// own; Msg says why and how to fix the schedule.
type Refusal struct{ Msg string }

func (r *Refusal) Error() string { return r.Msg }

// DefaultCatchupLimit bounds the runs one pass makes for one schedule
// with catch-up (a schedule down for a year makes them a thousand at a
// time, oldest first).
const DefaultCatchupLimit = 1000

// Scheduler makes schedules' runs as they fall due.
type Scheduler struct {
	Store    *Store
	Launcher Launcher
	Alerter  Alerter
	Clock    Clock
	Logger   *slog.Logger
	// CatchupLimit is DefaultCatchupLimit when zero.
	CatchupLimit int
	// Parallel is how many schedules a pass deals with at once
	// (DefaultParallel when zero).
	Parallel int
	// MaxWait bounds the wait between passes (default a minute): a pass
	// also follows the runs' graphs and their late alerts.
	MaxWait time.Duration
	// Wake, when set, returns a channel closed when some graph may have
	// ended (af serve: the queue's outbox signal); the next pass comes
	// then, at most once a second.
	Wake func() <-chan struct{}

	kick chan struct{}
}

// Kick asks for a pass now (a schedule was created, resumed or
// backfilled).
func (sc *Scheduler) Kick() {
	sc.init()
	select {
	case sc.kick <- struct{}{}:
	default:
	}
}

func (sc *Scheduler) init() {
	if sc.kick == nil {
		sc.kick = make(chan struct{}, 1)
	}
}

func (sc *Scheduler) logger() *slog.Logger {
	if sc.Logger != nil {
		return sc.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Run passes until ctx ends: at the next due tick of any schedule, at the
// next late alert, on a Kick, and at least every MaxWait while there is a
// schedule.
func (sc *Scheduler) Run(ctx context.Context) {
	sc.init()
	for {
		next, n, err := sc.pass(ctx)
		if err != nil && ctx.Err() == nil {
			sc.logger().Warn("schedule pass", "err", err)
		}
		wait := sc.MaxWait
		if wait <= 0 {
			wait = time.Minute
		}
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(sc.Clock.Now()), 0))
		}
		// With no schedule there is nothing to wake up for but a Kick
		// (a schedule created): an idle af serve arms no timer and does
		// not follow graphs ending.
		var timer <-chan time.Time
		var wake <-chan struct{}
		if n > 0 || err != nil {
			timer = sc.Clock.After(wait)
			if sc.Wake != nil {
				wake = sc.Wake()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-sc.kick:
		case <-timer:
		case <-wake:
			// Many graphs may end in a burst; one pass serves them all.
			select {
			case <-ctx.Done():
				return
			case <-sc.Clock.After(time.Second):
			}
		}
	}
}

// Pass deals with every schedule once: launches runs left launching by a
// restart, follows launched runs' graphs, makes the runs that fell due
// (within max-active), starts queued backfill runs (within their
// parallel bound) and sends late alerts. It returns when the next pass is
// needed (the zero time if no schedule has a next tick). Errors of one
// schedule do not stop the others; they are joined.
func (sc *Scheduler) Pass(ctx context.Context) (time.Time, error) {
	next, _, err := sc.pass(ctx)
	return next, err
}

// pass is Pass, also saying how many schedules there are.
func (sc *Scheduler) pass(ctx context.Context) (time.Time, int, error) {
	list, err := sc.Store.List()
	if err != nil {
		return time.Time{}, 0, err
	}
	// Schedules are independent, and a launch waits mostly on STS and
	// the queue's commit: many at once keep a minute's hundred runs
	// within a second (BenchmarkScheduledRuns100).
	workers := sc.Parallel
	if workers <= 0 {
		workers = DefaultParallel
	}
	var (
		mu   sync.Mutex
		next time.Time
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, workers)
	)
	for _, s := range list {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			n, err := sc.passOne(ctx, s)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("schedule %s: %w", s.Name, err))
			}
			if !n.IsZero() && (next.IsZero() || n.Before(next)) {
				next = n
			}
		}()
	}
	wg.Wait()
	return next, len(list), errors.Join(errs...)
}

// DefaultParallel is how many schedules one pass deals with at once.
const DefaultParallel = 16

func (sc *Scheduler) passOne(ctx context.Context, s Schedule) (time.Time, error) {
	c, err := Parse(s.Cron, s.Timezone)
	if err != nil {
		return time.Time{}, err
	}
	now := sc.Clock.Now()
	runs, err := sc.Store.Runs(s.Name)
	if err != nil {
		return time.Time{}, err
	}
	var errs []error

	// Follow the launched runs' graphs.
	var ids []string
	for _, r := range runs {
		if r.State == RunLaunched && !r.Done {
			ids = append(ids, r.GraphID)
		}
	}
	states := map[string]GraphState{}
	if len(ids) > 0 {
		if states, err = sc.Launcher.Graphs(ctx, ids); err != nil {
			// Without states nothing is known to have ended: max-active
			// counts them all active, which errs towards fewer runs.
			errs = append(errs, fmt.Errorf("graph states: %w", err))
			states = map[string]GraphState{}
		}
	}
	active := map[Kind]int{}
	for i := range runs {
		r := &runs[i]
		if st, ok := states[r.GraphID]; ok && st.Ended && !r.Done {
			r.Done, r.Completed = true, st.Completed
			if err := sc.Store.setRun(s.Name, r.Target, r.Kind, func(x *RunRecord) { x.Done, x.Completed = true, st.Completed }); err != nil {
				errs = append(errs, err)
			}
		}
		if (r.State == RunLaunched && !r.Done) || r.State == RunLaunching {
			active[r.Kind]++
		}
		if r.Done && r.Completed && r.Published.IsZero() {
			if err := sc.Launcher.Publish(ctx, s, *r); err != nil {
				errs = append(errs, fmt.Errorf("publish the result of %s: %w", r.Target.Format(time.RFC3339), err))
			} else if err := sc.Store.setRun(s.Name, r.Target, r.Kind, func(x *RunRecord) { x.Published = now }); err != nil {
				errs = append(errs, err)
			}
		}
	}

	// Make the runs that fell due.
	var launch []RunRecord
	if s.State == Active {
		limit := sc.CatchupLimit
		if limit <= 0 {
			limit = DefaultCatchupLimit
		}
		due, _ := c.Due(s.LastTick, now, s.Catchup, limit)
		if s.MaxActive > 0 {
			room := max(s.MaxActive-active[KindScheduled], 0)
			if len(due) > room {
				due = due[:room]
			}
		}
		if len(due) > 0 {
			recs := make([]RunRecord, len(due))
			for i, d := range due {
				recs[i] = RunRecord{
					Schedule: s.Name, Kind: KindScheduled, Target: d.Target, Due: d.Due,
					GraphID: GraphID(s.Name, s.Generation, d.Target, KindScheduled), State: RunLaunching, Created: now,
				}
			}
			taken, err := sc.Store.take(s.Name, s.Generation, recs, due[len(due)-1].Due)
			if err != nil {
				return time.Time{}, err
			}
			launch = append(launch, taken...)
		}
	}

	// Start queued backfill runs within their bound, oldest first.
	for _, r := range runs {
		if r.State != RunQueued {
			continue
		}
		if r.Parallel > 0 && active[KindBackfill] >= r.Parallel {
			break
		}
		r.State = RunLaunching
		if err := sc.Store.setRun(s.Name, r.Target, r.Kind, func(x *RunRecord) { x.State = RunLaunching }); err != nil {
			errs = append(errs, err)
			continue
		}
		active[KindBackfill]++
		launch = append(launch, r)
	}
	// Runs a restart left launching.
	for _, r := range runs {
		if r.State == RunLaunching {
			launch = append(launch, r)
		}
	}
	for _, r := range launch {
		if err := sc.launch(ctx, s, r); err != nil {
			errs = append(errs, err)
		}
	}

	// Late alerts.
	var nextAlert time.Time
	if s.ExpectWithin > 0 && sc.Alerter != nil {
		runs, err := sc.Store.Runs(s.Name)
		if err != nil {
			errs = append(errs, err)
		}
		for _, r := range runs {
			if r.Kind != KindScheduled || !r.Alerted.IsZero() || r.State == RunRefused {
				continue
			}
			if r.Done {
				// Ended in time; one that failed was told by its
				// graph's own email.
				continue
			}
			late := r.Due.Add(s.ExpectWithin)
			if now.Before(late) {
				if nextAlert.IsZero() || late.Before(nextAlert) {
					nextAlert = late
				}
				continue
			}
			if err := sc.Alerter.Late(ctx, s, r); err != nil {
				errs = append(errs, fmt.Errorf("late alert for %s: %w", r.Target.Format(time.DateOnly), err))
				continue
			}
			if err := sc.Store.setRun(s.Name, r.Target, r.Kind, func(x *RunRecord) { x.Alerted = now }); err != nil {
				errs = append(errs, err)
			}
		}
	}

	next := time.Time{}
	if s.State == Active {
		s2, err := sc.Store.Get(s.Name)
		if err == nil {
			next = c.Next(s2.LastTick)
		}
	}
	if !nextAlert.IsZero() && (next.IsZero() || nextAlert.Before(next)) {
		next = nextAlert
	}
	return next, errors.Join(errs...)
}

func (sc *Scheduler) launch(ctx context.Context, s Schedule, r RunRecord) error {
	err := sc.Launcher.Launch(ctx, s, r)
	var ref *Refusal
	switch {
	case err == nil:
		sc.logger().Info("schedule run launched", "schedule", s.Name, "target", r.Target, "kind", r.Kind, "graph", r.GraphID)
		return sc.Store.setRun(s.Name, r.Target, r.Kind, func(x *RunRecord) { x.State = RunLaunched; x.Message = "" })
	case errors.As(err, &ref):
		sc.logger().Warn("schedule run refused", "schedule", s.Name, "target", r.Target, "err", err)
		return sc.Store.setRun(s.Name, r.Target, r.Kind, func(x *RunRecord) { x.State = RunRefused; x.Message = ref.Msg })
	default:
		// The machine's fault: stay launching, the next pass tries again.
		_ = sc.Store.setRun(s.Name, r.Target, r.Kind, func(x *RunRecord) { x.Message = "launch will be retried: " + err.Error() })
		return fmt.Errorf("launch the run for %s: %w", r.Target.Format(time.RFC3339), err)
	}
}

// Backfill records one run per target of the schedule from from to to
// (both inclusive, as target times: from the first tick at or after from
// to the last at or before to), queued behind its own scheduled runs,
// with at most parallel of them active at once (0: no bound). It returns
// the runs recorded; targets recorded already are left alone. limit
// bounds how many one backfill may make.
func (sc *Scheduler) Backfill(name string, from, to time.Time, parallel, limit int) ([]RunRecord, error) {
	s, err := sc.Store.Get(name)
	if err != nil {
		return nil, err
	}
	c, err := Parse(s.Cron, s.Timezone)
	if err != nil {
		return nil, err
	}
	if to.Before(from) {
		return nil, fmt.Errorf("%w: --from %s is after --to %s", ErrInvalid, from.Format(time.DateOnly), to.Format(time.DateOnly))
	}
	targets, trunc := c.Targets(from, to, limit)
	if trunc {
		return nil, fmt.Errorf("%w: %s to %s is more than %d runs; backfill a shorter range at a time", ErrInvalid, from.Format(time.DateOnly), to.Format(time.DateOnly), limit)
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("%w: no tick of %q falls between %s and %s", ErrInvalid, s.Cron, from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	now := sc.Clock.Now()
	recs := make([]RunRecord, len(targets))
	for i, t := range targets {
		r := c.RunFor(t)
		recs[i] = RunRecord{
			Schedule: name, Kind: KindBackfill, Target: r.Target, Due: r.Due,
			GraphID: GraphID(name, s.Generation, r.Target, KindBackfill), State: RunQueued, Created: now, Parallel: parallel,
		}
	}
	taken, err := sc.Store.take(name, s.Generation, recs, time.Time{})
	if err == nil {
		sc.Kick()
	}
	return taken, err
}
