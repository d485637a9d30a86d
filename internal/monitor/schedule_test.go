package monitor

import (
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/browsertest"
	"github.com/af-project/af/internal/taskdef"
)

// hostile is markup that would run script if any page put it into the DOM
// as HTML.
const hostile = `<img src=x onerror="window.pwned=1">"'><svg onload="window.pwned=2">`

// testHostileSchedule: every string of a schedule's runs the API returns
// (owner, image, labels, messages, graph ids, states) reaches the page as
// text: no element is made from them, no script runs, and they read back
// verbatim (grid labels cut to a cell's width, whole in the tooltip); a
// cell per run, bars only for completed runs; the page's ?cap= is carried
// on to its reads.
func testHostileSchedule(t *testing.T, browser *browsertest.Browser) {
	api, srv := startSite(t, Options{PollInterval: 300 * time.Millisecond})
	base := time.Now().Add(-3 * 24 * time.Hour).UTC().Truncate(24 * time.Hour)
	end := base.Add(24*time.Hour + 16*time.Hour + 9*time.Minute)
	end2 := base.Add(2*24*time.Hour + 16*time.Hour + 30*time.Minute)
	api.setSchedule(taskdef.ScheduleRuns{
		Schedule: taskdef.ScheduleStatus{
			ScheduleSpec: taskdef.ScheduleSpec{Name: "daily", Owner: hostile + "@example.org", Cron: "5 16 * * *", Timezone: hostile, Image: hostile, ExpectWithin: hostile},
			State:        hostile,
		},
		Runs: []taskdef.ScheduleRun{
			{Kind: "scheduled", Target: base, Label: hostile, Due: base.Add(40 * time.Hour), RunState: "launched", GraphID: hostile,
				GraphState: taskdef.GraphCompleted, Created: base.Add(24*time.Hour + 16*time.Hour + 5*time.Minute), Resolved: &end, Files: 3, Bytes: 3 << 20},
			{Kind: hostile, Target: base.Add(24 * time.Hour), Label: "L2" + hostile, RunState: "refused", Message: hostile},
			{Kind: "backfill", Target: base.Add(48 * time.Hour), Label: "20990101", RunState: "launched", GraphID: "BackfillGraph01",
				GraphState: taskdef.GraphCompleted, Created: base.Add(2*24*time.Hour + 16*time.Hour), Resolved: &end2, Files: 1, Bytes: 10},
			{Kind: "scheduled", Target: base.Add(72 * time.Hour), Label: "20990102", RunState: "launched", GraphID: "RunningGraph01",
				GraphState: taskdef.GraphState(hostile), Created: time.Now().Add(-time.Minute), Alerted: time.Now()},
		},
	})
	tab := browser.NewTab(t)
	must(t, tab.Navigate(srv.URL+"/schedules/daily?cap=abc", wait))
	must(t, tab.WaitFor(`document.querySelectorAll('#grid .rcell').length === 4 && document.querySelectorAll('#runs .rrow').length === 4`, wait))
	var out struct {
		Pwned                 any
		Imgs, Injected, Bars  int
		Owner, Image, Label0  string
		Msg, Href0, Title0    string
		Labels, States, Kinds []string
	}
	must(t, tab.Eval(`({Pwned: window.pwned || null, Imgs: document.querySelectorAll('img').length,
		Injected: document.querySelectorAll('#app svg:not(#chart), #app [onerror], #app [onload]').length,
		Bars: document.querySelectorAll('#chart rect.dbar').length,
		Owner: document.getElementById('sched-owner').textContent, Image: document.getElementById('sched-image').textContent,
		Label0: document.querySelector('#grid .rcell .rlabel').textContent,
		Msg: document.querySelector('#runs .rrow[data-state="refused"] .rmsg').textContent,
		Href0: document.querySelector('#grid .rcell').getAttribute('href'), Title0: document.querySelector('#grid .rcell').getAttribute('title'),
		Labels: [...document.querySelectorAll('#grid .rcell')].map((c) => c.dataset.label),
		States: [...document.querySelectorAll('#grid .rcell')].map((c) => c.dataset.state),
		Kinds: [...document.querySelectorAll('#grid .rcell')].map((c) => c.dataset.kind)})`, &out))
	if out.Pwned != nil || out.Imgs != 0 || out.Injected != 0 {
		t.Errorf("hostile strings became markup: pwned %v, %d img, %d injected elements", out.Pwned, out.Imgs, out.Injected)
	}
	if out.Owner != hostile+"@example.org" || out.Image != hostile || out.Label0 != hostile[:11]+"…" || out.Msg != hostile {
		t.Errorf("strings not shown verbatim: owner %q image %q label %q message %q", out.Owner, out.Image, out.Label0, out.Msg)
	}
	if !strings.HasPrefix(out.Href0, "/graphs/%3Cimg") || !strings.Contains(out.Title0, hostile) {
		t.Errorf("first cell href %q title %q", out.Href0, out.Title0)
	}
	if strings.Join(out.Labels, "|") != hostile+"|L2"+hostile+"|20990101|20990102" ||
		strings.Join(out.States, ",") != "completed,refused,completed,"+hostile ||
		strings.Join(out.Kinds, ",") != "scheduled,scheduled,backfill,scheduled" {
		t.Errorf("grid labels %q states %q kinds %q", out.Labels, out.States, out.Kinds)
	}
	api.mu.Lock()
	gotCap := api.runsCap
	api.mu.Unlock()
	if gotCap != "abc" {
		t.Errorf("the page read the runs with cap=%q, want the page's abc carried on", gotCap)
	}
	if out.Bars != 2 {
		t.Errorf("chart has %d bars, want one per completed run (2)", out.Bars)
	}
	if errs := tab.Errors(); len(errs) > 0 {
		t.Errorf("JavaScript errors: %v", errs)
	}
	if _, err := tab.Screenshot("schedule-hostile"); err != nil {
		t.Error(err)
	}

	// The list links to the page; an unknown schedule says so.
	must(t, tab.Navigate(srv.URL+"/schedules", wait))
	must(t, tab.WaitFor(`!!document.querySelector('#schedules .srow[data-schedule="daily"] a[href="/schedules/daily"]')`, wait))
	must(t, tab.Navigate(srv.URL+"/schedules/nosuch", wait))
	must(t, tab.WaitFor(`!document.getElementById('banner').hidden && document.getElementById('banner').textContent.includes('There is no schedule nosuch')`, wait))
}
