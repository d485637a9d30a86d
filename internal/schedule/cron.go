// Package schedule is the arithmetic of recurring analyses: a schedule's
// cron expression in its time zone, the ticks it makes, the target each
// run processes (the start of its cron interval, as Airflow defines a
// run's logical date), which runs are due after a pause or an outage, and
// the rendering of a templated filter for a target.
//
// Cron expressions are parsed by github.com/robfig/cron/v3 (its standard
// 5-field parser, with the @hourly/@daily/@weekly/@monthly/@yearly
// descriptors); the package holds no state and reads no clock: every
// function is given the times it works on, so the server's scheduler and
// the tests decide what "now" is.
package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// parser accepts the standard 5 fields (minute hour day-of-month month
// day-of-week) and the @ descriptors; seconds and CRON_TZ prefixes are
// refused so that a schedule's time zone has one home, Cron.Location.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ErrBadCron is wrapped by every error Parse returns for the expression.
var ErrBadCron = errors.New("bad cron expression")

// Cron is a parsed cron expression in a time zone.
type Cron struct {
	expr  string
	loc   *time.Location
	sched cron.Schedule
}

// Parse reads a standard 5-field cron expression ("5 16 * * *") or a
// descriptor ("@daily") to be evaluated in the IANA time zone tz ("" is
// UTC).
func Parse(expr, tz string) (*Cron, error) {
	expr = strings.TrimSpace(expr)
	if strings.HasPrefix(expr, "CRON_TZ=") || strings.HasPrefix(expr, "TZ=") {
		return nil, fmt.Errorf("%w %q: give the time zone with --timezone, not in the expression", ErrBadCron, expr)
	}
	if strings.HasPrefix(expr, "@every") {
		return nil, fmt.Errorf("%w %q: @every has no calendar interval to take a target from; write 5 cron fields, e.g. \"0 * * * *\" for hourly", ErrBadCron, expr)
	}
	if n := len(strings.Fields(expr)); !strings.HasPrefix(expr, "@") && n != 5 {
		return nil, fmt.Errorf("%w %q: it has %d field(s); write the 5 fields minute hour day-of-month month day-of-week, e.g. \"5 16 * * *\" for 16:05 every day", ErrBadCron, expr, n)
	}
	loc := time.UTC
	if tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil {
			return nil, fmt.Errorf("time zone %q: %w (give an IANA name such as Europe/Berlin or America/Los_Angeles)", tz, err)
		}
		loc = l
	}
	s, err := parser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v (5 fields: minute hour day-of-month month day-of-week)", ErrBadCron, expr, err)
	}
	c := &Cron{expr: expr, loc: loc, sched: s}
	// An expression that never fires (Feb 30th) would make every search
	// below run to its bound; refuse it here instead.
	probe := time.Date(2000, 1, 1, 0, 0, 0, 0, loc)
	if c.Next(probe).IsZero() {
		return nil, fmt.Errorf("%w %q: it never fires; check the day-of-month and month fields", ErrBadCron, expr)
	}
	return c, nil
}

// String is the expression as given.
func (c *Cron) String() string { return c.expr }

// Location is the time zone the expression is evaluated in.
func (c *Cron) Location() *time.Location { return c.loc }

// Next is the first tick strictly after t (the zero time if none within
// robfig/cron's five-year search).
//
// Ticks are wall-clock times in the schedule's zone, and each fires once:
// a wall-clock time that occurs twice (the hour repeated when summer time
// ends) fires at its first occurrence only, and one that does not occur
// (the hour skipped when it begins) fires at the instant the clock jumps,
// as Vixie cron runs the jobs of a skipped hour. So a daily schedule makes
// exactly one run per calendar day, and no target date is skipped or made
// twice. robfig/cron evaluated in the zone itself would skip the day or
// fire twice; it is evaluated here on wall-clock times written as UTC,
// where every time occurs once, and mapped back by instant.
func (c *Cron) Next(t time.Time) time.Time {
	t = t.In(c.loc)
	w := wall(t)
	// Bounded: inside a repeated hour every wall tick up to its end is
	// already past (at most 60 for a every-minute schedule).
	for range 10000 {
		w = c.sched.Next(w)
		if w.IsZero() {
			return w
		}
		if inst := c.instant(w); inst.After(t) {
			return inst
		}
	}
	return time.Time{}
}

// wall is t's wall-clock reading in its own zone, written as UTC.
func wall(t time.Time) time.Time {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	return time.Date(y, mo, d, h, mi, s, t.Nanosecond(), time.UTC)
}

// instant is the first instant whose wall clock in the schedule's zone
// reads w, or, when w falls in a gap the zone skips, the instant the gap
// ends.
func (c *Cron) instant(w time.Time) time.Time {
	var first, earliest time.Time
	for _, near := range []time.Duration{-26 * time.Hour, 0, 26 * time.Hour} {
		_, off := w.Add(near).In(c.loc).Zone()
		inst := w.Add(-time.Duration(off) * time.Second).In(c.loc)
		if earliest.IsZero() || inst.Before(earliest) {
			earliest = inst
		}
		if wall(inst).Equal(w) && (first.IsZero() || inst.Before(first)) {
			first = inst
		}
	}
	if !first.IsZero() {
		return first
	}
	// In a gap: the earliest candidate reads a time before the jump, in
	// the zone that the jump ends.
	_, end := earliest.ZoneBounds()
	if end.IsZero() || !end.After(earliest) {
		return earliest
	}
	return end.In(c.loc)
}

// Prev is the last tick strictly before t. robfig/cron only searches
// forward, so Prev widens a window back from t until a tick falls in it
// and then walks forward to the last one; the zero time if there is none
// within ten years.
func (c *Cron) Prev(t time.Time) time.Time {
	t = t.In(c.loc)
	for window := time.Hour; window <= 10*366*24*time.Hour; window *= 2 {
		tick := c.Next(t.Add(-window))
		if tick.IsZero() || !tick.Before(t) {
			continue
		}
		for {
			n := c.Next(tick)
			if n.IsZero() || !n.Before(t) {
				return tick
			}
			tick = n
		}
	}
	return time.Time{}
}
