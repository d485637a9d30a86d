package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
)

// claimCompleteBench runs b.N claim+complete cycles over loopback HTTP
// with 16 workers, over b.N pending tasks of owners owners. It uses only
// what the queue had before fair shares, so bench/80-fair.sh runs this
// file against the base revision's server too.
func claimCompleteBench(b *testing.B, e *benchEnv, owners int) {
	TuneGC()
	workers := benchWorkers()
	ctx := context.Background()
	sub := queueclient.New(e.http.URL, submitTok)
	per := (b.N + owners - 1) / owners
	for o := range owners {
		for left := min(per, b.N-o*per); left > 0; left -= 10000 {
			g := flatGraph(min(left, 10000))
			g.Owner = fmt.Sprintf("owner%d@example.org", o)
			if _, err := sub.CreateGraph(ctx, g); err != nil {
				b.Fatal(err)
			}
		}
	}
	var (
		mu   sync.Mutex
		lat  []time.Duration
		wg   sync.WaitGroup
		next = make(chan struct{}, b.N)
	)
	for range b.N {
		next <- struct{}{}
	}
	close(next)
	b.ResetTimer()
	cpu := startCPU()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := queueclient.New(e.http.URL, workTok)
			req := taskdef.ClaimRequest{WorkerGroup: "bench", WorkerID: fmt.Sprintf("w%d", w), Tasks: 1}
			var mine []time.Duration
			for range next {
				start := time.Now()
				claims, err := c.ClaimWork(ctx, req, time.Second)
				mine = append(mine, time.Since(start))
				if err != nil {
					b.Error(err)
					return
				}
				if len(claims) != 1 {
					b.Errorf("claimed %d tasks", len(claims))
					return
				}
				if _, err := c.Claimed(claims[0]).ReportCompleted(ctx, taskdef.ReportRequest{}); err != nil {
					b.Error(err)
					return
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.StopTimer()
	cpu.stop()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
	b.ReportMetric(cpu.perOp(b.N), "cpu-us/cycle")
	b.ReportMetric(pct(0.50), "claim-p50-ms")
	b.ReportMetric(pct(0.99), "claim-p99-ms")
}
