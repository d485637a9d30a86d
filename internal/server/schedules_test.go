package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
)

const dailyTemplate = `{"version":1,"dimensions":[
	{"field_name":"reason","allowed_values":"saved_session"},
	{"field_name":"appName","allowed_values":"*"},
	{"field_name":"appUpdateChannel","allowed_values":"*"},
	{"field_name":"appVersion","allowed_values":"*"},
	{"field_name":"appBuildID","allowed_values":"*"},
	{"field_name":"submission_date","allowed_values":["__TARGET_DATE__"]}]}`

// scheduleEnv is a server over real MinIO (S3 and STS) whose index holds
// a few files for each of several submission dates; config, when given,
// edits the server's config.
func scheduleEnv(t testing.TB, config ...func(*Config)) (*env, map[string][]string) {
	t.Helper()
	m := miniotest.Start(t, "telemetry")
	pub, _, err := creds.GenerateKeyPair(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	o := envOpts{s3: m.S3, aws: &m.Config, poolKey: pub}
	if len(config) > 0 {
		o.config = config[0]
	}
	e := newEnv(t, o)
	byDate := map[string][]string{}
	for d := 25; d <= 28; d++ {
		date := fmt.Sprintf("202602%02d", d)
		for i := range d - 23 { // 2, 3, 4, 5 files
			key := layout.Key("data", []string{"saved-session", "Firefox", "release", "30.0", "20260201000000", date}, 2, fmt.Sprintf("%08d-0000-0000-0000-%012d", d, i), "lzma")
			m.Put(t, "telemetry", key, []byte("x"))
			byDate[date] = append(byDate[date], key)
		}
	}
	if _, err := e.submit.IndexBuild(ctxT(t), taskdef.IndexBuildRequest{Bucket: "telemetry", Prefix: ptr("data")}); err != nil {
		t.Fatal(err)
	}
	return e, byDate
}

// inputs lists a graph's mapper inputs, sorted.
func inputs(t testing.TB, e *env, graphID string) []string {
	t.Helper()
	g, err := e.admin.Graph(ctxT(t), graphID)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, ts := range g.Tasks {
		if ts.Kind != taskdef.KindMapper {
			continue
		}
		def, err := e.admin.TaskDefinition(ctxT(t), ts.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range def.Payload.Inputs {
			keys = append(keys, in.Key)
		}
	}
	slices.Sort(keys)
	return keys
}

func TestScheduleMakesRunsThroughTheServer(t *testing.T) {
	t.Parallel()
	e, byDate := scheduleEnv(t)
	ctx := ctxT(t)

	// A template that renders to an invalid filter is refused, showing
	// the rendered text.
	bad := strings.Replace(dailyTemplate, `"submission_date"`, `"submission_dat"`, 1)
	_, err := e.submit.CreateSchedule(ctx, taskdef.ScheduleSpec{Name: "daily", Cron: "5 16 * * *", Template: json.RawMessage(bad), Image: "af/os-count"})
	if !errors.Is(err, queueclient.ErrInvalid) || !strings.Contains(err.Error(), "rendered filter") || !strings.Contains(err.Error(), `"allowed_values":["20260228"]`) {
		t.Fatalf("create with a bad template: %v; want a 400 with the rendered filter", err)
	}
	for _, tc := range []struct {
		spec taskdef.ScheduleSpec
		want string
	}{
		{taskdef.ScheduleSpec{Name: "x", Cron: "5 16 * *", Template: json.RawMessage(dailyTemplate), Image: "i"}, "--cron"},
		{taskdef.ScheduleSpec{Name: "x", Cron: "@daily", Template: json.RawMessage(dailyTemplate), Image: "i", Timezone: "Mars/Base"}, "time zone"},
		{taskdef.ScheduleSpec{Name: "x", Cron: "@daily", Template: json.RawMessage(dailyTemplate), Image: "i", ExpectWithin: "soon"}, "--expect-within"},
		{taskdef.ScheduleSpec{Name: "x", Cron: "@daily", Template: json.RawMessage(`{"version":1,"dimensions":[{"field_name":"reason","allowed_values":"__TARGET_DAY__"}]}`), Image: "i"}, "unknown placeholder"},
	} {
		if _, err := e.submit.CreateSchedule(ctx, tc.spec); !errors.Is(err, queueclient.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("create %+v: %v; want a 400 naming %q", tc.spec, err, tc.want)
		}
	}
	if _, err := e.reader.CreateSchedule(ctx, taskdef.ScheduleSpec{Name: "daily", Cron: "5 16 * * *", Template: json.RawMessage(dailyTemplate), Image: "af/os-count"}); !errors.Is(err, queueclient.ErrForbidden) {
		t.Errorf("a read identity creates a schedule: %v", err)
	}

	st, err := e.submit.CreateSchedule(ctx, taskdef.ScheduleSpec{Name: "daily", Cron: "5 16 * * *", Template: json.RawMessage(dailyTemplate), Image: "af/os-count", ExpectWithin: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Owner != "the-submitter" || st.State != "active" || st.NextDue.Format(time.RFC3339) != "2026-03-01T16:05:00Z" || st.NextTarget.Format("20060102") != "20260228" {
		t.Fatalf("created %+v; want owner the-submitter, active, next due 16:05 for the 28th", st)
	}

	// The tick at 16:05 makes the run for the 28th.
	e.clock.Advance(4*time.Hour + 5*time.Minute)
	if _, err := e.srv.scheduler.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	runs, err := e.submit.ScheduleRuns(ctx, "daily")
	if err != nil {
		t.Fatal(err)
	}
	if len(runs.Runs) != 1 || runs.Runs[0].Label != "20260228" || runs.Runs[0].RunState != "launched" || runs.Runs[0].Files != 5 {
		t.Fatalf("runs %+v; want one launched for 20260228 reading 5 files", runs.Runs)
	}
	r := runs.Runs[0]
	g, err := e.submit.Graph(ctx, r.GraphID)
	if err != nil {
		t.Fatal(err)
	}
	if g.Schedule == nil || g.Schedule.Name != "daily" || g.Schedule.Label != "20260228" || g.Schedule.Kind != "scheduled" {
		t.Errorf("graph's schedule %+v; want daily@20260228, scheduled", g.Schedule)
	}
	if g.Name != "daily@20260228" || g.Owner != "the-submitter" || g.Priority != taskdef.PriorityNormal {
		t.Errorf("graph %s owner %s priority %s; want daily@20260228 of the-submitter, normal", g.Name, g.Owner, g.Priority)
	}
	if got, want := inputs(t, e, r.GraphID), byDate["20260228"]; !slices.Equal(got, want) {
		t.Errorf("inputs %v, want the 28th's %v", got, want)
	}

	// Late: not completed an hour after it fell due: one alert entry,
	// however often the scheduler passes.
	e.clock.Advance(61 * time.Minute)
	for range 3 {
		if _, err := e.srv.scheduler.Pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := e.q.OutboxEntries(ctx, r.GraphID)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Alert != queue.AlertLate {
		t.Fatalf("outbox entries of the late run: %+v; want one late alert", entries)
	}

	// A backfill of three dates: three runs behind the schedule's own.
	bf, err := e.submit.Backfill(ctx, "daily", taskdef.BackfillRequest{From: "20260225", To: "2026-02-27", Parallel: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(bf.Runs) != 3 || bf.Runs[0].Label != "20260225" || bf.Runs[2].Label != "20260227" {
		t.Fatalf("backfill runs %+v; want the 25th to the 27th", bf.Runs)
	}
	if _, err := e.srv.scheduler.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	runs, _ = e.submit.ScheduleRuns(ctx, "daily")
	launched := map[string]taskdef.ScheduleRun{}
	for _, r := range runs.Runs {
		if r.Kind == "backfill" && r.RunState == "launched" {
			launched[r.Label] = r
		}
	}
	if len(launched) != 2 {
		t.Fatalf("backfill runs launched: %v; want 2 (--parallel 2)", launched)
	}
	for label, r := range launched {
		g, _ := e.submit.Graph(ctx, r.GraphID)
		if g.Priority != taskdef.PriorityLow {
			t.Errorf("backfill graph %s priority %q, want low", label, g.Priority)
		}
		if got, want := inputs(t, e, r.GraphID), byDate[label]; !slices.Equal(got, want) {
			t.Errorf("backfill %s inputs %v, want %v", label, got, want)
		}
	}
	if _, err := e.submit.Backfill(ctx, "daily", taskdef.BackfillRequest{From: "tomorrow", To: "20260227"}); !errors.Is(err, queueclient.ErrInvalid) || !strings.Contains(err.Error(), "--from") {
		t.Errorf("backfill with a bad date: %v", err)
	}

	// Pause, resume, update, delete; only the owner or an admin.
	if _, err := e.reader.PauseSchedule(ctx, "daily"); !errors.Is(err, queueclient.ErrForbidden) {
		t.Errorf("reader pauses: %v", err)
	}
	if st, err := e.submit.PauseSchedule(ctx, "daily"); err != nil || st.State != "paused" {
		t.Errorf("pause: %+v %v", st, err)
	}
	if _, err := e.submit.PauseSchedule(ctx, "daily"); !errors.Is(err, queueclient.ErrConflict) {
		t.Errorf("pause twice: %v, want 409", err)
	}
	if st, err := e.admin.ResumeSchedule(ctx, "daily"); err != nil || st.State != "active" {
		t.Errorf("admin resumes: %+v %v", st, err)
	}
	cron := "0 3 * * *"
	if st, err := e.submit.UpdateSchedule(ctx, "daily", taskdef.ScheduleUpdate{Cron: &cron}); err != nil || st.Cron != cron || st.Image != "af/os-count" {
		t.Errorf("update: %+v %v", st, err)
	}
	list, err := e.reader.Schedules(ctx)
	if err != nil || len(list) != 1 {
		t.Errorf("reader lists %v %v", list, err)
	}
	if _, err := e.submit.DeleteSchedule(ctx, "daily"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.submit.Schedule(ctx, "daily"); !errors.Is(err, queueclient.ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
}

// TestScheduledRunWithNoFilesIsRefused: a target the data has not reached
// is recorded as refused with the reason, not retried forever.
func TestScheduledRunWithNoFilesIsRefused(t *testing.T) {
	t.Parallel()
	e, _ := scheduleEnv(t)
	ctx := ctxT(t)
	if _, err := e.submit.CreateSchedule(ctx, taskdef.ScheduleSpec{Name: "late-data", Cron: "5 16 * * *", Template: json.RawMessage(dailyTemplate), Image: "af/os-count"}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(28*time.Hour + 5*time.Minute) // the tick of the 2nd: target the 1st, no data
	_, _ = e.srv.scheduler.Pass(ctx)
	runs, err := e.submit.ScheduleRuns(ctx, "late-data")
	if err != nil {
		t.Fatal(err)
	}
	if len(runs.Runs) != 1 || runs.Runs[0].RunState != "refused" || !strings.Contains(runs.Runs[0].Message, "selects no files") {
		t.Fatalf("runs %+v; want one refused: selects no files", runs.Runs)
	}
}
