package queue

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

// TestConcurrentClaimers has 32 goroutines claim, reclaim, sometimes give
// up (worker-shutdown) and complete the tasks of one graph while another
// goroutine ticks: every task completes exactly once, no run is handed to
// two claimers, exactly one report learns it ended the graph.
func TestConcurrentClaimers(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t)
	const mappers = 400
	mustCreate(t, q, mapReduce("graph-conc", mappers, 5))

	var (
		mu        sync.Mutex
		owners    = map[string]int{} // "task/run" -> worker
		completed = map[string]int{}
		resolved  atomic.Int32
		done      = make(chan struct{})
		closeOnce sync.Once
	)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			req := taskdef.ClaimRequest{WorkerGroup: "conc", WorkerID: fmt.Sprint("w", w), Tasks: 1 + w%3}
			for {
				select {
				case <-done:
					return
				default:
				}
				cs, err := q.ClaimWait(bg, req, 20*time.Millisecond)
				if err != nil {
					t.Errorf("worker %d claim: %v", w, err)
					return
				}
				for _, c := range cs {
					key := fmt.Sprintf("%s/%d", c.TaskID, c.RunID)
					mu.Lock()
					if prev, ok := owners[key]; ok {
						t.Errorf("run %s claimed by worker %d and %d", key, prev, w)
					}
					owners[key] = w
					mu.Unlock()
					if rng.IntN(4) == 0 {
						if _, err := q.Reclaim(bg, c.TaskID, c.RunID, c.RunToken, taskdef.Stats{Files: 1}); err != nil {
							t.Errorf("reclaim %s: %v", key, err)
						}
					}
					var r taskdef.ReportResponse
					if c.RunID == 0 && rng.IntN(5) == 0 {
						r, err = q.ReportException(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{Reason: taskdef.ReasonWorkerShutdown})
					} else {
						r, err = q.ReportCompleted(bg, c.TaskID, c.RunID, c.RunToken, taskdef.ReportRequest{})
						if err == nil {
							mu.Lock()
							completed[c.TaskID]++
							mu.Unlock()
						}
					}
					if err != nil {
						t.Errorf("report %s: %v", key, err)
						continue
					}
					if r.GraphResolved {
						resolved.Add(1)
						closeOnce.Do(func() { close(done) })
					}
				}
			}
		}(w)
	}
	// Ticks run alongside (no lease expires: the clock stands still) to
	// contend for the writer like the server's ticker does.
	tickStop := make(chan struct{})
	go func() {
		for {
			select {
			case <-tickStop:
				return
			default:
			}
			if _, err := q.Tick(bg); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		close(done)
		t.Error("graph did not finish in 2 minutes")
	}
	wg.Wait()
	close(tickStop)

	if n := resolved.Load(); n != 1 {
		t.Errorf("%d reports resolved the graph, want 1", n)
	}
	gs, err := q.Graph(bg, "graph-conc")
	if err != nil {
		t.Fatal(err)
	}
	if gs.State != taskdef.GraphCompleted {
		t.Errorf("graph %s", gs.State)
	}
	for _, ts := range gs.Tasks {
		if completed[ts.TaskID] != 1 {
			t.Errorf("task %s completed %d times", ts.TaskID, completed[ts.TaskID])
		}
	}
	if len(completed) != mappers+1 {
		t.Errorf("%d tasks completed, want %d", len(completed), mappers+1)
	}
}

// TestGroupCommitIsolatesFailures: a write that fails with an internal error
// rolls back only itself; the refusals and successes batched with it stand.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t)
	mustCreate(t, q, mapReduce("graph-iso1", 20, 5))
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			switch i % 4 {
			case 0:
				errs[i] = q.write(bg, func(w *wtx) error {
					// Writes, then fails: must be rolled back.
					if err := w.graphs.Put([]byte("graph-bogus"), []byte("{}")); err != nil {
						return err
					}
					return boom
				})
			case 1:
				_, errs[i] = q.Rerun(bg, "task-none")
			default:
				_, errs[i] = q.Claim(bg, worker)
			}
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		switch i % 4 {
		case 0:
			if !errors.Is(err, boom) {
				t.Errorf("failing write: %v", err)
			}
		case 1:
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("refusal: %v", err)
			}
		default:
			if err != nil {
				t.Errorf("claim: %v", err)
			}
		}
	}
	if _, err := q.Graph(bg, "graph-bogus"); !errors.Is(err, ErrNotFound) {
		t.Errorf("failed write was committed: %v", err)
	}
	c, _ := q.Counts(bg)
	if c[sRunning] != 20 {
		t.Errorf("%d running after 20 claims", c[sRunning])
	}
}

func BenchmarkCreateGraph10k(b *testing.B) {
	dir := b.TempDir()
	q, err := Open(filepath.Join(dir, "queue.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	now := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		g := mapReduce(fmt.Sprintf("graph-%05d", i), 9999, 5)
		for j := range g.Tasks {
			g.Tasks[j].Task.Created = now
			g.Tasks[j].Task.Deadline = now.Add(24 * time.Hour)
		}
		b.StartTimer()
		if _, err := q.CreateGraph(bg, g); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/graph")
}

// BenchmarkClaimComplete runs claim+complete cycles from 16 goroutines
// against one queue, in process (the HTTP benchmark lives with the server).
func BenchmarkClaimComplete(b *testing.B) {
	q, err := Open(filepath.Join(b.TempDir(), "queue.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	g := mapReduce("graph-bench", b.N+32, 5)
	g.Tasks = g.Tasks[:len(g.Tasks)-1] // mappers only: a reducer over b.N tasks is not what is measured
	now := time.Now()
	for j := range g.Tasks {
		g.Tasks[j].Task.Created = now
		g.Tasks[j].Task.Deadline = now.Add(24 * time.Hour)
	}
	if _, err := q.CreateGraph(bg, g); err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.SetParallelism(16 / max(1, runtimeProcs()))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := taskdef.ClaimRequest{WorkerGroup: "bench", WorkerID: fmt.Sprint("w", n.Add(1)), Tasks: 1}
		for pb.Next() {
			cs, err := q.Claim(bg, req)
			if err != nil || len(cs) != 1 {
				b.Errorf("claim: %d %v", len(cs), err)
				return
			}
			if _, err := q.ReportCompleted(bg, cs[0].TaskID, cs[0].RunID, cs[0].RunToken, taskdef.ReportRequest{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
	b.ReportMetric(float64(q.committed.Load())/float64(max(1, q.commits.Load())), "writes/commit")
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// BenchmarkGraphStatus10k reads the status of a 10,000-task graph, what
// `af status` and the monitor page ask for.
func BenchmarkGraphStatus10k(b *testing.B) {
	q, err := Open(filepath.Join(b.TempDir(), "queue.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	g := mapReduce("graph-read", 9999, 5)
	now := time.Now()
	for j := range g.Tasks {
		g.Tasks[j].Task.Created = now
		g.Tasks[j].Task.Deadline = now.Add(24 * time.Hour)
	}
	if _, err := q.CreateGraph(bg, g); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		gs, err := q.Graph(bg, "graph-read")
		if err != nil || len(gs.Tasks) != 10000 {
			b.Fatalf("%d tasks, %v", len(gs.Tasks), err)
		}
	}
}
