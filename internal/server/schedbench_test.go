package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/schedule"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/taskdef"
)

// benchTemplate selects every file of the scheduleEnv index whatever the
// target (a range of the 400 days up to it), so each run has the same
// inputs however far the fake clock moves.
var benchTemplate = strings.Replace(dailyTemplate, `["__TARGET_DATE__"]`, `{"min": "__TARGET_DATE-400__", "max": "__TARGET_DATE__"}`, 1)

// BenchmarkScheduledRuns100 is 100 schedules falling due at the same
// minute. "scheduler": one op is the scheduler's pass that makes their 100
// graphs, each as af submit makes one (template rendered, index queried,
// S3 credentials minted from real MinIO's STS and sealed, graph posted).
// "submit": the same 100 graphs made through af submit's own code path
// (submit.Submitter: index query and graph post over the server's HTTP
// API), the baseline of the same run.
func BenchmarkScheduledRuns100(b *testing.B) {
	e, _ := scheduleEnv(b)
	ctx := context.Background()
	const n = 100
	for i := range n {
		if _, err := e.submit.CreateSchedule(ctx, taskdef.ScheduleSpec{
			Name: fmt.Sprintf("s%03d", i), Cron: "5 16 * * *", Template: json.RawMessage(benchTemplate), Image: "af/os-count",
		}); err != nil {
			b.Fatal(err)
		}
	}
	passes := 0
	b.Run("scheduler", func(b *testing.B) {
		made := 0
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			e.clock.Advance(24 * time.Hour)
			b.StartTimer()
			if _, err := e.srv.scheduler.Pass(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			made = 0
			for j := range n {
				runs, err := e.srv.schedules.Runs(fmt.Sprintf("s%03d", j))
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range runs {
					if r.State == schedule.RunLaunched {
						made++
					}
				}
			}
			passes++
			if made != n*passes {
				b.Fatalf("%d runs launched after %d passes, want %d", made, passes, n*passes)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "graphs/s")
	})
	b.Run("submit", func(b *testing.B) {
		pub, err := creds.LoadPublicKey(e.cfg.PoolKey)
		if err != nil {
			b.Fatal(err)
		}
		sub := &submit.Submitter{Queue: e.submit, AWS: *e.srv.aws, Now: e.clock.Now}
		filter, err := schedule.Render([]byte(benchTemplate), e.clock.Now(), time.UTC)
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for j := range n {
				p, err := sub.Plan(ctx, submit.Request{FilterName: "template", FilterJSON: filter, Image: "af/os-count", Name: fmt.Sprintf("sub%03d", j), CredentialOptions: submit.CredentialOptions{PublicKey: pub}})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := sub.Post(ctx, p.Graph); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "graphs/s")
	})
}
