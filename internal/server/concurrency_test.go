package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
)

// claimLog records every claim and accepted completion the claimers saw.
type claimLog struct {
	mu        sync.Mutex
	owner     map[string]string // "task/run" -> claimer
	claims    map[string]int    // task -> claims
	completed map[string]int    // task -> accepted completed reports
	dupes     []string
	resolved  int // reports that said they resolved the graph
}

func newClaimLog() *claimLog {
	return &claimLog{owner: map[string]string{}, claims: map[string]int{}, completed: map[string]int{}}
}

func (l *claimLog) claim(c taskdef.Claim, who string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := fmt.Sprintf("%s/%d", c.TaskID, c.RunID)
	if prev, ok := l.owner[k]; ok {
		l.dupes = append(l.dupes, fmt.Sprintf("%s claimed by %s and %s", k, prev, who))
	}
	l.owner[k] = who
	l.claims[c.TaskID]++
}

func (l *claimLog) complete(taskID string, graphResolved bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.completed[taskID]++
	if graphResolved {
		l.resolved++
	}
}

// runClaimers runs n claimers until ctx ends or the graph resolves. Each
// claims one task at a time and reports it completed; a 409 means its run
// was superseded, which it logs and moves on from. onComplete runs after
// every accepted completion.
func runClaimers(ctx context.Context, t *testing.T, n int, newClient func() *queueclient.Client, log *claimLog, onComplete func(taskID string)) (graphDone <-chan struct{}, wait func()) {
	done := make(chan struct{})
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient()
			who := fmt.Sprintf("claimer-%02d", i)
			req := taskdef.ClaimRequest{WorkerGroup: "test", WorkerID: who, Tasks: 1}
			for ctx.Err() == nil {
				claims, err := c.ClaimWork(ctx, req, 2*time.Second)
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("%s: claim: %v", who, err)
					}
					return
				}
				for _, cl := range claims {
					log.claim(cl, who)
					resp, err := c.Claimed(cl).ReportCompleted(ctx, taskdef.ReportRequest{Stats: taskdef.Stats{Files: 1}})
					switch {
					case errors.Is(err, queueclient.ErrConflict):
						continue
					case err != nil:
						if ctx.Err() == nil {
							t.Errorf("%s: report %s/%d: %v", who, cl.TaskID, cl.RunID, err)
						}
						return
					}
					log.complete(cl.TaskID, resp.GraphResolved)
					if onComplete != nil {
						onComplete(cl.TaskID)
					}
					if resp.GraphResolved {
						once.Do(func() { close(done) })
					}
				}
			}
		}()
	}
	return done, func() { cancel(); wg.Wait() }
}

// checkAllCompletedOnce verifies the final graph and the claim log: every
// task completed, each accepted as completed exactly once, no run owned by
// two claimers, one report resolved the graph.
func checkAllCompletedOnce(t *testing.T, st taskdef.GraphStatus, want int, log *claimLog) {
	t.Helper()
	log.mu.Lock()
	defer log.mu.Unlock()
	if st.State != taskdef.GraphCompleted || len(st.Tasks) != want {
		t.Fatalf("graph %s with %d tasks, want completed with %d", st.State, len(st.Tasks), want)
	}
	for _, d := range log.dupes {
		t.Error(d)
	}
	for _, ts := range st.Tasks {
		if ts.State != taskdef.StateCompleted {
			t.Errorf("task %s is %s", ts.TaskID, ts.State)
		}
		if n := log.completed[ts.TaskID]; n != 1 {
			t.Errorf("task %s: %d accepted completions, want 1", ts.TaskID, n)
		}
		if len(ts.Runs) == 0 || ts.Runs[len(ts.Runs)-1].State != taskdef.StateCompleted {
			t.Errorf("task %s: last run not completed", ts.TaskID)
		}
		completedRuns := 0
		for _, r := range ts.Runs {
			if r.State == taskdef.StateCompleted {
				completedRuns++
			}
		}
		if completedRuns != 1 {
			t.Errorf("task %s has %d completed runs", ts.TaskID, completedRuns)
		}
	}
	if len(log.completed) != want {
		t.Errorf("%d distinct tasks completed, want %d", len(log.completed), want)
	}
	if log.resolved != 1 {
		t.Errorf("%d reports said they resolved the graph, want exactly 1", log.resolved)
	}
}

// TestConcurrentClaimersOverHTTP: 32 claimers against one graph of 2,000
// tasks (1,999 mappers and their reducer) over loopback HTTP.
func TestConcurrentClaimersOverHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{realClock: true})
	ctx := ctxT(t)
	g := testGraph(1999, time.Now())
	if _, err := e.submit.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	log := newClaimLog()
	done, wait := runClaimers(ctx, t, 32, func() *queueclient.Client {
		return queueclient.New(e.http.URL, workTok, queueclient.WithBackoff(time.Millisecond, 50*time.Millisecond))
	}, log, nil)
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("graph did not complete")
	}
	wait()
	st, err := e.reader.Graph(ctx, g.GraphID)
	if err != nil {
		t.Fatal(err)
	}
	checkAllCompletedOnce(t, st, 2000, log)
	log.mu.Lock()
	defer log.mu.Unlock()
	for id, n := range log.claims {
		if n != 1 {
			t.Errorf("task %s claimed %d times with no failure to cause a retry", id, n)
		}
	}
	// Several claimers really ran at once: the work was spread.
	who := map[string]bool{}
	for _, c := range log.owner {
		who[c] = true
	}
	if len(who) < 16 {
		t.Errorf("only %d of 32 claimers got work", len(who))
	}
}
