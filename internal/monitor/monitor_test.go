package monitor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/af-project/af/internal/browsertest"
	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/taskdef"
)

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

func TestHandler(t *testing.T) {
	t.Parallel()
	_, srv := startSite(t, Options{PollInterval: 700 * time.Millisecond})
	cases := []struct {
		path     string
		status   int
		contains []string
	}{
		{"/graphs", 200, []string{`id="graphs"`, `data-poll-ms="700"`, "Recent graphs"}},
		{"/graphs/Abcdefgh12345678", 200, []string{`data-graph-id="Abcdefgh12345678"`, `id="gantt"`, `id="tasks"`}},
		{"/graphs/bad%20id%3Cscript%3E", 404, []string{"There is no graph", "&lt;script&gt;"}},
		{"/graphs/short", 404, []string{"8 to 64 characters"}},
		{"/graphs", 200, []string{`href="/schedules"`}},
		{"/schedules", 200, []string{`id="schedules"`, "Schedules", `href="/graphs"`}},
		{"/schedules/daily.os-count_v2", 200, []string{`data-schedule="daily.os-count_v2"`, `id="grid"`, `id="chart"`, `id="runs"`}},
		{"/schedules/Daily%3Cscript%3Ealert(1)%3C%2Fscript%3E", 404, []string{"There is no schedule", "&lt;script&gt;", "a-z, 0-9"}},
		{"/schedules/%22onmouseover=%22x", 404, []string{"There is no schedule", `\&#34;onmouseover=\&#34;x`}},
	}
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//`)
	for _, tc := range cases {
		res, body := get(t, srv.URL+tc.path)
		if res.StatusCode != tc.status {
			t.Errorf("GET %s: status %d, want %d", tc.path, res.StatusCode, tc.status)
		}
		for _, c := range tc.contains {
			if !strings.Contains(body, c) {
				t.Errorf("GET %s: body lacks %q", tc.path, c)
			}
		}
		if strings.Contains(body, "<script>") && strings.Contains(tc.path, "script") {
			t.Errorf("GET %s: the id reached the page unescaped", tc.path)
		}
		if m := external.FindString(body); m != "" {
			t.Errorf("GET %s: page loads an external resource: %s", tc.path, m)
		}
		csp := res.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'nonce-") {
			t.Errorf("GET %s: CSP %q", tc.path, csp)
		}
		if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("GET %s: content type %q", tc.path, ct)
		}
		if nonce := regexp.MustCompile(`nonce="([^"]+)"`).FindStringSubmatch(body); nonce != nil && !strings.Contains(csp, "'nonce-"+nonce[1]+"'") {
			t.Errorf("GET %s: script nonce %s not in the CSP %q", tc.path, nonce[1], csp)
		}
	}
	// Each response gets its own nonce.
	r1, _ := get(t, srv.URL+"/graphs")
	r2, _ := get(t, srv.URL+"/graphs")
	if r1.Header.Get("Content-Security-Policy") == r2.Header.Get("Content-Security-Policy") {
		t.Error("two responses share a CSP nonce")
	}
	// /graphs/ redirects to the list when the handler is mounted as a
	// whole (`af serve` routes only /graphs and /graphs/{id} to it).
	rec := httptest.NewRecorder()
	Handler(Options{}).ServeHTTP(rec, httptest.NewRequest("GET", "/graphs/", nil))
	if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "/graphs" {
		t.Errorf("GET /graphs/: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
}

// liveGraph is a graph in mid-run: one mapper running, one retried after
// its claim expired and running again, one pending, the reducer waiting.
func liveGraph(b graphBuilder) taskdef.GraphStatus {
	return taskdef.GraphStatus{
		GraphID: "LiveGraph0001", Name: "os-count by channel", Owner: "ana@example.org", State: taskdef.GraphRunning,
		Created: b.base,
		Tasks: []taskdef.TaskStatus{
			{TaskID: taskID("M", 1), Name: mapperName(1), Kind: taskdef.KindMapper, State: taskdef.StateRunning, InputFiles: 12, InputBytes: 900 << 20,
				Runs: []taskdef.Run{b.run(0, taskdef.StateRunning, 2, -1, "w-alpha", taskdef.Stats{Files: 5, Bytes: 400 << 20, RecordsIn: 120000, RecordsOut: 40})}},
			{TaskID: taskID("M", 2), Name: mapperName(2), Kind: taskdef.KindMapper, State: taskdef.StateRunning, InputFiles: 10, InputBytes: 850 << 20,
				Runs: []taskdef.Run{
					func() taskdef.Run {
						r := b.run(0, taskdef.StateException, 2, 40, "w-beta", taskdef.Stats{Files: 3, Bytes: 200 << 20, RecordsIn: 50000})
						r.ReasonResolved, r.Message = taskdef.ReasonClaimExpired, "worker w-beta stopped renewing its claim"
						return r
					}(),
					b.run(1, taskdef.StateRunning, 42, -1, "w-gamma", taskdef.Stats{Files: 2, Bytes: 150 << 20, RecordsIn: 30000, RecordsOut: 12}),
				}},
			{TaskID: taskID("M", 3), Name: mapperName(3), Kind: taskdef.KindMapper, State: taskdef.StatePending, InputFiles: 9, InputBytes: 700 << 20,
				Runs: []taskdef.Run{b.run(0, taskdef.StatePending, -1, -1, "", taskdef.Stats{})}},
			{TaskID: taskID("R", 1), Name: "reducer", Kind: taskdef.KindReducer, State: taskdef.StateUnscheduled,
				Dependencies: []string{taskID("M", 1), taskID("M", 2), taskID("M", 3)}},
		},
	}
}

func TestPagesInBrowser(t *testing.T) {
	t.Parallel()
	browser := browsertest.Start(t)
	t.Run("live graph", func(t *testing.T) { testLiveGraph(t, browser) })
	t.Run("2000 tasks", func(t *testing.T) { testBigGraph(t, browser) })
	t.Run("graph list", func(t *testing.T) { testList(t, browser) })
	t.Run("unknown graph", func(t *testing.T) { testUnknownGraph(t, browser) })
	t.Run("canceled graph", func(t *testing.T) { testCanceledGraph(t, browser) })
	t.Run("no worker claims", func(t *testing.T) { testNoWorker(t, browser) })
	t.Run("expired graph", func(t *testing.T) { testExpiredGraph(t, browser) })
	t.Run("result through a presigned S3 redirect", func(t *testing.T) { testResultViaS3(t, browser) })
	t.Run("schedule with hostile strings", func(t *testing.T) { testHostileSchedule(t, browser) })
}

const wait = 20 * time.Second

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testLiveGraph(t *testing.T, browser *browsertest.Browser) {
	api, srv := startSite(t, Options{PollInterval: 300 * time.Millisecond})
	b := graphBuilder{base: time.Now().Add(-95 * time.Second).Truncate(time.Second)}
	g := liveGraph(b)
	api.set(g)
	m1, m2, red := taskID("M", 1), taskID("M", 2), taskID("R", 1)

	tab := browser.NewTab(t)
	must(t, tab.Navigate(srv.URL+"/graphs/"+g.GraphID, wait))
	must(t, tab.WaitFor(`document.querySelectorAll('#tasks .trow').length === 4`, wait))
	// Unchanged data is not sent again: the page revalidates with the ETag.
	must(t, tab.WaitFor(`window.afMonitor.notModified >= 1`, wait))
	if gets, notModified := api.gets(); notModified == 0 {
		t.Errorf("%d fetches and none answered 304: the page does not send If-None-Match", gets)
	}
	// A marker that a reload would wipe.
	must(t, tab.Eval(`window.__noReload = 'still here'; true`, nil))

	var head struct {
		Name, Owner, State string
		Rows               []struct{ ID, State string }
	}
	must(t, tab.Eval(`({
		name: document.getElementById('graph-name').textContent,
		owner: document.getElementById('graph-owner').textContent,
		state: document.getElementById('graph-state').dataset.state,
		rows: [...document.querySelectorAll('#tasks .trow')].map(r => ({id: r.dataset.taskId, state: r.dataset.state})),
	})`, &head))
	if head.Name != "os-count by channel" || head.Owner != "ana@example.org" || head.State != "running" {
		t.Errorf("header %+v", head)
	}
	if len(head.Rows) != 4 || head.Rows[0].ID != m1 || head.Rows[0].State != "running" || head.Rows[3].State != "unscheduled" {
		t.Errorf("rows %+v", head.Rows)
	}

	// The Gantt chart: one bar per started run, so the retried mapper has two.
	barsOf := func(id string) int {
		var n int
		must(t, tab.Eval(`document.querySelectorAll('#gantt rect.gbar[data-task-id="`+id+`"]').length`, &n))
		return n
	}
	if n := barsOf(m1); n != 1 {
		t.Errorf("mapper 1 has %d bars, want 1", n)
	}
	if n := barsOf(m2); n != 2 {
		t.Errorf("retried mapper 2 has %d bars, want 2 (one per run)", n)
	}
	var m2States []string
	must(t, tab.Eval(`[...document.querySelectorAll('#gantt rect.gbar[data-task-id="`+m2+`"]')].map(r => r.dataset.runId + ':' + r.dataset.state)`, &m2States))
	if strings.Join(m2States, ",") != "0:exception,1:running" {
		t.Errorf("mapper 2 bars %v, want run 0 exception and run 1 running", m2States)
	}
	if _, err := tab.Screenshot("monitor-running"); err != nil {
		t.Error(err)
	}

	// Mapper 1 completes: the row changes state without a reload.
	g.Tasks[0].State = taskdef.StateCompleted
	g.Tasks[0].Runs[0].State = taskdef.StateCompleted
	g.Tasks[0].Runs[0].Resolved = b.at(80)
	g.Tasks[0].Runs[0].ReasonResolved = taskdef.ReasonCompleted
	g.Tasks[0].Runs[0].Stats = taskdef.Stats{Files: 12, Bytes: 900 << 20, RecordsIn: 310000, RecordsOut: 64}
	api.set(g)
	api.artifact(m1, taskdef.ResultArtifact, "\"Linux\"\t1200\n\"WINNT\"\t9000\n")
	must(t, tab.WaitFor(`document.querySelector('#tasks .trow[data-task-id="`+m1+`"]').dataset.state === 'completed'`, wait))
	must(t, tab.WaitFor(`document.querySelector('#gantt rect.gbar[data-task-id="`+m1+`"]').dataset.state === 'completed'`, wait))
	var marker string
	must(t, tab.Eval(`window.__noReload`, &marker))
	if marker != "still here" {
		t.Fatal("the page reloaded to show the change")
	}
	var count string
	must(t, tab.Eval(`document.getElementById('count-completed').textContent`, &count))
	if count != "completed 1" {
		t.Errorf("completed count chip %q", count)
	}

	// Everything finishes: the page shows the job result and stops polling.
	g.Tasks[1].State = taskdef.StateCompleted
	g.Tasks[1].Runs[1].State = taskdef.StateCompleted
	g.Tasks[1].Runs[1].Resolved = b.at(85)
	g.Tasks[1].Runs[1].Stats = taskdef.Stats{Files: 10, Bytes: 850 << 20, RecordsIn: 260000, RecordsOut: 51}
	g.Tasks[2].State = taskdef.StateCompleted
	g.Tasks[2].Runs[0] = b.run(0, taskdef.StateCompleted, 50, 88, "w-alpha", taskdef.Stats{Files: 9, Bytes: 700 << 20, RecordsIn: 200000, RecordsOut: 50})
	g.Tasks[3].State = taskdef.StateCompleted
	g.Tasks[3].Runs = []taskdef.Run{b.run(0, taskdef.StateCompleted, 89, 94, "w-beta", taskdef.Stats{Files: 3, RecordsIn: 154, RecordsOut: 6})}
	g.State = taskdef.GraphCompleted
	g.Resolved = b.at(95)
	g.ResultTaskID = red
	// As af serve does: the totals keep the reducer's counts apart.
	totals := taskdef.TotalsOf(g.Tasks)
	g.Totals = &totals
	api.artifact(red, taskdef.ResultArtifact, "channel,os,count\nrelease,WINNT,91234\nrelease,Darwin,8812\nrelease,Linux,2210\nbeta,WINNT,15003\nbeta,Darwin,1200\nnightly,Linux,310\n")
	api.set(g)
	must(t, tab.WaitFor(`document.getElementById('result-text').dataset.loaded === 'true'`, wait))
	// The records read are the mappers' (310,000 + 260,000 + 200,000),
	// not with the reducer's 154 pairs added; the reducer's are apart.
	var detail string
	must(t, tab.Eval(`document.getElementById('progress-detail').textContent`, &detail))
	if want := "4 of 4 tasks completed · 770,000 records read · 165 pairs emitted by mappers · reducer: 154 pairs in → 6 lines out"; detail != want {
		t.Errorf("progress detail %q, want %q", detail, want)
	}
	var result string
	must(t, tab.Eval(`document.getElementById('result-text').textContent`, &result))
	if !strings.Contains(result, "release,WINNT,91234") {
		t.Errorf("job result shown as %q", result)
	}
	must(t, tab.WaitFor(`document.getElementById('app').dataset.live === 'false'`, wait))
	var polling struct {
		Polls     int
		Scheduled bool
	}
	must(t, tab.Eval(`({polls: window.afMonitor.polls, scheduled: window.afMonitor.scheduled})`, &polling))
	if polling.Scheduled {
		t.Error("the page still has a poll scheduled after the graph resolved")
	}
	if polling.Polls < 3 {
		t.Errorf("only %d polls", polling.Polls)
	}
	var text string
	must(t, tab.Eval(`document.body.innerText`, &text))
	if strings.Contains(text, "PLAINTEXT-SECRET") {
		t.Error("the page shows the payload's credentials")
	}
	if _, err := tab.Screenshot("monitor-completed"); err != nil {
		t.Error(err)
	}
	if errs := tab.Errors(); len(errs) > 0 {
		t.Errorf("JavaScript errors: %v", errs)
	}

	// The result link of mapper 1 leads to its result.
	must(t, tab.Click(`#tasks .trow[data-task-id="`+m1+`"] a.result-link`, wait))
	must(t, tab.WaitFor(`location.pathname.endsWith('/artifacts/public/result.txt')`, wait))
	must(t, tab.WaitFor(`document.body && document.body.innerText.includes('WINNT')`, wait))
	loc, err := tab.Location()
	must(t, err)
	if want := srv.URL + "/api/v1/tasks/" + m1 + "/artifacts/public/result.txt"; loc != want {
		t.Errorf("result link went to %s, want %s", loc, want)
	}
}

func testBigGraph(t *testing.T, browser *browsertest.Browser) {
	api, srv := startSite(t, Options{PollInterval: time.Second})
	b := graphBuilder{base: time.Now().Add(-30 * time.Minute).Truncate(time.Second)}
	const n = 2000
	g := taskdef.GraphStatus{GraphID: "BigGraph00001", Name: "crash-rates over 2,000 mappers", Owner: "bo@example.org",
		State: taskdef.GraphRunning, Created: b.base}
	runs := 0
	for i := 1; i <= n; i++ {
		ts := taskdef.TaskStatus{TaskID: taskID("M", i), Name: mapperName(i), Kind: taskdef.KindMapper, InputFiles: 75, InputBytes: 1500 << 20}
		start := float64(i%400) * 3
		switch {
		case i%97 == 0: // retried after an exception, now running
			ex := b.run(0, taskdef.StateException, start, start+200, "w-"+taskID("", i%40), taskdef.Stats{Files: 20})
			ex.ReasonResolved = taskdef.ReasonWorkerShutdown
			ts.Runs = []taskdef.Run{ex, b.run(1, taskdef.StateRunning, start+210, -1, "w-"+taskID("", (i+1)%40), taskdef.Stats{Files: 30, Bytes: 600 << 20})}
			ts.State = taskdef.StateRunning
		case i%13 == 0:
			ts.State = taskdef.StateFailed
			ts.Runs = []taskdef.Run{b.run(0, taskdef.StateFailed, start, start+300, "w-"+taskID("", i%40), taskdef.Stats{Files: 10})}
			ts.Runs[0].Message = "Traceback (most recent call last): ValueError"
		case i < 1200:
			ts.State = taskdef.StateCompleted
			ts.Runs = []taskdef.Run{b.run(0, taskdef.StateCompleted, start, start+400+float64(i%50), "w-"+taskID("", i%40), taskdef.Stats{Files: 75, Bytes: 1500 << 20, RecordsIn: 400000, RecordsOut: 900})}
		case i < 1500:
			ts.State = taskdef.StateRunning
			ts.Runs = []taskdef.Run{b.run(0, taskdef.StateRunning, 1200+float64(i%200)*2, -1, "w-"+taskID("", i%40), taskdef.Stats{Files: 40, Bytes: 700 << 20})}
		default:
			ts.State = taskdef.StatePending
			ts.Runs = []taskdef.Run{b.run(0, taskdef.StatePending, -1, -1, "", taskdef.Stats{})}
		}
		for _, r := range ts.Runs {
			if r.Started != nil {
				runs++
			}
		}
		g.Tasks = append(g.Tasks, ts)
	}
	g.Tasks = append(g.Tasks, taskdef.TaskStatus{TaskID: taskID("R", 1), Name: "reducer", Kind: taskdef.KindReducer, State: taskdef.StateUnscheduled})
	api.set(g)

	tab := browser.NewTab(t)
	must(t, tab.Navigate(srv.URL+"/graphs/"+g.GraphID, wait))
	must(t, tab.WaitFor(`window.afMonitor && window.afMonitor.renders >= 1`, wait))
	var m struct {
		FirstRenderMs, LastRenderMs float64
		DomRows, Bars               int
		Count                       string
	}
	must(t, tab.Eval(`({
		firstRenderMs: window.afMonitor.firstRenderMs,
		lastRenderMs: window.afMonitor.lastRenderMs,
		domRows: document.querySelectorAll('#tasks .trow').length,
		bars: document.querySelectorAll('#gantt rect.gbar').length,
		count: document.getElementById('task-count').textContent,
	})`, &m))
	t.Logf("2,001 tasks: first render complete %.0f ms after navigation start; render itself %.1f ms; %d rows in the DOM; %d Gantt bars",
		m.FirstRenderMs, m.LastRenderMs, m.DomRows, m.Bars)
	if m.Bars != runs {
		t.Errorf("%d Gantt bars, want one per started run (%d)", m.Bars, runs)
	}
	if m.DomRows == 0 || m.DomRows > 100 {
		t.Errorf("%d task rows in the DOM; the table should render only the rows in view", m.DomRows)
	}
	if m.Count != "2,001" {
		t.Errorf("task count %q", m.Count)
	}
	// A generous bound: a render that takes seconds makes the page unusable.
	if m.LastRenderMs > 5000 {
		t.Errorf("one render of 2,001 tasks took %.0f ms", m.LastRenderMs)
	}

	// Scrolling to the end shows the last rows; filtering narrows the table.
	must(t, tab.Eval(`(() => { const s = document.getElementById('tasks-scroll'); s.scrollTop = s.scrollHeight; return true; })()`, nil))
	must(t, tab.WaitFor(`!!document.querySelector('#tasks .trow[data-task-id="`+taskID("R", 1)+`"]')`, wait))
	must(t, tab.Click(`#count-failed`, wait))
	must(t, tab.WaitFor(`[...document.querySelectorAll('#tasks .trow')].every(r => r.dataset.state === 'failed') && document.querySelectorAll('#tasks .trow').length > 0`, wait))
	must(t, tab.Click(`#count-failed`, wait))
	must(t, tab.Eval(`(() => { const i = document.getElementById('task-search'); i.value = 'mapper 1999'; i.dispatchEvent(new Event('input')); return true; })()`, nil))
	must(t, tab.WaitFor(`document.querySelectorAll('#tasks .trow').length === 1`, wait))
	// Clicking a Gantt bar brings its task into the table.
	must(t, tab.Eval(`(() => { const i = document.getElementById('task-search'); i.value = ''; i.dispatchEvent(new Event('input')); return true; })()`, nil))
	id := taskID("M", 1455)
	must(t, tab.Eval(`document.querySelector('#gantt rect.gbar[data-task-id="`+id+`"]').dispatchEvent(new MouseEvent('click', {bubbles: true})) || true`, nil))
	must(t, tab.WaitFor(`!!document.querySelector('#tasks .trow[data-task-id="`+id+`"]')`, wait))
	if _, err := tab.Screenshot("monitor-2000-tasks"); err != nil {
		t.Error(err)
	}
	if errs := tab.Errors(); len(errs) > 0 {
		t.Errorf("JavaScript errors: %v", errs)
	}
}

func testList(t *testing.T, browser *browsertest.Browser) {
	api, srv := startSite(t, Options{PollInterval: 300 * time.Millisecond})
	b := graphBuilder{base: time.Now().Add(-2 * time.Hour).Truncate(time.Second)}
	done := liveGraph(b)
	done.GraphID, done.Name, done.State, done.Resolved = "DoneGraph0001", "weekly crash counts", taskdef.GraphCompleted, b.at(1800)
	for i := range done.Tasks {
		done.Tasks[i].State = taskdef.StateCompleted
	}
	api.set(done)
	failed := liveGraph(b)
	failed.GraphID, failed.Name, failed.State, failed.Resolved = "FailGraph0001", "addon census", taskdef.GraphFailed, b.at(600)
	failed.Tasks[0].State = taskdef.StateCompleted
	failed.Tasks[0].Runs[0] = b.run(0, taskdef.StateCompleted, 2, 300, "w-alpha", taskdef.Stats{Files: 12, Bytes: 900 << 20, RecordsIn: 310000, RecordsOut: 64})
	failed.Tasks[1].State = taskdef.StateCompleted
	failed.Tasks[1].Runs[1] = b.run(1, taskdef.StateCompleted, 42, 380, "w-gamma", taskdef.Stats{Files: 10, Bytes: 850 << 20, RecordsIn: 260000, RecordsOut: 51})
	failed.Tasks[2].State = taskdef.StateFailed
	failed.Tasks[2].Runs[0] = b.run(0, taskdef.StateFailed, 3, 250, "w-beta", taskdef.Stats{Files: 4, Bytes: 310 << 20, RecordsIn: 90000})
	// Longer than the page shows: the helper's frames come first, the
	// user's file and line last, and the page keeps the end.
	failed.Tasks[2].Runs[0].Message = "the job exited with code 1: KeyError: 'os'\nTraceback (most recent call last):\n" +
		strings.Repeat("  File \"/usr/lib/python3/dist-packages/af_helper.py\", line 120, in run_map\n    fn(doc_id, dims, value, ctx)\n", 30) +
		"  File \"/job/mapper.py\", line 14, in map\n    os_name = dims[\"os\"]\nKeyError: 'os'"
	failed.Tasks[3].State = taskdef.StateException
	failed.Tasks[3].Runs = []taskdef.Run{{RunID: 0, State: taskdef.StateException, ReasonCreated: taskdef.ReasonScheduled, ReasonResolved: taskdef.ReasonDependencyFailed, Resolved: b.at(250)}}
	api.set(failed)
	b2 := graphBuilder{base: time.Now().Add(-95 * time.Second)}
	api.set(liveGraph(b2))

	tab := browser.NewTab(t)
	must(t, tab.Navigate(srv.URL+"/graphs", wait))
	must(t, tab.WaitFor(`document.querySelectorAll('#graphs .grow').length === 3`, wait))
	var rows []string
	must(t, tab.Eval(`[...document.querySelectorAll('#graphs .grow')].map(r => r.dataset.graphId + ':' + r.dataset.state)`, &rows))
	if strings.Join(rows, ",") != "LiveGraph0001:running,FailGraph0001:failed,DoneGraph0001:completed" {
		t.Errorf("list rows %v, want newest first", rows)
	}
	if _, err := tab.Screenshot("graph-list"); err != nil {
		t.Error(err)
	}
	must(t, tab.Click(`#graphs .grow[data-graph-id="FailGraph0001"] a`, wait))
	must(t, tab.WaitFor(`location.pathname === '/graphs/FailGraph0001' && document.getElementById('graph-name').textContent === 'addon census'`, wait))
	// A failed graph lists what did not complete and why.
	must(t, tab.WaitFor(`!document.getElementById('failures').hidden`, wait))
	var failures []string
	must(t, tab.Eval(`[...document.querySelectorAll('#failures-list li[data-task-id]')].map(li => li.dataset.state + ':' + li.textContent)`, &failures))
	if len(failures) != 2 || !strings.HasPrefix(failures[0], "failed:") || !strings.Contains(failures[0], "KeyError: 'os'") ||
		!strings.Contains(failures[0], `File "/job/mapper.py", line 14, in map`) || !strings.Contains(failures[0], "characters cut …]") ||
		!strings.HasPrefix(failures[1], "exception:") || !strings.Contains(failures[1], "dependency-failed") {
		t.Errorf("failures listed: %q", failures)
	}
	if _, err := tab.Screenshot("monitor-failed"); err != nil {
		t.Error(err)
	}
	if errs := tab.Errors(); len(errs) > 0 {
		t.Errorf("JavaScript errors: %v", errs)
	}
}

// testCanceledGraph: a canceled graph shows canceled, and says so once
// rather than listing each canceled task as a failure.
func testCanceledGraph(t *testing.T, browser *browsertest.Browser) {
	api, srv := startSite(t, Options{PollInterval: 300 * time.Millisecond})
	b := graphBuilder{base: time.Now().Add(-95 * time.Second).Truncate(time.Second)}
	g := liveGraph(b)
	g.State, g.Resolved = taskdef.GraphCanceled, b.at(90)
	cancel := func(ts *taskdef.TaskStatus) {
		ts.State = taskdef.StateException
		if len(ts.Runs) == 0 {
			ts.Runs = []taskdef.Run{{RunID: 0, ReasonCreated: taskdef.ReasonException, Scheduled: b.at(90)}}
		}
		r := &ts.Runs[len(ts.Runs)-1]
		r.State, r.ReasonResolved, r.Resolved = taskdef.StateException, taskdef.ReasonCanceled, b.at(90)
	}
	g.Tasks[0].State = taskdef.StateFailed
	g.Tasks[0].Runs[0] = b.run(0, taskdef.StateFailed, 2, 60, "w-alpha", taskdef.Stats{Files: 5})
	g.Tasks[0].Runs[0].Message = "job exited with status 1"
	for i := 1; i < len(g.Tasks); i++ {
		cancel(&g.Tasks[i])
	}
	api.set(g)
	tab := browser.NewTab(t)
	must(t, tab.Navigate(srv.URL+"/graphs/"+g.GraphID, wait))
	must(t, tab.WaitFor(`!document.getElementById('failures').hidden`, wait))
	var got struct {
		State    string
		Failures []string
		Canceled []string
	}
	must(t, tab.Eval(`({
		state: document.getElementById('graph-state').dataset.state + ':' + document.getElementById('graph-state').textContent,
		failures: [...document.querySelectorAll('#failures-list li[data-task-id]')].map(li => li.dataset.state + ':' + li.textContent),
		canceled: [...document.querySelectorAll('#failures-list li[data-state="canceled"]')].map(li => li.textContent),
	})`, &got))
	if got.State != "canceled:canceled" {
		t.Errorf("graph state badge %q, want canceled", got.State)
	}
	if len(got.Failures) != 1 || !strings.HasPrefix(got.Failures[0], "failed:") {
		t.Errorf("failures listed %q, want only the failed mapper", got.Failures)
	}
	if len(got.Canceled) != 1 || !strings.Contains(got.Canceled[0], "3 tasks stopped") || !strings.Contains(got.Canceled[0], "--failed") {
		t.Errorf("canceled line %q, want one line for the 3 canceled tasks", got.Canceled)
	}
	if errs := tab.Errors(); len(errs) > 0 {
		t.Errorf("JavaScript errors: %v", errs)
	}
}

func testUnknownGraph(t *testing.T, browser *browsertest.Browser) {
	_, srv := startSite(t, Options{PollInterval: 300 * time.Millisecond})
	tab := browser.NewTab(t)
	must(t, tab.Navigate(srv.URL+"/graphs/NoSuchGraph01", wait))
	must(t, tab.WaitFor(`!document.getElementById('banner').hidden`, wait))
	var banner string
	must(t, tab.Eval(`document.getElementById('banner').textContent`, &banner))
	if !strings.Contains(banner, "graph NoSuchGraph01 not found") {
		t.Errorf("banner %q does not pass on the API's message", banner)
	}
}

// testExpiredGraph: a graph af serve deleted at its expiry (410) reads
// "Graph expired" with the API's message, and the page stops polling.
func testExpiredGraph(t *testing.T, browser *browsertest.Browser) {
	_, srv := startSite(t, Options{PollInterval: 300 * time.Millisecond})
	tab := browser.NewTab(t)
	must(t, tab.Navigate(srv.URL+"/graphs/ExpiredGraph01", wait))
	must(t, tab.WaitFor(`document.getElementById('graph-name').textContent === 'Graph expired'`, wait))
	var banner string
	must(t, tab.Eval(`document.getElementById('banner').textContent`, &banner))
	if !strings.Contains(banner, "graph ExpiredGraph01 expired at 2026-03-01T12:00:00Z") {
		t.Errorf("banner %q does not pass on the API's message", banner)
	}
}

// testResultViaS3 checks the path `af serve` really takes: the result link
// answers 303 to a presigned URL on S3 (a real MinIO, another origin), and
// the page still shows the result inline, which needs S3's CORS answer and
// the page's connect-src to allow it.
func testResultViaS3(t *testing.T, browser *browsertest.Browser) {
	s3srv := miniotest.Start(t, "af-artifacts")
	b := graphBuilder{base: time.Now().Add(-10 * time.Minute).Truncate(time.Second)}
	g := liveGraph(b)
	g.GraphID, g.State, g.Resolved, g.ResultTaskID = "S3Graph000001", taskdef.GraphCompleted, b.at(500), taskID("R", 1)
	for i := range g.Tasks {
		g.Tasks[i].State = taskdef.StateCompleted
		g.Tasks[i].Runs = []taskdef.Run{b.run(0, taskdef.StateCompleted, 10, 400, "w-alpha", taskdef.Stats{Files: 1})}
	}
	result := strings.Repeat("release,WINNT,91234\n", 5000) // 100 KB: more than the preview
	s3srv.Put(t, "af-artifacts", g.ResultTaskID+"/0/"+taskdef.ResultArtifact, []byte(result))

	api, srv := startSite(t, Options{PollInterval: 300 * time.Millisecond, ResultPreviewBytes: 4096})
	presign := s3.NewPresignClient(s3srv.S3)
	api.setRedirect(func(taskID, name string) (string, error) {
		p, err := presign.PresignGetObject(context.Background(), &s3.GetObjectInput{
			Bucket: aws.String("af-artifacts"), Key: aws.String(taskID + "/0/" + name)}, s3.WithPresignExpires(time.Minute))
		if err != nil {
			return "", err
		}
		return p.URL, nil
	})
	api.set(g)

	tab := browser.NewTab(t)
	must(t, tab.Navigate(srv.URL+"/graphs/"+g.GraphID, wait))
	must(t, tab.WaitFor(`['true', 'error'].includes(document.getElementById('result-text').dataset.loaded)`, wait))
	var shown struct{ Loaded, Text, Note string }
	must(t, tab.Eval(`({loaded: document.getElementById('result-text').dataset.loaded,
		text: document.getElementById('result-text').textContent,
		note: document.getElementById('result-note').textContent})`, &shown))
	if shown.Loaded != "true" {
		t.Fatalf("result not shown through the S3 redirect: %s", shown.Text)
	}
	if len(shown.Text) != 4096 || !strings.HasPrefix(shown.Text, "release,WINNT,91234\n") {
		t.Errorf("preview is %d bytes starting %q, want the first 4096", len(shown.Text), shown.Text[:min(40, len(shown.Text))])
	}
	if !strings.Contains(shown.Note, "first 4.00 KiB") {
		t.Errorf("note %q does not say the preview is cut", shown.Note)
	}
}

// testNoWorker: a running graph whose tasks wait with no worker asking
// for work says so, and stops saying it once a task runs.
func testNoWorker(t *testing.T, browser *browsertest.Browser) {
	api, srv := startSite(t, Options{PollInterval: 300 * time.Millisecond, NoWorkerAfter: 5 * time.Second})
	b := graphBuilder{base: time.Now().Add(-95 * time.Second).Truncate(time.Second)}
	g := taskdef.GraphStatus{GraphID: "IdleGraph0001", Name: "idle", Owner: "a@example.com", State: taskdef.GraphRunning, Created: b.base,
		Workers: &taskdef.WorkerActivity{Since: b.base.Add(-time.Hour), LiveWindowSeconds: 50}}
	for i := range 3 {
		g.Tasks = append(g.Tasks, taskdef.TaskStatus{TaskID: fmt.Sprintf("idletask%04d", i), Name: fmt.Sprintf("mapper-%d", i), Kind: taskdef.KindMapper,
			State: taskdef.StatePending, Runs: []taskdef.Run{{RunID: 0, State: taskdef.StatePending, ReasonCreated: taskdef.ReasonScheduled, Scheduled: b.at(0)}}})
	}
	api.set(g)
	tab := browser.NewTab(t)
	must(t, tab.Navigate(srv.URL+"/graphs/"+g.GraphID, wait))
	must(t, tab.WaitFor(`!document.getElementById('no-worker').hidden`, wait))
	var text string
	must(t, tab.Eval(`document.getElementById('no-worker').textContent`, &text))
	for _, w := range []string{"No worker has claimed a task for 1m 3", "none has asked af serve for work in the last 50s", "start a worker"} {
		if !strings.Contains(text, w) {
			t.Errorf("notice lacks %q: %s", w, text)
		}
	}
	g.Tasks[0].State = taskdef.StateRunning
	g.Tasks[0].Runs[0] = b.run(0, taskdef.StateRunning, 94, -1, "w-alpha", taskdef.Stats{})
	api.set(g)
	must(t, tab.WaitFor(`document.getElementById('no-worker').hidden`, wait))
	if errs := tab.Errors(); len(errs) > 0 {
		t.Errorf("JavaScript errors: %v", errs)
	}
}
