package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
)

// benchEnv is a server as `af serve` runs it (real clock, request logs
// formatted at info level, into io.Discard) on a loopback listener.
type benchEnv struct {
	q    *queue.Queue
	http *httptest.Server
}

func newBenchEnv(b *testing.B) *benchEnv { return newBenchEnvSched(b, queue.Scheduling{}) }

// newBenchEnvSched is newBenchEnv with a claim order and caps.
func newBenchEnvSched(b *testing.B, sched queue.Scheduling) *benchEnv {
	b.Helper()
	dir := b.TempDir()
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	q, err := queue.Open(filepath.Join(dir, "queue.db"), queue.Options{Logger: logger, Scheduling: sched})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close() })
	cfg := Config{Data: dir, Tokens: []Token{
		{Name: "s", Role: RoleSubmit, Token: submitTok}, {Name: "w", Role: RoleWork, Token: workTok}}}
	if err := cfg.Normalize("bench"); err != nil {
		b.Fatal(err)
	}
	srv, err := New(cfg, Deps{Queue: q, Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	b.Cleanup(hs.Close)
	return &benchEnv{q: q, http: hs}
}

// flatGraph is n independent mapper tasks (all pending at once).
func flatGraph(n int) taskdef.Graph {
	g := testGraph(n, time.Now())
	return taskdef.Graph{GraphID: g.GraphID, Name: g.Name, Owner: g.Owner, Tasks: g.Tasks[:n]}
}

// BenchmarkCreateGraph10k posts a 10,000-task graph (9,999 mappers and
// their reducer) over HTTP; one op is one graph.
func BenchmarkCreateGraph10kHTTP(b *testing.B) {
	TuneGC()
	e := newBenchEnv(b)
	c := queueclient.New(e.http.URL, submitTok)
	graphs := make([]taskdef.Graph, b.N)
	for i := range graphs {
		graphs[i] = testGraph(9999, time.Now())
	}
	b.ResetTimer()
	cpu := startCPU()
	for i := range b.N {
		if _, err := c.CreateGraph(context.Background(), graphs[i]); err != nil {
			b.Fatal(err)
		}
	}
	cpu.stop()
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/graph")
	b.ReportMetric(cpu.perOp(b.N)/1e6, "cpu-s/graph")
}

// BenchmarkCreateGraph10kInProcess is the same without HTTP.
func BenchmarkCreateGraph10kInProcess(b *testing.B) {
	TuneGC()
	e := newBenchEnv(b)
	graphs := make([]taskdef.Graph, b.N)
	for i := range graphs {
		graphs[i] = testGraph(9999, time.Now())
	}
	b.ResetTimer()
	cpu := startCPU()
	for i := range b.N {
		if _, err := e.q.CreateGraph(context.Background(), graphs[i]); err != nil {
			b.Fatal(err)
		}
	}
	cpu.stop()
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/graph")
	b.ReportMetric(cpu.perOp(b.N)/1e6, "cpu-s/graph")
}

// BenchmarkClaimComplete16 runs b.N claim+complete cycles over loopback
// HTTP with 16 concurrent workers, each claiming one task at a time; it
// reports cycles per second and claimWork's p50/p99 latency.
func BenchmarkClaimComplete16(b *testing.B) {
	claimCompleteBench(b, newBenchEnv(b), 1)
}

// BenchmarkClaimCompleteOwners16 is BenchmarkClaimComplete16 with the
// tasks spread over 8 owners' graphs (and so 8 runs of the pending index
// for each claim to choose from), in fair-share and in FIFO order: the
// cost of fair shares.
func BenchmarkClaimCompleteOwners16(b *testing.B) {
	for _, c := range []struct {
		name  string
		sched queue.Scheduling
	}{{"fair", queue.Scheduling{}}, {"fifo", queue.Scheduling{FIFO: true}}} {
		b.Run(c.name, func(b *testing.B) { claimCompleteBench(b, newBenchEnvSched(b, c.sched), 8) })
	}
}

// BenchmarkGetGraph3000 reads a 3,000-task graph's status over HTTP, as
// the monitor page does on every refresh.
func BenchmarkGetGraph3000(b *testing.B) {
	TuneGC()
	e := newBenchEnv(b)
	ctx := context.Background()
	g := testGraph(2999, time.Now())
	c := queueclient.New(e.http.URL, submitTok)
	if _, err := c.CreateGraph(ctx, g); err != nil {
		b.Fatal(err)
	}
	// Give the tasks runs, as a graph being watched has.
	w := queueclient.New(e.http.URL, workTok)
	for range 10 {
		claims, err := w.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 100}, 0)
		if err != nil {
			b.Fatal(err)
		}
		for _, cl := range claims {
			if _, err := w.Claimed(cl).ReportCompleted(ctx, taskdef.ReportRequest{Stats: taskdef.Stats{Files: 3, Bytes: 1 << 20}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	cpu := startCPU()
	for range b.N {
		st, err := c.Graph(ctx, g.GraphID)
		if err != nil || len(st.Tasks) != 3000 {
			b.Fatal(len(st.Tasks), err)
		}
	}
	cpu.stop()
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/read")
	b.ReportMetric(cpu.perOp(b.N)/1000, "cpu-ms/read")
}

// benchWorkers is 16 (the target's), or AF_BENCH_WORKERS to explore.
func benchWorkers() int {
	if n, err := strconv.Atoi(os.Getenv("AF_BENCH_WORKERS")); err == nil && n > 0 {
		return n
	}
	return 16
}

// BenchmarkClaimComplete16InProcess is the same cycle against the queue
// directly, without HTTP: the baseline that shows what HTTP costs.
func BenchmarkClaimComplete16InProcess(b *testing.B) {
	TuneGC()
	workers := benchWorkers()
	e := newBenchEnv(b)
	ctx := context.Background()
	for left := b.N; left > 0; left -= 10000 {
		if _, err := e.q.CreateGraph(ctx, flatGraph(min(left, 10000))); err != nil {
			b.Fatal(err)
		}
	}
	next := make(chan struct{}, b.N)
	for range b.N {
		next <- struct{}{}
	}
	close(next)
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu := startCPU()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := taskdef.ClaimRequest{WorkerGroup: "bench", WorkerID: fmt.Sprintf("w%d", w), Tasks: 1}
			for range next {
				claims, err := e.q.ClaimWait(ctx, req, time.Second)
				if err != nil || len(claims) != 1 {
					b.Errorf("claim: %d %v", len(claims), err)
					return
				}
				if _, err := e.q.ReportCompleted(ctx, claims[0].TaskID, claims[0].RunID, claims[0].RunToken, taskdef.ReportRequest{}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	cpu.stop()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
	b.ReportMetric(cpu.perOp(b.N), "cpu-us/cycle")
}

// cpuMeter measures the process's CPU time (user+system, every thread:
// server, queue and in-process clients alike) over a benchmark. On a
// machine shared with other work, CPU per cycle is the number that does
// not depend on how much of the machine the benchmark got.
type cpuMeter struct{ start, end time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() *cpuMeter { return &cpuMeter{start: processCPU()} }

func (m *cpuMeter) stop() { m.end = processCPU() }

// perOp is CPU microseconds per operation.
func (m *cpuMeter) perOp(n int) float64 {
	return float64((m.end - m.start).Microseconds()) / float64(max(n, 1))
}
