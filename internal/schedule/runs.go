package schedule

import "time"

// Run is one run of a schedule: it falls due at Due, a tick of the
// schedule's cron expression, and processes the interval [Target, Due)
// that ends there. Target is the run's logical date, as Airflow defines
// it: the daily run at 16:05 on the 12th processes the 11th.
type Run struct {
	Target time.Time
	Due    time.Time
}

// RunAt is the run that falls due at tick.
func (c *Cron) RunAt(tick time.Time) Run {
	return Run{Target: c.Prev(tick), Due: tick.In(c.loc)}
}

// RunFor is the run whose target is target (a tick of the schedule): the
// run a backfill makes for that date.
func (c *Cron) RunFor(target time.Time) Run {
	return Run{Target: target.In(c.loc), Due: c.Next(target)}
}

// Due lists the runs that fell due in (after, now], oldest first. after is
// the last tick the scheduler has dealt with (or the time the schedule was
// created or resumed). With catchup every missed run is made, up to limit
// (the oldest first; truncated reports that more fell due, and the caller
// moves after only to the last run returned); without it only the newest
// run is made and the missed ones are skipped, as Airflow's catchup=False
// does.
func (c *Cron) Due(after, now time.Time, catchup bool, limit int) (runs []Run, truncated bool) {
	if limit <= 0 {
		limit = 1
	}
	for tick := c.Next(after); !tick.IsZero() && !tick.After(now); tick = c.Next(tick) {
		if !catchup {
			runs = append(runs[:0], c.RunAt(tick))
			continue
		}
		if len(runs) == limit {
			return runs, true
		}
		runs = append(runs, c.RunAt(tick))
	}
	return runs, false
}

// Targets lists the targets of a backfill from the tick at or after from
// to the last tick at or before to, oldest first, at most limit of them
// (truncated reports more).
func (c *Cron) Targets(from, to time.Time, limit int) (targets []time.Time, truncated bool) {
	for tick := c.Next(from.Add(-time.Nanosecond)); !tick.IsZero() && !tick.After(to); tick = c.Next(tick) {
		if len(targets) == limit {
			return targets, true
		}
		targets = append(targets, tick)
	}
	return targets, false
}
