package queue

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/af-project/af/internal/clocktest"
	"github.com/af-project/af/internal/taskdef"
)

// The fairness scenario of issue 13: alice posts a 3,000-mapper backfill;
// a moment later bob posts a 20-mapper job; 4 worker slots, every task
// takes a minute. Optionally hal posts a 20-mapper job at priority high
// five minutes in. Workers are simulated on the fake clock: each free slot
// claims one task, and the clock jumps to the next completion.

const (
	simSlots    = 4
	simTaskTime = time.Minute
)

// simGraph is a mapReduce graph of owner whose deadline outlives the
// backfill.
func simGraph(id, owner string, p taskdef.Priority, mappers int) taskdef.Graph {
	g := mapReduce(id, mappers, 0)
	g.Owner, g.Priority = owner, p
	for i := range g.Tasks {
		g.Tasks[i].Task.Metadata.Owner = owner
		g.Tasks[i].Task.Deadline = t0.Add(72 * time.Hour)
		g.Tasks[i].Task.Expires = t0.Add(90 * 24 * time.Hour)
	}
	return g
}

// simResult is what a run of the scenario measured, in simulated time
// from each graph's posting.
type simResult struct {
	bWait, bDone time.Duration
	// aDoneAtB is how many of alice's 3,000 mappers had completed when
	// bob's graph ended.
	aDoneAtB int
	// hWait and hDone are hal's (zero without hal); bDoneAtH is how many
	// of bob's mappers had completed when hal's graph ended.
	hWait, hDone time.Duration
	bDoneAtH     int
	cycles       int
}

type simSlot struct {
	c    *taskdef.Claim
	done time.Time
}

func runFairnessScenario(t testing.TB, sched Scheduling, withHigh bool) simResult {
	t.Helper()
	clk := clocktest.New(t0)
	q, err := Open(filepath.Join(t.TempDir(), "queue.db"), Options{Clock: clk, LeaseDuration: 24 * time.Hour, Scheduling: sched})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	const aID, bID, hID = "graph-alice", "graph-bob0", "graph-hal0"
	mustCreate(t, q, simGraph(aID, "alice@example.com", "", 3000))
	var res simResult
	posted := map[string]time.Time{aID: t0}
	first := map[string]time.Time{}
	completed := map[string]int{}
	ended := map[string]bool{}
	slots := make([]simSlot, simSlots)
	start := t0
	for step := 0; ; step++ {
		now := clk.Now()
		// bob posts 40 ms after the workers started on alice's backfill.
		if step == 1 {
			clk.Advance(start.Add(40 * time.Millisecond).Sub(clk.Now()))
			now = clk.Now()
			mustCreate(t, q, simGraph(bID, "bob@example.com", "", 20))
			posted[bID] = now
		}
		if withHigh && posted[hID].IsZero() && !now.Before(start.Add(5*time.Minute)) {
			mustCreate(t, q, simGraph(hID, "hal@example.com", taskdef.PriorityHigh, 20))
			posted[hID] = now
		}
		for i := range slots {
			if slots[i].c != nil {
				continue
			}
			cs, err := q.Claim(bg, taskdef.ClaimRequest{WorkerGroup: "sim", WorkerID: fmt.Sprintf("w%d", i), Tasks: 1})
			if err != nil {
				t.Fatal(err)
			}
			if len(cs) == 0 {
				break
			}
			g := cs[0].Task.GraphID
			if first[g].IsZero() {
				first[g] = now
			}
			slots[i] = simSlot{c: &cs[0], done: now.Add(simTaskTime)}
		}
		// The next completion; bob and hal post at their times even if
		// the slots are busy.
		var next time.Time
		for _, s := range slots {
			if s.c != nil && (next.IsZero() || s.done.Before(next)) {
				next = s.done
			}
		}
		if step == 0 {
			next = start.Add(40 * time.Millisecond)
		}
		if withHigh && posted[hID].IsZero() && next.After(start.Add(5*time.Minute)) {
			next = start.Add(5 * time.Minute)
		}
		if next.IsZero() {
			break
		}
		clk.Advance(next.Sub(clk.Now()))
		now = next
		for i := range slots {
			s := &slots[i]
			if s.c == nil || s.done.After(now) {
				continue
			}
			r, err := q.ReportCompleted(bg, s.c.TaskID, s.c.RunID, s.c.RunToken, taskdef.ReportRequest{})
			if err != nil {
				t.Fatal(err)
			}
			res.cycles++
			g := s.c.Task.GraphID
			if s.c.Task.Payload.Kind == taskdef.KindMapper {
				completed[g]++
			}
			s.c = nil
			if r.GraphResolved && !ended[g] {
				ended[g] = true
				switch g {
				case bID:
					res.bDone = now.Sub(posted[bID])
					res.aDoneAtB = completed[aID]
				case hID:
					res.hDone = now.Sub(posted[hID])
					res.bDoneAtH = completed[bID]
				}
			}
		}
	}
	if !ended[aID] || !ended[bID] || (withHigh && !ended[hID]) {
		t.Fatalf("the scenario stopped with graphs unfinished: %v", ended)
	}
	res.bWait = first[bID].Sub(posted[bID])
	if withHigh {
		res.hWait = first[hID].Sub(posted[hID])
	}
	return res
}

// TestFairShareScenario: with fair shares bob's 20-mapper graph ends
// before alice's 3,000-mapper backfill is half done; in FIFO order it
// waits for the whole backfill to start, which is the failure the test
// exists to catch. hal's high-priority graph, posted five minutes in,
// overtakes both.
func TestFairShareScenario(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		sched Scheduling
		check func(t *testing.T, r simResult)
	}{
		{"fair shares", Scheduling{}, func(t *testing.T, r simResult) {
			if r.aDoneAtB >= 1500 {
				t.Errorf("bob's graph ended when %d of alice's 3000 mappers had completed, want fewer than half", r.aDoneAtB)
			}
			if r.bWait > simTaskTime {
				t.Errorf("bob waited %s for his first task, want at most one task's time (%s)", r.bWait, simTaskTime)
			}
		}},
		{"FIFO", Scheduling{FIFO: true}, func(t *testing.T, r simResult) {
			if r.aDoneAtB < 2990 {
				t.Errorf("in FIFO order bob's graph ended when %d of alice's mappers had completed, want nearly all (the scenario shows nothing otherwise)", r.aDoneAtB)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runFairnessScenario(t, tc.sched, true)
			t.Logf("bob: first task after %s, graph done after %s, when %d/3000 of alice's mappers had completed; hal (high): first task after %s, done after %s, when %d/20 of bob's mappers had completed",
				r.bWait, r.bDone, r.aDoneAtB, r.hWait, r.hDone, r.bDoneAtH)
			tc.check(t, r)
			// hal's high-priority graph takes every slot that frees: its
			// first task within one task's time, all 20 mappers and the
			// reducer within 7 rounds.
			if r.hWait > simTaskTime || r.hDone > 7*simTaskTime {
				t.Errorf("hal's high-priority graph waited %s and ended after %s, want at most %s and %s", r.hWait, r.hDone, simTaskTime, 7*simTaskTime)
			}
		})
	}
}

// BenchmarkFairShareScenario reports the scenario's figures (simulated
// minutes) for fair shares and FIFO; one op is one whole scenario. The
// figures do not depend on the machine.
func BenchmarkFairShareScenario(b *testing.B) {
	for _, c := range []struct {
		name  string
		sched Scheduling
	}{{"fair", Scheduling{}}, {"fifo", Scheduling{FIFO: true}}} {
		b.Run(c.name, func(b *testing.B) {
			var r simResult
			for range b.N {
				r = runFairnessScenario(b, c.sched, true)
			}
			b.ReportMetric(r.bWait.Minutes(), "b-wait-min")
			b.ReportMetric(r.bDone.Minutes(), "b-done-min")
			b.ReportMetric(float64(r.aDoneAtB), "a-done-at-b")
			b.ReportMetric(r.hWait.Minutes(), "h-wait-min")
			b.ReportMetric(r.hDone.Minutes(), "h-done-min")
			b.ReportMetric(float64(r.bDoneAtH), "b-done-at-h")
			b.ReportMetric(float64(r.cycles*b.N)/b.Elapsed().Seconds(), "cycles/s")
		})
	}
}

// BenchmarkClaimCompleteOwners is claim+complete cycles in process, 16
// concurrent workers over 8 owners' pending tasks, fair shares against
// FIFO: the queue's own cost of fair shares, without HTTP.
func BenchmarkClaimCompleteOwners(b *testing.B) {
	for _, c := range []struct {
		name  string
		sched Scheduling
	}{{"fair", Scheduling{}}, {"fifo", Scheduling{FIFO: true}}} {
		b.Run(c.name, func(b *testing.B) {
			q, err := Open(filepath.Join(b.TempDir(), "queue.db"), Options{Scheduling: c.sched})
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			benchOwners(b, q, 8)
		})
	}
}
