package server

import (
	"context"
	"testing"
	"time"

	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/taskdef"
)

// A running graph's status says what af serve saw of the workers: none
// at first (and af submit --wait's notice says so once 30 s pass), then
// one that asked for work and claimed a task.
func TestGraphStatusShowsWorkerActivity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	g := testGraph(2, e.clock.Now())
	if _, err := e.submit.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	gs, err := e.submit.Graph(ctx, g.GraphID)
	if err != nil {
		t.Fatal(err)
	}
	if gs.Workers == nil || gs.Workers.LiveWorkers != 0 || gs.Workers.LastPoll != nil || gs.Workers.LastClaim != nil || gs.Workers.LiveWindowSeconds <= 0 {
		t.Fatalf("workers before any poll: %+v", gs.Workers)
	}
	e.clock.Advance(31 * time.Second)
	gs, err = e.submit.Graph(ctx, g.GraphID)
	if err != nil {
		t.Fatal(err)
	}
	if msg := submit.NoWorkerNotice(gs, e.clock.Now(), 30*time.Second); msg == "" {
		t.Fatalf("no notice after 31 s without workers: %+v", gs.Workers)
	}
	if _, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w1", Tasks: 1}, 0); err != nil {
		t.Fatal(err)
	}
	gs, err = e.submit.Graph(ctx, g.GraphID)
	if err != nil {
		t.Fatal(err)
	}
	if gs.Workers == nil || gs.Workers.LiveWorkers != 1 || gs.Workers.LastPoll == nil || gs.Workers.LastClaim == nil || !gs.Workers.LastClaim.Equal(e.clock.Now()) {
		t.Fatalf("workers after a claim: %+v", gs.Workers)
	}
	if msg := submit.NoWorkerNotice(gs, e.clock.Now(), 30*time.Second); msg != "" {
		t.Fatalf("notice while a task runs: %s", msg)
	}
	e.clock.Advance(workerLiveWindow + time.Second)
	gs, err = e.submit.Graph(ctx, g.GraphID)
	if err != nil {
		t.Fatal(err)
	}
	if gs.Workers.LiveWorkers != 0 {
		t.Fatalf("a worker silent for longer than the live window still counts: %+v", gs.Workers)
	}
}
