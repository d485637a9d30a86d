package server

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/browsertest"
	"github.com/af-project/af/internal/taskdef"
)

// finishRuns claims every claimable task and ends it: tasks of keep stay
// claimed (running), tasks of fail are reported failed, the rest complete.
func (e *env) finishRuns(t *testing.T, keep, fail string) {
	t.Helper()
	ctx := ctxT(t)
	for {
		cs, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "grp", WorkerID: "w1", Tasks: 10}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			return
		}
		for _, c := range cs {
			switch c.Task.GraphID {
			case keep:
			case fail:
				if _, err := e.work.Claimed(c).ReportFailed(ctx, taskdef.ReportRequest{Message: "exit status 1"}); err != nil {
					t.Fatal(err)
				}
			default:
				if _, err := e.work.Claimed(c).ReportCompleted(ctx, taskdef.ReportRequest{}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// TestSchedulePageInChromium: a daily schedule's scheduled run and a
// backfill of four dates (one with no data, so refused), ended at
// different times (fake clock) — completed, failed, and the scheduled run
// still running past --expect-within, so late — shown by the schedule page
// in headless Chromium: one grid cell per run with its label, state and
// kind, linking to its graph; one chart bar per completed run; a table
// row per run. The graph page of a run links back to the schedule, and an
// anonymous visitor is sent to sign in.
func TestSchedulePageInChromium(t *testing.T) {
	t.Parallel()
	e, _ := scheduleEnv(t)
	ctx := ctxT(t)
	if _, err := e.submit.CreateSchedule(ctx, taskdef.ScheduleSpec{Name: "daily", Cron: "5 16 * * *", Template: json.RawMessage(dailyTemplate),
		Image: "af/os-count", ExpectWithin: "1h", MaxActive: 3}); err != nil {
		t.Fatal(err)
	}
	pass := func() {
		t.Helper()
		if _, err := e.srv.scheduler.Pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	runs := func() map[string]taskdef.ScheduleRun {
		t.Helper()
		rs, err := e.submit.ScheduleRuns(ctx, "daily")
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]taskdef.ScheduleRun{}
		for _, r := range rs.Runs {
			m[r.Label] = r
		}
		return m
	}
	e.clock.Advance(4*time.Hour + 5*time.Minute) // 16:05: the run for the 28th
	pass()
	scheduled := runs()["20260228"].GraphID
	if scheduled == "" {
		t.Fatalf("no scheduled run launched: %+v", runs())
	}
	if _, err := e.submit.Backfill(ctx, "daily", taskdef.BackfillRequest{From: "20260224", To: "20260227", Parallel: 1}); err != nil {
		t.Fatal(err)
	}
	// One backfill run at a time: each ends before the next launches,
	// so their durations differ (3 min, 7 min), and the last one fails.
	for i, d := range []time.Duration{3 * time.Minute, 7 * time.Minute, 2 * time.Minute} {
		pass()
		pass()
		fail := ""
		if i == 2 {
			fail = runs()["20260227"].GraphID
		}
		e.clock.Advance(d)
		e.finishRuns(t, scheduled, fail)
	}
	pass()
	e.clock.Advance(time.Hour) // the 28th's run is late now
	pass()
	got := runs()
	want := map[string]struct{ state, kind string }{
		"20260224": {"refused", "backfill"}, "20260225": {"completed", "backfill"}, "20260226": {"completed", "backfill"},
		"20260227": {"failed", "backfill"}, "20260228": {"late", "scheduled"},
	}
	for label, w := range want {
		r, ok := got[label]
		if !ok {
			t.Fatalf("no run for %s: %+v", label, got)
		}
		if s := pageState(r); s != w.state || r.Kind != w.kind {
			t.Fatalf("run %s: %s %s (%+v); want %s %s", label, s, r.Kind, r, w.state, w.kind)
		}
	}

	browser := browsertest.Start(t)
	wait := 30 * time.Second

	// Anonymous: sent to sign in, and back to the schedule after.
	tab := browser.NewTab(t)
	must(t, tab.Navigate(e.http.URL+"/schedules/daily", wait))
	must(t, tab.WaitFor(`location.pathname === '/signin' && !!document.getElementById('signin-token')`, wait))
	must(t, tab.Eval(`document.getElementById('signin-token').value = `+jsString(submitTok)+`; true`, nil))
	must(t, tab.Click(`#signin-submit`, wait))
	must(t, tab.WaitFor(`location.pathname === '/schedules/daily' && document.querySelectorAll('#grid .rcell').length === 5 && document.querySelectorAll('#runs .rrow').length === 5`, wait))

	// The grid: one cell per run, oldest target first, with its label,
	// state, kind and graph link.
	var cells []struct {
		Label, State, Kind, Href, Title, Text string
	}
	must(t, tab.Eval(`[...document.querySelectorAll('#grid .rcell')].map((c) => ({Label: c.dataset.label, State: c.dataset.state, Kind: c.dataset.kind,
		Href: c.getAttribute('href') || '', Title: c.getAttribute('title'), Text: c.querySelector('.rlabel').textContent}))`, &cells))
	labels := []string{"20260224", "20260225", "20260226", "20260227", "20260228"}
	for i, c := range cells {
		r := got[labels[i]]
		if c.Label != labels[i] || c.Text != labels[i] || c.State != want[labels[i]].state || c.Kind != want[labels[i]].kind {
			t.Errorf("cell %d: %+v; want %s %+v", i, c, labels[i], want[labels[i]])
		}
		if wantHref := map[bool]string{true: "/graphs/" + r.GraphID, false: ""}[r.GraphID != ""]; c.Href != wantHref {
			t.Errorf("cell %s links to %q, want %q", c.Label, c.Href, wantHref)
		}
		if r.Files > 0 && !containsAll(c.Title, c.Label, c.State, fmt.Sprintf("%d files", r.Files)) {
			t.Errorf("cell %s tooltip %q lacks its target, state or input files", c.Label, c.Title)
		}
	}
	// The chart: one bar per completed run, the longer run taller.
	var bars []struct {
		Label string
		MS    int64
		H     float64
	}
	must(t, tab.Eval(`[...document.querySelectorAll('#chart rect.dbar')].map((b) => ({Label: b.dataset.label, MS: +b.dataset.ms, H: +b.getAttribute('height')}))`, &bars))
	if len(bars) != 2 || bars[0].Label != "20260225" || bars[1].Label != "20260226" ||
		bars[0].MS != (3*time.Minute).Milliseconds() || bars[1].MS != (7*time.Minute).Milliseconds() || bars[1].H <= bars[0].H {
		t.Errorf("chart bars %+v; want 20260225 (3 min) and a taller 20260226 (7 min)", bars)
	}
	var axis []string
	must(t, tab.Eval(`[...document.querySelectorAll('#chart .axis text')].map((x) => x.textContent)`, &axis))
	if !slices.Contains(axis, "0s") || !slices.ContainsFunc(axis, func(s string) bool { return len(s) > 1 && s[len(s)-1] == 's' && s != "0s" }) {
		t.Errorf("chart axis labels %v; want durations from 0s", axis)
	}
	// The table: the refused run says why; the header shows the settings.
	var refusedMsg, cron, next string
	must(t, tab.Eval(`document.querySelector('#runs .rrow[data-label="20260224"] .rmsg').textContent`, &refusedMsg))
	must(t, tab.Eval(`document.getElementById('sched-cron').textContent + ' ' + document.getElementById('sched-zone').textContent`, &cron))
	must(t, tab.Eval(`document.getElementById('sched-next').textContent`, &next))
	if refusedMsg != got["20260224"].Message || refusedMsg == "" {
		t.Errorf("refused run's message %q, want %q", refusedMsg, got["20260224"].Message)
	}
	if cron != "5 16 * * * UTC" || next != "2026-03-02 16:05 for 2026-03-01" {
		t.Errorf("header cron %q next %q", cron, next)
	}
	if errs := tab.Errors(); len(errs) > 0 {
		t.Errorf("the schedule page logged errors: %v", errs)
	}
	if _, err := tab.Screenshot("schedule-page"); err != nil {
		t.Error(err)
	}

	// The schedules list links to the page; the graph list to the list.
	must(t, tab.Navigate(e.http.URL+"/graphs", wait))
	must(t, tab.WaitFor(`!!document.querySelector('a#schedules-link[href="/schedules"]')`, wait))
	must(t, tab.Click(`a#schedules-link`, wait))
	must(t, tab.WaitFor(`location.pathname === '/schedules' && !!document.querySelector('#schedules .srow[data-schedule="daily"] a[href="/schedules/daily"]')`, wait))

	// A run's graph page names its schedule run and links back.
	must(t, tab.Navigate(e.http.URL+"/graphs/"+got["20260225"].GraphID, wait))
	must(t, tab.WaitFor(`!document.getElementById('graph-schedule').hidden`, wait))
	var line, href string
	must(t, tab.Eval(`document.getElementById('graph-schedule').textContent.replace(/\s+/g, ' ').trim()`, &line))
	must(t, tab.Eval(`document.getElementById('graph-schedule-link').getAttribute('href')`, &href))
	if line != "run of schedule daily for 20260225 (backfill)" || href != "/schedules/daily" {
		t.Errorf("graph page schedule line %q linking %q", line, href)
	}
	if _, err := tab.Screenshot("graph-page-of-a-run"); err != nil {
		t.Error(err)
	}
	must(t, tab.Click(`#graph-schedule-link`, wait))
	must(t, tab.WaitFor(`location.pathname === '/schedules/daily' && document.querySelectorAll('#grid .rcell').length === 5`, wait))
}

// pageState is the state the schedule page shows a run in.
func pageState(r taskdef.ScheduleRun) string {
	switch {
	case r.RunState == "refused":
		return "refused"
	case r.RunState != "launched":
		return "queued"
	case r.GraphState == taskdef.GraphRunning && !r.Alerted.IsZero():
		return "late"
	}
	return string(r.GraphState)
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
