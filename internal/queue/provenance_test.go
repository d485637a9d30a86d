package queue

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/af-project/af/internal/clocktest"
	"github.com/af-project/af/internal/taskdef"
)

func provenanceOf(graphID string, files int) taskdef.Provenance {
	p := taskdef.Provenance{
		GraphID: graphID, MadeBy: "af submit", Created: t0,
		Image:  taskdef.ImageRecord{Asked: "af/os-count", Ref: "sha256:" + strings.Repeat("ab", 32), Source: "image-id"},
		Filter: json.RawMessage(`{"version":1}`), Rendered: json.RawMessage(`{"version":1}`),
		Bucket: "telemetry", Prefix: "data/", Job: taskdef.JobOptions{Name: "n", Retries: 5},
	}
	for i := range files {
		p.Inputs = append(p.Inputs, taskdef.InputFile{Key: "data/saved_session/Firefox/nightly/" + strings.Repeat("x", i%7) + ".lz4", Size: int64(i)})
		p.ETags = append(p.ETags, strings.Repeat("0123456789abcdef", 2))
	}
	return p
}

// TestProvenance: a graph's record is written once (the same again is a
// no-op, another a conflict), needs its graph, survives a reopen of the
// file, and is deleted with the graph by the sweep.
func TestProvenance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "queue.db")
	clk := clocktest.New(t0)
	q, err := Open(path, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, q, expiring("graph-pp", 2, time.Hour, 2*time.Hour))
	p := provenanceOf("graph-pp", 5000)

	if err := q.PutProvenance(ctx, provenanceOf("graph-none", 1)); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "post the graph before its provenance") {
		t.Fatalf("record of a graph that does not exist: %v", err)
	}
	if _, err := q.Provenance(ctx, "graph-pp"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no provenance record") {
		t.Fatalf("before it is written: %v", err)
	}
	stranger := WithActor(ctx, Actor{Name: "bob", MayChange: func(g, owner string) error { return Forbidden("graph %s is %s's", g, owner) }})
	if err := q.PutProvenance(stranger, p); !errors.Is(err, ErrForbidden) {
		t.Fatalf("a record by one who may not change the graph: %v", err)
	}
	if err := q.PutProvenance(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := q.PutProvenance(ctx, p); err != nil {
		t.Fatalf("the same record again (a retry): %v", err)
	}
	other := p
	other.Env = map[string]string{"K": "V"}
	if err := q.PutProvenance(ctx, other); !errors.Is(err, ErrConflict) {
		t.Fatalf("another record for the graph: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if q, err = Open(path, Options{Clock: clk}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	raw, err := q.Provenance(ctx, "graph-pp")
	if err != nil {
		t.Fatal(err)
	}
	var got taskdef.Provenance
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Inputs) != 5000 || got.Inputs[4999] != p.Inputs[4999] || got.ETags[17] != p.ETags[17] || got.Image != p.Image || got.Env != nil {
		t.Fatalf("after a reopen: %d inputs, image %+v, env %v", len(got.Inputs), got.Image, got.Env)
	}
	// Stored compressed: far smaller than its JSON.
	if err := q.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bProvenance).Get([]byte("graph-pp")); len(v)*4 > len(raw) {
			t.Errorf("stored %d bytes for %d bytes of JSON", len(v), len(raw))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	clk.Advance(2*time.Hour + time.Minute)
	if _, err := q.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Sweep(ctx, SweepOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Provenance(ctx, "graph-pp"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after the sweep: %v", err)
	}
	if err := q.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bProvenance).Get([]byte("graph-pp")); v != nil {
			t.Errorf("the sweep left the record (%d bytes)", len(v))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestGraphInputs: a graph's input list is read from its mappers, with
// each task's pinned ETags, and is nil-ETagged when no task pins any.
func TestGraphInputs(t *testing.T) {
	t.Parallel()
	q, _ := newQueue(t)
	ctx := context.Background()
	g := mapReduce("graph-gi", 3, 0)
	g.Tasks[1].Task.Payload.InputETags = "e1 e2"
	mustCreate(t, q, g)
	in, tags, loads, err := q.GraphInputs(ctx, "graph-gi")
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != 6 || len(tags) != 6 || !eqInts(loads, []int{2, 2, 2}) || strings.Join(tags, ",") != ",,e1,e2,," || in[2].Key != "a/b.log.gz" || in[3].Size != 50 {
		t.Fatalf("inputs %v, etags %q, loads %v", in, tags, loads)
	}
	mustCreate(t, q, mapReduce("graph-gj", 2, 0))
	if in, tags, loads, err := q.GraphInputs(ctx, "graph-gj"); err != nil || len(in) != 4 || tags != nil || len(loads) != 2 {
		t.Fatalf("no pins: %d inputs, etags %q, loads %v, %v", len(in), tags, loads, err)
	}
	if _, _, _, err := q.GraphInputs(ctx, "graph-none"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a graph that does not exist: %v", err)
	}
}

func eqInts(a, b []int) bool { return slices.Equal(a, b) }
