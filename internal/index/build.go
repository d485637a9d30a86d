package index

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	bolt "go.etcd.io/bbolt"

	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/taskdef"
)

// Lister is the part of *s3.Client a build needs.
type Lister = s3.ListObjectsV2APIClient

// defaultBatchSize is how many listed objects one write transaction
// takes: large enough that commits (and their fsyncs) are rare, small
// enough that a batch stays a few megabytes. Measured: 50,000 builds as
// fast as 100,000 with two thirds of the memory, and faster than 25,000.
const defaultBatchSize = 50_000

// BuildProgress is reported after each listing page.
type BuildProgress struct {
	// Listed counts every object listed so far, Skipped those outside the
	// layout.
	Listed, Skipped int
	Elapsed         time.Duration
}

// BuildReport says what a build found and changed.
type BuildReport struct {
	Bucket, Prefix string
	// Listed is every object under the prefix; Indexed those that fit the
	// layout and are now in the index; Skipped those that do not fit.
	Listed, Indexed, Skipped int
	// Added, Updated (size, ETag or last-modified changed), Removed (no
	// longer listed) and Unchanged compare the listing with the index as
	// it was.
	Added, Updated, Removed, Unchanged int
	// SkippedKeys are the keys outside the layout, in listing order.
	SkippedKeys []string
	Duration    time.Duration
}

// entry is one listed object that fits the layout.
type entry struct {
	rel []byte // key relative to the prefix
	val []byte
}

// arena hands out the byte slices of a batch from large chunks: bbolt
// keeps every key and value it is given until the commit, and one
// allocation per megabyte is far cheaper than two per object.
type arena struct{ chunk []byte }

const arenaChunk = 1 << 20

// add appends the bytes that f writes and returns them as their own slice.
func (a *arena) add(f func([]byte) []byte) []byte {
	if cap(a.chunk)-len(a.chunk) < 512 {
		a.chunk = make([]byte, 0, arenaChunk)
	}
	n := len(a.chunk)
	a.chunk = f(a.chunk)
	return a.chunk[n:len(a.chunk):len(a.chunk)]
}

// Build lists s3://bucket/prefix and makes the index hold exactly the
// listed objects that fit the layout: new ones are added, changed ones
// updated, ones no longer listed removed. An index covers one bucket and
// prefix; building another source into it is refused.
func (db *DB) Build(ctx context.Context, lister Lister, bucket, prefix string, schema layout.Schema, progress func(BuildProgress)) (BuildReport, error) {
	start := db.clock.Now()
	prefix = layout.NormalizePrefix(prefix)
	rep := BuildReport{Bucket: bucket, Prefix: prefix}
	if bucket == "" {
		return rep, fmt.Errorf("build index: %w: no bucket given", ErrInvalidRequest)
	}
	if err := checkSchema(schema); err != nil {
		return rep, fmt.Errorf("build index: %w", err)
	}
	if err := db.checkSource(bucket, prefix, schema); err != nil {
		return rep, err
	}

	// Listing and writing overlap: while one batch is merged into the
	// file, the next pages are fetched (S3 pages take tens of
	// milliseconds each) and parsed.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan mergeJob, 1)
	written := make(chan error, 1)
	var changes BuildReport // only the writer touches it until written
	go func() {
		var err error
		for j := range batches {
			if err == nil {
				if err = db.merge(j.batch, j.prev, j.hasPrev, j.last, &changes); err != nil {
					cancel()
				}
			}
		}
		written <- err
	}()
	lerr := db.list(ctx, lister, bucket, prefix, schema, &rep, batches, func() {
		if progress != nil {
			progress(BuildProgress{Listed: rep.Listed, Skipped: rep.Skipped, Elapsed: db.clock.Now().Sub(start)})
		}
	})
	close(batches)
	werr := <-written
	rep.Added, rep.Updated, rep.Removed, rep.Unchanged = changes.Added, changes.Updated, changes.Removed, changes.Unchanged
	if werr != nil {
		return rep, werr
	}
	if lerr != nil {
		return rep, lerr
	}
	rep.Indexed = rep.Listed - rep.Skipped
	rep.Duration = db.clock.Now().Sub(start)
	if err := db.recordSource(bucket, prefix, schema); err != nil {
		return rep, fmt.Errorf("build index: %w", err)
	}
	db.log.Info("index built", "bucket", bucket, "prefix", prefix, "listed", rep.Listed, "indexed", rep.Indexed,
		"added", rep.Added, "updated", rep.Updated, "removed", rep.Removed, "unchanged", rep.Unchanged,
		"skipped", rep.Skipped, "duration", rep.Duration)
	return rep, nil
}

// mergeJob is one batch for the writer: make the stored keys in
// (prev, last key of batch] equal to batch, or (prev, end) when last.
type mergeJob struct {
	batch   []entry
	prev    string
	hasPrev bool
	last    bool
}

// list pages through the listing, counts into rep, and sends the objects
// that fit the layout to batches in sorted runs. It sends the final job
// (last) only when the listing completed: an interrupted listing must not
// remove what it did not get to.
func (db *DB) list(ctx context.Context, lister Lister, bucket, prefix string, schema layout.Schema, rep *BuildReport, batches chan<- mergeJob, pageDone func()) error {
	var (
		batch   []entry
		prev    string
		hasPrev bool
		dims    []string
		mem     arena
		lastRel string
	)
	send := func(last bool) error {
		select {
		case batches <- mergeJob{batch: batch, prev: prev, hasPrev: hasPrev, last: last}:
		case <-ctx.Done():
			return ctx.Err()
		}
		if len(batch) > 0 {
			prev, hasPrev = string(batch[len(batch)-1].rel), true
		}
		// The writer owns what was sent.
		batch, mem = make([]entry, 0, len(batch)), arena{}
		return nil
	}
	in := &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)}
	if db.pageSize > 0 {
		in.MaxKeys = aws.Int32(db.pageSize)
	}
	p := s3.NewListObjectsV2Paginator(lister, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return listErr(bucket, prefix, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			rep.Listed++
			rel, ok := strings.CutPrefix(key, prefix)
			if !ok {
				return fmt.Errorf("list s3://%s/%s: the server returned %q, outside the prefix", bucket, prefix, key)
			}
			if rep.Listed > 1 && rel <= lastRel {
				// The one-pass merge relies on S3's guarantee that
				// listings are in key order; never delete on a listing
				// that breaks it.
				return fmt.Errorf("list s3://%s/%s: keys out of order (%q after %q): the server does not list in key order", bucket, prefix, key, prefix+lastRel)
			}
			lastRel = rel
			if dims, err = schema.ParseRel(rel, dims[:0]); err != nil {
				rep.Skipped++
				rep.SkippedKeys = append(rep.SkippedKeys, key)
				continue
			}
			batch = append(batch, entry{
				rel: mem.add(func(b []byte) []byte { return append(b, rel...) }),
				val: mem.add(func(b []byte) []byte {
					return encodeValue(b, aws.ToInt64(o.Size), aws.ToString(o.ETag), aws.ToTime(o.LastModified))
				}),
			})
		}
		if len(batch) >= db.batchSize {
			if err := send(false); err != nil {
				return err
			}
		}
		pageDone()
	}
	return send(true)
}

// checkSource refuses to build a different bucket, prefix or schema into
// an index that has one (the rule of refresh.go, checked again here for
// callers of Build): an index covers one source, and a schema change
// changes what the stored keys mean. The source is recorded only when a
// build completes, so a first build that fails (a mistyped bucket, say)
// commits the file to nothing.
func (db *DB) checkSource(bucket, prefix string, schema layout.Schema) error {
	return db.bolt.View(func(tx *bolt.Tx) error {
		s, ok, err := readSource(tx)
		if err != nil || !ok {
			return err
		}
		return sameSource(s.bucket, s.prefix, s.schema, bucket, prefix, schema)
	})
}

// recordSource notes what a completed build listed, and when.
func (db *DB) recordSource(bucket, prefix string, schema layout.Schema) error {
	fields, err := json.Marshal(schema.Fields)
	if err != nil {
		return err
	}
	built := []byte(db.clock.Now().UTC().Format(time.RFC3339Nano))
	return db.bolt.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		for _, kv := range [][2][]byte{{metaBucketName, []byte(bucket)}, {metaPrefix, []byte(prefix)}, {metaSchema, fields}, {metaBuilt, built}} {
			if err := meta.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		// Only another layout than the .vN one needs format 2 (see
		// FormatVersion); the .vN layout's files stay readable by older af.
		if l := schema.Layout(); l != "" {
			if err := meta.Put(metaLayout, []byte(l)); err != nil {
				return err
			}
			return meta.Put(metaFormat, []byte(strconv.Itoa(FormatVersion)))
		}
		return nil
	})
}

// merge makes the stored keys in (prev, last key of batch] — or (prev, end)
// when last — equal to batch, in one transaction, counting what changed.
// batch is sorted, as listings are.
func (db *DB) merge(batch []entry, prev string, hasPrev, last bool, rep *BuildReport) error {
	if len(batch) == 0 && !last {
		return nil
	}
	var hi []byte
	if !last {
		hi = batch[len(batch)-1].rel
	}
	return db.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(objectsBucket)
		// Listings arrive in key order, so pages fill up and never need
		// splitting again: pack them full.
		b.FillPercent = 1.0
		c := b.Cursor()
		var k, v []byte
		if hasPrev {
			k, v = c.Seek([]byte(prev))
			if k != nil && string(k) == prev {
				k, v = c.Next()
			}
		} else {
			k, v = c.First()
		}
		// Decide everything first: a cursor is not valid across writes.
		var dels [][]byte
		put := make([]bool, len(batch))
		i := 0
		added, updated, unchanged := 0, 0, 0
		for ; k != nil && (hi == nil || bytes.Compare(k, hi) <= 0); k, v = c.Next() {
			for i < len(batch) && bytes.Compare(batch[i].rel, k) < 0 {
				put[i] = true
				added++
				i++
			}
			if i < len(batch) && bytes.Equal(batch[i].rel, k) {
				if bytes.Equal(v, batch[i].val) {
					unchanged++
				} else {
					put[i] = true
					updated++
				}
				i++
				continue
			}
			dels = append(dels, bytes.Clone(k))
		}
		for ; i < len(batch); i++ {
			put[i] = true
			added++
		}
		for _, k := range dels {
			if err := b.Delete(k); err != nil {
				return fmt.Errorf("index: delete %q: %w", k, err)
			}
		}
		for i, e := range batch {
			if put[i] {
				if err := b.Put(e.rel, e.val); err != nil {
					return fmt.Errorf("index: put %q: %w", e.rel, err)
				}
			}
		}
		rep.Added += added
		rep.Updated += updated
		rep.Unchanged += unchanged
		rep.Removed += len(dels)
		return nil
	})
}

// Wire returns the report as POST /api/v1/index/build sends it.
func (rep BuildReport) Wire() taskdef.IndexBuildReport {
	return taskdef.IndexBuildReport(rep)
}
