package schedule

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/layout"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return l
}

func mustParse(t *testing.T, expr, tz string) *Cron {
	t.Helper()
	c, err := Parse(expr, tz)
	if err != nil {
		t.Fatalf("Parse(%q, %q): %v", expr, tz, err)
	}
	return c
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		expr, tz, want string
	}{
		{"5 16 * *", "", "it has 4 field(s)"},
		{"0 5 16 * * *", "", "it has 6 field(s)"},
		{"61 * * * *", "", "5 fields: minute hour"},
		{"CRON_TZ=UTC 5 16 * * *", "", "--timezone"},
		{"@every 1h", "", "@every"},
		{"0 0 30 2 *", "", "never fires"},
		{"5 16 * * *", "Mars/Olympus", "IANA name"},
		{"", "", "it has 0 field(s)"},
	} {
		_, err := Parse(tc.expr, tc.tz)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q, %q) = %v, want an error containing %q", tc.expr, tc.tz, err, tc.want)
		}
		if tc.tz == "" && !errors.Is(err, ErrBadCron) {
			t.Errorf("Parse(%q): %v does not wrap ErrBadCron", tc.expr, err)
		}
	}
}

// TestRunTargets checks a run's target is the start of its cron interval,
// across a day boundary, a month boundary, descriptors and both DST
// changes (Europe/Berlin: 2026-03-29 02:00 → 03:00, 2026-10-25 03:00 →
// 02:00; America/New_York: 2026-03-08 and 2026-11-01).
func TestRunTargets(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, expr, tz string
		after          string // wall clock in tz
		wantDue        []string
		wantTarget     []string // "20060102 15:04" in tz
	}{
		{
			name: "daily at 16:05 on the 12th processes the 11th", expr: "5 16 * * *",
			after:      "2013-10-12 12:00",
			wantDue:    []string{"2013-10-12 16:05 UTC", "2013-10-13 16:05 UTC"},
			wantTarget: []string{"20131011 16:05", "20131012 16:05"},
		},
		{
			name: "hourly across midnight", expr: "0 * * * *",
			after:      "2026-12-02 22:30",
			wantDue:    []string{"2026-12-02 23:00 UTC", "2026-12-03 00:00 UTC", "2026-12-03 01:00 UTC"},
			wantTarget: []string{"20261202 22:00", "20261202 23:00", "20261203 00:00"},
		},
		{
			name: "@daily across a month and year", expr: "@daily",
			after:      "2026-12-31 06:00",
			wantDue:    []string{"2027-01-01 00:00 UTC", "2027-01-02 00:00 UTC"},
			wantTarget: []string{"20261231 00:00", "20270101 00:00"},
		},
		{
			name: "daily in Berlin across spring forward", expr: "5 16 * * *", tz: "Europe/Berlin",
			after:      "2026-03-28 17:00",
			wantDue:    []string{"2026-03-29 16:05 CEST", "2026-03-30 16:05 CEST"},
			wantTarget: []string{"20260328 16:05", "20260329 16:05"},
		},
		{
			name: "daily in the skipped hour fires when the clock jumps, no date lost", expr: "30 2 * * *", tz: "Europe/Berlin",
			after:      "2026-03-28 03:00",
			wantDue:    []string{"2026-03-29 03:00 CEST", "2026-03-30 02:30 CEST", "2026-03-31 02:30 CEST"},
			wantTarget: []string{"20260328 02:30", "20260329 03:00", "20260330 02:30"},
		},
		{
			name: "daily in the repeated hour fires once, no date twice", expr: "30 2 * * *", tz: "Europe/Berlin",
			after:      "2026-10-24 03:00",
			wantDue:    []string{"2026-10-25 02:30 CEST", "2026-10-26 02:30 CET", "2026-10-27 02:30 CET"},
			wantTarget: []string{"20261024 02:30", "20261025 02:30", "20261026 02:30"},
		},
		{
			name: "hourly across fall back: the repeated 02 hour is one target", expr: "0 * * * *", tz: "Europe/Berlin",
			after:      "2026-10-25 00:30",
			wantDue:    []string{"2026-10-25 01:00 CEST", "2026-10-25 02:00 CEST", "2026-10-25 03:00 CET", "2026-10-25 04:00 CET"},
			wantTarget: []string{"20261025 00:00", "20261025 01:00", "20261025 02:00", "20261025 03:00"},
		},
		{
			name: "hourly across spring forward in New York", expr: "0 * * * *", tz: "America/New_York",
			after:      "2026-03-08 00:30",
			wantDue:    []string{"2026-03-08 01:00 EST", "2026-03-08 03:00 EDT", "2026-03-08 04:00 EDT"},
			wantTarget: []string{"20260308 00:00", "20260308 01:00", "20260308 03:00"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := mustParse(t, tc.expr, tc.tz)
			after, err := time.ParseInLocation("2006-01-02 15:04", tc.after, c.Location())
			if err != nil {
				t.Fatal(err)
			}
			tick := after
			for i := range tc.wantDue {
				tick = c.Next(tick)
				r := c.RunAt(tick)
				if got := r.Due.Format("2006-01-02 15:04 MST"); got != tc.wantDue[i] {
					t.Errorf("run %d due %s, want %s", i, got, tc.wantDue[i])
				}
				if got := r.Target.Format("20060102 15:04"); got != tc.wantTarget[i] {
					t.Errorf("run %d (due %s) target %s, want %s", i, r.Due, got, tc.wantTarget[i])
				}
				if !r.Target.Before(r.Due) {
					t.Errorf("run %d: target %s not before due %s", i, r.Target, r.Due)
				}
			}
		})
	}
}

// TestDailyOneRunPerDate walks a year of a daily schedule in zones with
// and without summer time: every calendar date is a target exactly once.
func TestDailyOneRunPerDate(t *testing.T) {
	t.Parallel()
	for _, tz := range []string{"UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"} {
		for _, expr := range []string{"5 16 * * *", "30 2 * * *", "0 0 * * *", "59 23 * * *"} {
			c := mustParse(t, expr, tz)
			start := time.Date(2025, 12, 30, 0, 0, 0, 0, c.Location())
			end := time.Date(2027, 1, 3, 0, 0, 0, 0, c.Location())
			seen := map[string]bool{}
			in2026 := 0
			for tick := c.Next(start); tick.Before(end); tick = c.Next(tick) {
				target := c.RunAt(tick).Target
				d := target.Format("20060102")
				if seen[d] {
					t.Fatalf("%s in %s: target date %s made twice (tick %s)", expr, tz, d, tick)
				}
				seen[d] = true
				if target.Year() == 2026 {
					in2026++
				}
			}
			if in2026 != 365 {
				t.Errorf("%s in %s: %d distinct target dates in 2026, want 365", expr, tz, in2026)
			}
		}
	}
}

func TestDue(t *testing.T) {
	t.Parallel()
	c := mustParse(t, "5 16 * * *", "")
	after := time.Date(2013, 10, 10, 17, 0, 0, 0, time.UTC) // the last tick dealt with was the 10th
	now := time.Date(2013, 10, 14, 9, 0, 0, 0, time.UTC)    // af serve was down until the 14th
	dates := func(runs []Run) string {
		var s []string
		for _, r := range runs {
			s = append(s, r.Target.Format("20060102"))
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		name    string
		catchup bool
		limit   int
		want    string
		trunc   bool
	}{
		{"catch-up makes every missed run", true, 100, "20131010,20131011,20131012", false},
		{"catch-up bounded", true, 2, "20131010,20131011", true},
		{"no catch-up makes only the newest", false, 100, "20131012", false},
	} {
		runs, trunc := c.Due(after, now, tc.catchup, tc.limit)
		if got := dates(runs); got != tc.want || trunc != tc.trunc {
			t.Errorf("%s: Due = %s truncated %v, want %s truncated %v", tc.name, got, trunc, tc.want, tc.trunc)
		}
	}
	if runs, _ := c.Due(now, now, true, 10); len(runs) != 0 {
		t.Errorf("Due(now, now) = %v, want none", runs)
	}
	// A tick exactly at now is due.
	at := time.Date(2013, 10, 14, 16, 5, 0, 0, time.UTC)
	if runs, _ := c.Due(now, at, false, 10); dates(runs) != "20131013" {
		t.Errorf("Due up to the tick itself = %s, want 20131013", dates(runs))
	}
}

func TestTargets(t *testing.T) {
	t.Parallel()
	c := mustParse(t, "5 16 * * *", "")
	from := time.Date(2013, 10, 11, 0, 0, 0, 0, time.UTC)
	to := time.Date(2013, 10, 13, 23, 59, 59, 0, time.UTC)
	got, trunc := c.Targets(from, to, 10)
	if len(got) != 3 || trunc || got[0].Format("20060102 15:04") != "20131011 16:05" || got[2].Format("20060102") != "20131013" {
		t.Fatalf("Targets = %v %v, want the 11th to the 13th at 16:05", got, trunc)
	}
	if r := c.RunFor(got[0]); r.Due.Format("20060102 15:04") != "20131012 16:05" {
		t.Errorf("RunFor(%s) due %s, want the 12th", got[0], r.Due)
	}
	if _, trunc := c.Targets(from, to, 2); !trunc {
		t.Error("Targets with limit 2 over 3 dates: not truncated")
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	berlin := mustLoc(t, "Europe/Berlin")
	target := time.Date(2013, 10, 11, 16, 5, 0, 0, time.UTC)
	for _, tc := range []struct {
		in, want, err string
		loc           *time.Location
	}{
		{in: `"__TARGET_DATE__"`, want: `"20131011"`},
		{in: `{"min": "__TARGET_DATE-6__", "max": "__TARGET_DATE__"}`, want: `{"min": "20131005", "max": "20131011"}`},
		{in: `"__TARGET_DATE+1__"`, want: `"20131012"`},
		{in: `"__TARGET_DATE-11__"`, want: `"20130930"`},
		{in: `"dt=__TARGET_ISODATE__"`, want: `"dt=2013-10-11"`},
		{in: `"__TARGET_HOUR__" "__TARGET_HOUR-17__"`, want: `"16" "23"`},
		{in: `"__TARGET_DATEHOUR-17__"`, want: `"2013101023"`},
		{in: `"__TARGET_DATE__ __TARGET_HOUR__"`, loc: berlin, want: `"20131011 18"`},
		{in: `"__TARGET_DAY__"`, err: "unknown placeholder __TARGET_DAY__"},
		{in: `"__TARGET_DATE-99999__"`, err: "offset must be between"},
		{in: `"__TARGET_DATE_"`, err: "is not a placeholder"},
		{in: `no placeholders`, want: `no placeholders`},
	} {
		loc := tc.loc
		if loc == nil {
			loc = time.UTC
		}
		got, err := Render([]byte(tc.in), target, loc)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrTemplate) {
				t.Errorf("Render(%s) = %q, %v; want an ErrTemplate containing %q", tc.in, got, err, tc.err)
			}
		case err != nil || string(got) != tc.want:
			t.Errorf("Render(%s) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestRenderFilter(t *testing.T) {
	t.Parallel()
	target := time.Date(2013, 10, 11, 16, 5, 0, 0, time.UTC)
	good := `{"version": 1, "dimensions": [
	{"field_name": "reason", "allowed_values": "saved_session"},
	{"field_name": "appName", "allowed_values": "*"},
	{"field_name": "appUpdateChannel", "allowed_values": "*"},
	{"field_name": "appVersion", "allowed_values": "*"},
	{"field_name": "appBuildID", "allowed_values": "*"},
	{"field_name": "submission_date", "allowed_values": ["__TARGET_DATE__"]}]}`
	f, out, err := RenderFilter("filter_template.json", []byte(good), target, time.UTC, layout.Telemetry())
	if err != nil || f == nil || !strings.Contains(string(out), `["20131011"]`) {
		t.Fatalf("RenderFilter(good) = %v, %s, %v", f, out, err)
	}
	dims := []string{"saved_session", "Firefox", "release", "24.0", "20131001", "20131011"}
	if !f.Match(dims) {
		t.Errorf("rendered filter does not match the target date's file %v", dims)
	}
	dims[5] = "20131010"
	if f.Match(dims) {
		t.Errorf("rendered filter matches another date's file %v", dims)
	}
	bad := strings.Replace(good, `"submission_date"`, `"submission_dat"`, 1)
	_, out, err = RenderFilter("filter_template.json", []byte(bad), target, time.UTC, layout.Telemetry())
	if err == nil || !strings.Contains(err.Error(), "rendered filter:") || !strings.Contains(err.Error(), "20131011") || len(out) == 0 {
		t.Errorf("RenderFilter(bad field) = %v; want the parser's error with the rendered text", err)
	}
}

func FuzzRender(f *testing.F) {
	for _, s := range []string{`__TARGET_DATE__`, `__TARGET_DATE-6__`, `__TARGET_X+1__`, `__TARGET_`, `__TARGET_HOUR-99999999999999999999__`} {
		f.Add(s)
	}
	target := time.Date(2013, 10, 11, 16, 5, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		out, err := Render([]byte(s), target, time.UTC)
		if err == nil && strings.Contains(string(out), "__TARGET") {
			t.Fatalf("Render(%q) = %q with a placeholder left and no error", s, out)
		}
	})
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"5 16 * * *", "@daily", "*/7 1-5 1,15 * MON-FRI", "0 0 31 2 *"} {
		f.Add(s)
	}
	from := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s, "Europe/Berlin")
		if err != nil {
			return
		}
		prev := from
		for range 5 {
			n := c.Next(prev)
			if n.IsZero() {
				return
			}
			if !n.After(prev) {
				t.Fatalf("%q: Next(%s) = %s, not after", s, prev, n)
			}
			if p := c.Prev(n); !p.IsZero() && !p.Before(n) {
				t.Fatalf("%q: Prev(%s) = %s, not before", s, n, p)
			}
			prev = n
		}
	})
}
