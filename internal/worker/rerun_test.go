package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
)

// TestMapperRerunWhileGraphRuns reruns a completed mapper while its graph
// runs (the reducer has not started): the reducer waits for the new run
// and merges each mapper's output once, so the result and the counts are
// those of a clean run. Then a mapper is rerun after the reducer
// completed: the reducer runs again on the new outputs, with the same
// result.
func TestMapperRerunWhileGraphRuns(t *testing.T) {
	t.Parallel()
	const image = "af/os-count"
	clustertest.RequireImages(t, image)
	c := clustertest.Start(t, clustertest.Options{})
	ctx := context.Background()
	set, files := jobData(t, c, 12)
	g := graphFor(t, c, image, files)
	if _, err := c.Submit.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	red := reducerID(g)
	want := synth.FormatOSCounts(set.CountByOS(nil))

	// One worker until a mapper completed, then none: the graph is
	// certainly still running (the other mappers are not done) when the
	// completed mapper is rerun.
	w1 := c.StartWorker(t, "rr1-"+g.GraphID[:6], clustertest.WorkerOptions{Capacity: 1, Grace: time.Second})
	first := waitCompletedMapper(t, c, g.GraphID, 90*time.Second)
	if err := w1.Stop(); err != nil {
		t.Fatalf("stop worker: %v", err)
	}
	r, err := c.Submit.Rerun(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Dependents) != 1 || r.Dependents[0].TaskID != red || r.Dependents[0].Effect != taskdef.RerunWaits {
		t.Fatalf("rerun while the graph runs: dependents %+v, want the reducer waiting", r.Dependents)
	}
	if gs, _ := c.Submit.Graph(ctx, g.GraphID); gs.State != taskdef.GraphRunning {
		t.Fatalf("graph %s while a mapper is rerun", gs.State)
	}
	c.StartWorker(t, "rr2-"+g.GraphID[:6], clustertest.WorkerOptions{Capacity: 2})
	c.WaitGraph(t, g.GraphID, 2*time.Minute)
	gs := checkCleanResult(t, c, g.GraphID, red, want, set)
	if runs := taskRuns(gs, first); len(runs) < 2 || runs[len(runs)-1].ReasonCreated != taskdef.ReasonRerun {
		t.Errorf("rerun mapper runs %+v, want a last run created by the rerun", runs)
	}
	if runs := taskRuns(gs, red); len(runs) != 1 {
		t.Errorf("reducer ran %d times, want once: it waited for the new run", len(runs))
	}

	// After the reducer completed: it runs again on the new outputs.
	r, err = c.Submit.Rerun(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Dependents) != 1 || r.Dependents[0].Effect != taskdef.RerunRunsAgain {
		t.Fatalf("rerun after the reducer: dependents %+v, want the reducer running again", r.Dependents)
	}
	c.WaitGraph(t, g.GraphID, 2*time.Minute)
	gs = checkCleanResult(t, c, g.GraphID, red, want, set)
	if runs := taskRuns(gs, red); len(runs) != 2 || runs[1].ReasonCreated != taskdef.ReasonRerun {
		t.Errorf("reducer runs %+v, want a second run created by the rerun", runs)
	}
	for _, m := range c.SMTP.Messages() {
		if !strings.Contains(m.Subject, "completed") {
			t.Errorf("owner email %q: the graph never failed", m.Subject)
		}
	}
}

// waitCompletedMapper polls until a mapper of the graph completed.
func waitCompletedMapper(t *testing.T, c *clustertest.Cluster, graphID string, limit time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		gs, err := c.Submit.Graph(ctx, graphID)
		if err == nil {
			for _, ts := range gs.Tasks {
				if ts.Kind == taskdef.KindMapper && ts.State == taskdef.StateCompleted {
					return ts.TaskID
				}
			}
		}
		select {
		case <-ctx.Done():
			c.LogTaskLogs(t, graphID)
			t.Fatalf("no mapper of graph %s completed within %s", graphID, limit)
		case <-tick.C:
		}
	}
}

func taskRuns(gs taskdef.GraphStatus, id string) []taskdef.Run {
	for _, ts := range gs.Tasks {
		if ts.TaskID == id {
			return ts.Runs
		}
	}
	return nil
}

// checkCleanResult asserts the graph completed with the result and the
// mapper counts of a clean run.
func checkCleanResult(t *testing.T, c *clustertest.Cluster, graphID, red, want string, set *synth.Set) taskdef.GraphStatus {
	t.Helper()
	ctx := context.Background()
	gs, err := c.Submit.Graph(ctx, graphID)
	if err != nil {
		t.Fatal(err)
	}
	if gs.State != taskdef.GraphCompleted {
		c.LogTaskLogs(t, graphID)
		t.Fatalf("graph %s, want completed", gs.State)
	}
	rc, err := c.Submit.GetArtifact(ctx, red, -1, taskdef.ResultArtifact)
	if got := readAll(t, rc, err); got != want {
		t.Fatalf("result\n%s\nwant\n%s", got, want)
	}
	docs, _, raw := set.Totals()
	var in, rawSeen int64
	for _, ts := range gs.Tasks {
		last := ts.Runs[len(ts.Runs)-1]
		if ts.Kind == taskdef.KindMapper {
			if last.State != taskdef.StateCompleted {
				t.Errorf("mapper %s last run %s", ts.TaskID, last.State)
			}
			in += last.Stats.RecordsIn
			rawSeen += last.Stats.RawBytes
		}
	}
	if in != int64(docs) || rawSeen != raw {
		t.Errorf("mapper stats: records in %d raw %d, want %d %d", in, rawSeen, docs, raw)
	}
	return gs
}
