package queue

import (
	"context"
	"testing"

	"github.com/af-project/af/internal/taskdef"
)

// TestGraphStates: the states of the graphs that exist, from their
// records; a missing id is left out; a canceled graph reads canceled.
func TestGraphStates(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t)
	ctx := context.Background()
	mustCreate(t, q, mapReduce("graph-aa", 2, 0))
	mustCreate(t, q, mapReduce("graph-bb", 1, 0))
	if _, err := q.CancelGraph(ctx, "graph-bb"); err != nil {
		t.Fatal(err)
	}
	got, err := q.GraphStates(ctx, []string{"graph-aa", "graph-bb", "nope"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]taskdef.GraphState{"graph-aa": taskdef.GraphRunning, "graph-bb": taskdef.GraphCanceled}
	if len(got) != len(want) || got["graph-aa"] != want["graph-aa"] || got["graph-bb"] != want["graph-bb"] {
		t.Errorf("GraphStates = %v, want %v", got, want)
	}
}
