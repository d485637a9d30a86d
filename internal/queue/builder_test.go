package queue

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/af-project/af/internal/taskdef"
)

// TestGraphBuilder: a graph built task by task, across several encoding
// batches, is the graph CreateGraph makes (the stored definitions keep
// every payload field, and the task status its file and byte counts);
// tasks added before SetGraph must carry the graph id, and the first bad
// task stops the builder.
func TestGraphBuilder(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t)
	ctx := context.Background()

	g := mapReduce("builder-graph", 2*builderBatch+3, 2)
	b := q.NewGraphBuilder()
	// The first tasks come before the graph's id, carrying it themselves.
	for _, gt := range g.Tasks[:5] {
		if err := b.Add(gt.TaskID, gt.Task); err != nil {
			t.Fatal(err)
		}
	}
	b.SetGraph(g.GraphID, g.Name, g.Owner)
	for _, gt := range g.Tasks[5:] {
		gt.Task.GraphID = "" // filled from the graph
		if err := b.Add(gt.TaskID, gt.Task); err != nil {
			t.Fatal(err)
		}
	}
	st, err := b.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Tasks) != len(g.Tasks) {
		t.Fatalf("%d tasks, want %d", len(st.Tasks), len(g.Tasks))
	}
	for _, i := range []int{0, builderBatch, len(g.Tasks) - 2} {
		def, err := q.TaskDefinition(ctx, g.Tasks[i].TaskID)
		if err != nil {
			t.Fatal(err)
		}
		want := g.Tasks[i].Task
		normalize(&want)
		if !reflect.DeepEqual(def.Payload, want.Payload) || def.Metadata != want.Metadata {
			t.Errorf("task %d stored as %+v, want %+v", i, def, want)
		}
		ts, err := q.Task(ctx, g.Tasks[i].TaskID)
		if err != nil || ts.InputFiles != 2 || ts.InputBytes != 150 {
			t.Errorf("task %d status %+v %v, want 2 files, 150 bytes", i, ts, err)
		}
	}
	// Creating it again the usual way is idempotent: byte-equal encodings.
	if _, err := q.CreateGraph(ctx, g); err != nil {
		t.Fatalf("re-create: %v", err)
	}

	for _, tc := range []struct {
		name string
		add  func(b *GraphBuilder) error
		want string
	}{
		{"task without graph id before SetGraph", func(b *GraphBuilder) error {
			tk := mkTask("", taskdef.KindMapper, 0)
			if err := b.Add("orphan-task-1", tk); err != nil {
				return err
			}
			b.SetGraph("orphan-graph", "n", "o")
			_, err := b.Create(ctx)
			return err
		}, "no graphId, and the graph's graphId comes after its tasks"},
		{"task of another graph before SetGraph", func(b *GraphBuilder) error {
			if err := b.Add("other-task-1", mkTask("other-graph-a", taskdef.KindMapper, 0)); err != nil {
				return err
			}
			b.SetGraph("other-graph-b", "n", "o")
			_, err := b.Create(ctx)
			return err
		}, `graphId "other-graph-a" differs from the graph's "other-graph-b"`},
		{"duplicate task id", func(b *GraphBuilder) error {
			b.SetGraph("dup-graph-1", "n", "o")
			_ = b.Add("dup-task-01", mkTask("dup-graph-1", taskdef.KindMapper, 0))
			return b.Add("dup-task-01", mkTask("dup-graph-1", taskdef.KindMapper, 0))
		}, "taskId appears twice"},
		{"the first error sticks", func(b *GraphBuilder) error {
			b.SetGraph("sticky-graph", "n", "o")
			bad := mkTask("sticky-graph", taskdef.KindMapper, 99)
			_ = b.Add("sticky-bad-1", bad)
			for i := range builderBatch {
				_ = b.Add(fmt.Sprintf("sticky-ok-%04d", i), mkTask("sticky-graph", taskdef.KindMapper, 0))
			}
			_, err := b.Create(ctx)
			return err
		}, "tasks[0] (sticky-bad-1): retries 99"},
	} {
		err := tc.add(q.NewGraphBuilder())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
