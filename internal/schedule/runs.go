package schedule

import (
	"fmt"
	"time"
)

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

// SubDaily reports whether the schedule ticks more often than daily, so
// its targets are named by date and hour.
func (c *Cron) SubDaily() bool {
	// Two consecutive gaps from a fixed point: a schedule such as "0 0,12
	// * * *" has gaps of 12 h whichever tick it starts from.
	t0 := c.Next(time.Date(2001, 1, 1, 0, 0, 0, 0, c.loc))
	t1 := c.Next(t0)
	t2 := c.Next(t1)
	return !t1.IsZero() && (t1.Sub(t0) < 23*time.Hour || (!t2.IsZero() && t2.Sub(t1) < 23*time.Hour))
}

// Label names a target as runs and results are named: its date
// (20131011) in the schedule's zone, or date and hour (2013101116) for a
// schedule that ticks more often than daily.
func (c *Cron) Label(target time.Time) string {
	if c.SubDaily() {
		return target.In(c.loc).Format("2006010215")
	}
	return target.In(c.loc).Format("20060102")
}

// ParseDate reads a date as af backfill and af result take it: 20131011,
// 2013-10-11, or with an hour, 2013101116, in the schedule's zone.
func (c *Cron) ParseDate(s string) (time.Time, error) {
	for _, layout := range []string{"20060102", "2006-01-02", "2006010215", "2006-01-02T15"} {
		if t, err := time.ParseInLocation(layout, s, c.loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("date %q: write it as 20131011 or 2013-10-11 (2013101116 for an hour)", s)
}
