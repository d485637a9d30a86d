package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/af-project/af/internal/browsertest"
	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
)

// dailyTemplate is telemetry-server's filter_template.json: every
// saved-session ping of the target's submission date.
const dailyTemplate = `{
  "version": 1,
  "dimensions": [
    {"field_name": "reason", "allowed_values": "saved_session"},
    {"field_name": "appName", "allowed_values": "*"},
    {"field_name": "appUpdateChannel", "allowed_values": "*"},
    {"field_name": "appVersion", "allowed_values": "*"},
    {"field_name": "appBuildID", "allowed_values": "*"},
    {"field_name": "submission_date", "allowed_values": ["__TARGET_DATE__"]}
  ]
}`

// TestScheduleBackfillEndToEnd: a daily schedule over telemetry spread
// over several submission dates; a backfill of three dates makes three
// runs, each reading its own date's files, whose results are what the
// data generator made for that date; af result NAME@DATE prints each, af
// runs lists them, and the owner gets one email per run.
func TestScheduleBackfillEndToEnd(t *testing.T) {
	t.Parallel()
	afBin, workerBin := binaries(t)
	clustertest.RequireImages(t, "af/os-count")
	c := clustertest.Start(t, clustertest.Options{})
	days := []string{"20140307", "20140308", "20140309", "20140310"}
	// One set per date, each with its own number of documents, so each
	// date's counts differ and a run that read another date shows.
	var files []synth.File
	want := map[string]string{}
	for i, day := range days {
		set, err := synth.Generate(synth.Spec{
			Reasons: []string{"saved-session", "idle-daily"}, Channels: []string{"nightly", "beta"},
			Versions: []string{"30.0a1"}, BuildIDs: []string{"20140301030201"},
			Days: []string{day}, FilesPerPartition: 2, DocsPerFile: 7 + 4*i, HistogramSize: 2,
			Formats: []string{"gz", "lzma"}, Seed: uint64(15 + i),
		})
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, set.Files...)
		want[day] = synth.FormatOSCounts(set.CountByOS(func(f synth.File) bool { return strings.ReplaceAll(f.Dims[0], "-", "_") == "saved_session" }))
	}
	if err := synth.Upload(context.Background(), c.MinIO.S3, clustertest.InputBucket, files); err != nil {
		t.Fatal(err)
	}
	schemaJSON, err := os.ReadFile(filepath.Join(repoRoot(), "filters", "telemetry_schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit.IndexBuild(context.Background(), taskdef.IndexBuildRequest{Bucket: clustertest.InputBucket, Schema: schemaJSON}); err != nil {
		t.Fatal(err)
	}
	if want[days[0]] == want[days[1]] {
		t.Fatal("the generator made the same counts for two dates; the test could not tell runs apart")
	}
	startWorkerProcess(t, c, workerBin, "sched-w1")
	startWorkerProcess(t, c, workerBin, "sched-w2")

	dir := t.TempDir()
	tmpl := filepath.Join(dir, "filter_template.json")
	if err := os.WriteFile(tmpl, []byte(dailyTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, error) {
		cmd := afCmd(c, afBin, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}

	// A template whose rendering is not a valid filter is refused, with
	// the rendered text.
	badField := filepath.Join(dir, "bad-field.json")
	if err := os.WriteFile(badField, []byte(strings.Replace(dailyTemplate, `"submission_date"`, `"submission_day"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := run("schedule", "create", "bad-field", "--cron", "5 16 * * *", badField, "af/os-count"); err == nil || !strings.Contains(errOut, "rendered filter") || !strings.Contains(errOut, "submission_day") {
		t.Errorf("create with a template that renders invalid: %v\n%s", err, errOut)
	}

	out, errOut, err := run("schedule", "create", "daily-os", "--cron", "5 16 * * *", tmpl, "af/os-count", "--owner", "analyst@example.com", "--max-active", "2")
	if err != nil || !strings.Contains(out, "schedule daily-os created: next run") {
		t.Fatalf("af schedule create: %v\n%s%s", err, out, errOut)
	}
	out, errOut, err = run("backfill", "daily-os", "--from", "20140307", "--to", "2014-03-09", "--parallel", "2")
	if err != nil || !strings.Contains(out, "3 run(s) queued: 20140307, 20140308, 20140309") {
		t.Fatalf("af backfill: %v\n%s%s", err, out, errOut)
	}
	for _, day := range days[:3] {
		cmd := afCmd(c, afBin, "result", "daily-os@"+day, "--wait")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Start()
		if err == nil {
			timer := time.AfterFunc(3*time.Minute, func() { _ = cmd.Process.Kill() })
			err = cmd.Wait()
			timer.Stop()
		}
		if err != nil || stdout.String() != want[day] {
			t.Fatalf("af result daily-os@%s: %v\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", day, err, stdout.String(), want[day], stderr.String())
		}
	}
	// Each result is also at its stable name in the artifact bucket, for
	// other tools.
	for _, day := range days[:3] {
		key := "schedules/daily-os/" + day + "/result.txt"
		deadline := time.Now().Add(time.Minute)
		for {
			obj, err := c.MinIO.S3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(clustertest.ArtifactBucket), Key: aws.String(key)})
			if err == nil {
				body, _ := io.ReadAll(obj.Body)
				obj.Body.Close()
				if string(body) != want[day] {
					t.Errorf("%s holds\n%s\nwant\n%s", key, body, want[day])
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never appeared in the artifact bucket: %v", key, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// The date the backfill did not cover has no run.
	if _, errOut, err := run("result", "daily-os@20140310"); err == nil || !strings.Contains(errOut, "af backfill daily-os --from 20140310") {
		t.Errorf("af result for a date without a run: %v\n%s", err, errOut)
	}
	// af result NAME is the newest completed run.
	if out, _, err := run("result", "daily-os"); err != nil || out != want["20140309"] {
		t.Errorf("af result daily-os: %v\n%s", err, out)
	}

	out, errOut, err = run("runs", "daily-os")
	if err != nil {
		t.Fatalf("af runs: %v\n%s", err, errOut)
	}
	for _, day := range days[:3] {
		if !strings.Contains(out, day+"  backfill  completed") || !strings.Contains(out, "af result daily-os@"+day) {
			t.Errorf("af runs does not show %s completed:\n%s", day, out)
		}
	}
	// Each run records what it was made from: the template as given, the
	// filter as rendered for its date, its schedule and target; af
	// resubmit runs one again, to the same result.
	runs, err := c.Submit.ScheduleRuns(context.Background(), "daily-os")
	if err != nil {
		t.Fatal(err)
	}
	var mid taskdef.ScheduleRun
	for _, r := range runs.Runs {
		if r.Label == days[1] {
			mid = r
		}
	}
	prov, err := c.Submit.Provenance(context.Background(), mid.GraphID)
	if err != nil {
		t.Fatalf("the run of %s (graph %q) has no provenance: %v", days[1], mid.GraphID, err)
	}
	if prov.MadeBy != "schedule" || prov.Schedule != "daily-os" || prov.Target == nil || !prov.Target.Equal(mid.Target) ||
		!strings.Contains(string(prov.Filter), "__TARGET_DATE__") || !strings.Contains(string(prov.Rendered), `["`+days[1]+`"]`) || strings.Contains(string(prov.Rendered), "__TARGET") || len(prov.ETags) != len(prov.Inputs) || len(prov.Inputs) == 0 {
		t.Errorf("run %s's provenance: made by %q, schedule %q, target %v, filter %s, rendered %s, %d inputs %d etags", days[1], prov.MadeBy, prov.Schedule, prov.Target, prov.Filter, prov.Rendered, len(prov.Inputs), len(prov.ETags))
	}
	if out, errOut, err := run("resubmit", mid.GraphID, "--wait", "-q"); err != nil || out != want[days[1]] {
		t.Errorf("af resubmit of the %s run: %v\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", days[1], err, out, want[days[1]], errOut)
	}
	if out, _, err := run("schedule", "list"); err != nil || !strings.Contains(out, "daily-os") || !strings.Contains(out, "active") {
		t.Errorf("af schedule list: %v\n%s", err, out)
	}
	// The schedule page in headless Chromium: signed in with the submit
	// token, its grid has one completed backfill cell per date, each
	// linking to its graph, and the chart a bar for each.
	browser := browsertest.Start(t)
	tab := browser.NewTab(t)
	wait := time.Minute
	if err := tab.Navigate(c.URL+"/schedules/daily-os", wait); err != nil {
		t.Fatal(err)
	}
	if err := tab.WaitFor(`location.pathname === '/signin' && !!document.getElementById('signin-token')`, wait); err != nil {
		t.Fatal(err)
	}
	if err := tab.Eval(`document.getElementById('signin-token').value = `+strconv.Quote(c.SubmitToken)+`; true`, nil); err != nil {
		t.Fatal(err)
	}
	if err := tab.Click(`#signin-submit`, wait); err != nil {
		t.Fatal(err)
	}
	if err := tab.WaitFor(`location.pathname === '/schedules/daily-os' && document.querySelectorAll('#grid .rcell[data-state="completed"][data-kind="backfill"]').length === 3`, wait); err != nil {
		t.Fatalf("the schedule page's grid never showed three completed backfill runs: %v", err)
	}
	var cells []struct{ Label, Href string }
	if err := tab.Eval(`[...document.querySelectorAll('#grid .rcell')].map((c) => ({Label: c.dataset.label, Href: c.getAttribute('href') || ''}))`, &cells); err != nil {
		t.Fatal(err)
	}
	if len(cells) != 3 {
		t.Errorf("grid cells %+v; want the three backfilled dates", cells)
	}
	for i, cell := range cells {
		if cell.Label != days[i] || !strings.HasPrefix(cell.Href, "/graphs/") {
			t.Errorf("grid cell %d: %+v; want %s linking to its graph", i, cell, days[i])
		}
	}
	var bars int
	if err := tab.Eval(`document.querySelectorAll('#chart rect.dbar').length`, &bars); err != nil || bars != 3 {
		t.Errorf("chart bars %d (%v); want one per completed run", bars, err)
	}
	if errs := tab.Errors(); len(errs) > 0 {
		t.Errorf("the schedule page logged errors: %v", errs)
	}
	if _, err := tab.Screenshot("schedule-page-e2e"); err != nil {
		t.Error(err)
	}

	if out, _, err := run("schedule", "pause", "daily-os"); err != nil || !strings.Contains(out, "is paused") {
		t.Errorf("af schedule pause: %v\n%s", err, out)
	}

	// One email per run, to the owner, named by schedule and date.
	msgs := c.SMTP.WaitFor(t, 3, time.Minute)
	var subjects []string
	for _, m := range msgs {
		subjects = append(subjects, m.Subject)
	}
	sort.Strings(subjects)
	for i, day := range days[:3] {
		if i >= len(subjects) || subjects[i] != fmt.Sprintf("[af] daily-os@%s: completed", day) {
			t.Errorf("emails %q; want one completed per backfilled date", subjects)
			break
		}
	}
}
