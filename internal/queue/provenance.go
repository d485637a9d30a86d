package queue

// This file: each graph's provenance record (taskdef.Provenance), what it
// was made from, kept beside the graph and deleted with it.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"

	"github.com/af-project/af/internal/taskdef"
)

// bProvenance holds graphID -> gzip(JSON taskdef.Provenance). Gzip: the
// input list repeats its key prefixes, and shrinks about tenfold.
// It is one of addedBuckets.
var bProvenance = []byte("provenance")

// ErrNoProvenance: the graph exists and has no provenance record (HTTP
// 404, code NoProvenance). It matches ErrNotFound too.
var ErrNoProvenance error = &queueError{msg: "no provenance record", parent: ErrNotFound}

// PutProvenance records what graph p.GraphID was made from. The graph
// must exist and the ctx's actor may change it; a record is written once: the same record again is a no-op
// (a retried request), another one an *ConflictError.
func (q *Queue) PutProvenance(ctx context.Context, p taskdef.Provenance) error {
	if p.GraphID == "" {
		return invalidf("provenance: graphId is empty")
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode provenance: %w", err)
	}
	var zb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&zb, gzip.BestSpeed)
	if _, err := zw.Write(raw); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return q.write(ctx, func(w *wtx) error {
		var g graphRec
		ok, err := getGraph(w.tx.Bucket(bGraphs), p.GraphID, &g)
		if err != nil {
			return err
		}
		if !ok {
			return notFoundf("graph %s does not exist: post the graph before its provenance", p.GraphID)
		}
		if err := w.mayChange(p.GraphID, g.Owner); err != nil {
			return err
		}
		b := w.tx.Bucket(bProvenance)
		if old := b.Get([]byte(p.GraphID)); old != nil {
			stored, err := gunzip(old)
			if err != nil {
				return err
			}
			if bytes.Equal(stored, raw) {
				return nil
			}
			return &ConflictError{What: "the provenance of graph " + p.GraphID, Diffs: []string{"the record (it is written once, when the graph is made)"}}
		}
		return b.Put([]byte(p.GraphID), zb.Bytes())
	})
}

// Provenance returns graph graphID's provenance record as JSON. A graph
// without one (made before records were kept, or its maker failed to
// record it) is ErrNotFound.
func (q *Queue) Provenance(ctx context.Context, graphID string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var z []byte
	err := q.db.View(func(tx *bolt.Tx) error {
		var g graphRec
		if err := viewGraph(tx, graphID, &g); err != nil {
			return err
		}
		v := tx.Bucket(bProvenance).Get([]byte(graphID))
		if v == nil {
			return fmt.Errorf("%w: graph %s has none (it was made before af kept them, or its maker could not record it)", ErrNoProvenance, graphID)
		}
		z = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return gunzip(z)
}

func gunzip(z []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, fmt.Errorf("provenance record: %w (the queue file is damaged)", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("provenance record: %w (the queue file is damaged)", err)
	}
	return raw, nil
}

// deleteProvenance drops a graph's record with the graph.
func (w *wtx) deleteProvenance(graphID string) error {
	return w.tx.Bucket(bProvenance).Delete([]byte(graphID))
}

// GraphInputs returns the files graph graphID's mappers read, mapper by
// mapper in task id order, their pinned ETags in the same order ("" for
// a file a task does not pin) and how many files each mapper reads: the
// input list of the graph's provenance, read from the tasks that carry it
// rather than stored twice.
func (q *Queue) GraphInputs(ctx context.Context, graphID string) (inputs []taskdef.InputFile, etags []string, loads []int, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, err
	}
	err = q.db.View(func(tx *bolt.Tx) error {
		var g graphRec
		if err := viewGraph(tx, graphID, &g); err != nil {
			return err
		}
		defs := tx.Bucket(bDefs)
		prefix := pairKey(graphID, "")
		c := tx.Bucket(bGraphTask).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			raw := defs.Get(k[len(prefix):])
			if raw == nil {
				continue
			}
			// Only the payload's input fields are decoded.
			var d struct {
				Payload struct {
					Kind       taskdef.Kind        `json:"kind"`
					Inputs     []taskdef.InputFile `json:"inputs"`
					InputETags string              `json:"inputETags"`
				} `json:"payload"`
			}
			if err := json.Unmarshal(raw, &d); err != nil {
				return fmt.Errorf("task %s of graph %s: %w", k[len(prefix):], graphID, err)
			}
			if d.Payload.Kind != taskdef.KindMapper || len(d.Payload.Inputs) == 0 {
				continue
			}
			tags := taskdef.SplitETags(d.Payload.InputETags)
			for i := range d.Payload.Inputs {
				tag := ""
				if i < len(tags) {
					tag = tags[i]
				}
				etags = append(etags, tag)
			}
			inputs = append(inputs, d.Payload.Inputs...)
			loads = append(loads, len(d.Payload.Inputs))
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if taskdef.JoinETags(etags) == "" {
		etags = nil // no task pins any
	}
	return inputs, etags, loads, nil
}
