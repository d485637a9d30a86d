package queue

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

// BenchmarkClaimCompleteOneOwner is claim+complete cycles in process, 16
// workers, one owner's pending tasks (random ids, as af submit makes):
// what fair shares cost when there is nothing to share.
func BenchmarkClaimCompleteOneOwner(b *testing.B) {
	q, err := Open(filepath.Join(b.TempDir(), "queue.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	benchOwners(b, q, 1)
}

// benchOwners runs b.N claim+complete cycles with 16 workers over b.N
// pending tasks of owners owners, reporting cycles/s and bbolt page writes
// per commit. The base revision's queue runs the same function (bench/80-fair.sh).
func benchOwners(b *testing.B, q *Queue, owners int) {
	per := (b.N + owners - 1) / owners
	for o := range owners {
		n := min(per, b.N-o*per)
		if n <= 0 {
			break
		}
		gid := fmt.Sprintf("graph-%04d", o)
		g := taskdef.Graph{GraphID: gid, Name: "job", Owner: fmt.Sprintf("owner%d", o)}
		for i := 0; i < n; i++ {
			task := mkTask(gid, taskdef.KindMapper, 0)
			task.Metadata.Owner = g.Owner
			task.Created = time.Now()
			task.Deadline = time.Now().Add(time.Hour)
			task.Expires = time.Now().Add(24 * time.Hour)
			g.Tasks = append(g.Tasks, taskdef.GraphTask{TaskID: taskdef.NewID(), Task: task})
		}
		mustCreate(b, q, g)
	}
	work := make(chan struct{}, b.N)
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	st0 := q.db.Stats()
	c0 := q.commits.Load()
	b.ResetTimer()
	done := make(chan error, 16)
	for w := range 16 {
		go func() {
			req := taskdef.ClaimRequest{WorkerGroup: "b", WorkerID: fmt.Sprintf("w%d", w), Tasks: 1}
			for range work {
				cs, err := q.Claim(bg, req)
				if err != nil || len(cs) != 1 {
					done <- fmt.Errorf("claim: %v, %d", err, len(cs))
					return
				}
				if _, err := q.ReportCompleted(bg, cs[0].TaskID, cs[0].RunID, cs[0].RunToken, taskdef.ReportRequest{}); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 16 {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	st := q.db.Stats()
	commits := float64(max(q.commits.Load()-c0, 1))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
	b.ReportMetric(float64(st.TxStats.GetWrite()-st0.TxStats.GetWrite())/commits, "page-writes/commit")
	b.ReportMetric(float64(b.N*2)/commits, "writes/commit")
}
