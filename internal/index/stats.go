package index

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/taskdef"
)

// Stats describes the whole index.
type Stats struct {
	Bucket, Prefix string
	Schema         layout.Schema
	// Built is when the last build finished (zero if none finished).
	Built   time.Time
	Objects int
	Bytes   int64
	// Dims has one entry per schema dimension, in schema order.
	Dims []DimStats
}

// DimStats lists one dimension's distinct values.
type DimStats struct {
	Field string
	// Values are sorted by value.
	Values []ValueCount
}

// ValueCount is how many objects, and bytes, have one value.
type ValueCount struct {
	Value   string
	Objects int
	Bytes   int64
}

// Stats counts the objects and bytes in the index and each dimension's
// distinct values. It reads every key.
func (db *DB) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := db.bolt.View(func(tx *bolt.Tx) error {
		src, err := db.builtSource(tx)
		if err != nil {
			return err
		}
		st.Bucket, st.Prefix, st.Schema, st.Built = src.bucket, src.prefix, src.schema, src.built
		n := len(src.schema.Fields)
		counts := make([]map[string]*ValueCount, n)
		for i := range counts {
			counts[i] = map[string]*ValueCount{}
		}
		// Keys arrive in order, so a dimension's value usually repeats the
		// previous key's: compare before hashing.
		last := make([]*ValueCount, n)
		c := tx.Bucket(objectsBucket).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			size := sizeOf(v)
			st.Objects++
			st.Bytes += size
			if st.Objects%65536 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			rel := k
			for i := range n {
				lead, sep := src.schema.Part(i)
				j := bytes.IndexByte(rel, sep)
				if j < len(lead) {
					return fmt.Errorf("index: damaged key %q", k)
				}
				val := rel[len(lead):j]
				rel = rel[j+1:]
				vc := last[i]
				if vc == nil || vc.Value != string(val) {
					vc = counts[i][string(val)]
					if vc == nil {
						vc = &ValueCount{Value: string(val)}
						counts[i][vc.Value] = vc
					}
					last[i] = vc
				}
				vc.Objects++
				vc.Bytes += size
			}
		}
		for i, f := range src.schema.Fields {
			ds := DimStats{Field: f, Values: make([]ValueCount, 0, len(counts[i]))}
			for _, vc := range counts[i] {
				ds.Values = append(ds.Values, *vc)
			}
			slices.SortFunc(ds.Values, func(a, b ValueCount) int { return strings.Compare(a.Value, b.Value) })
			st.Dims = append(st.Dims, ds)
		}
		return nil
	})
	return st, err
}

// Wire returns the stats as GET /api/v1/index/stats sends them.
func (st Stats) Wire() taskdef.IndexStats {
	w := taskdef.IndexStats{
		Bucket: st.Bucket, Prefix: st.Prefix,
		Schema:  taskdef.IndexSchema{Fields: st.Schema.Fields, Layout: st.Schema.Layout()},
		Built:   st.Built,
		Objects: st.Objects, Bytes: st.Bytes,
	}
	if st.Dims != nil {
		w.Dims = make([]taskdef.IndexDimStats, len(st.Dims))
	}
	for i, d := range st.Dims {
		w.Dims[i].Field = d.Field
		if d.Values != nil {
			w.Dims[i].Values = make([]taskdef.IndexValueCount, len(d.Values))
		}
		for j, v := range d.Values {
			w.Dims[i].Values[j] = taskdef.IndexValueCount(v)
		}
	}
	return w
}
