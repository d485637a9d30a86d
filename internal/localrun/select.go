// Package localrun is `af run --local` and `af sample`: a job's mappers
// and reducer run on this host, in the same locked-down containers and
// through the same code as on a worker (internal/worker's Local), over the
// files a filter selects in a local directory laid out like the bucket
// (telemetry-server's --local-only --data-dir) or over a sample of what it
// selects in S3, read with the user's own AWS settings. There is no queue,
// no worker, no af serve, no STS and no sealing.
//
// Files are selected as the cluster selects them: the directory or the S3
// prefix is listed into a temporary file index (internal/index, the same
// layout rules as `af index build`) and queried with the filter; the
// selection is split into mapper loads by af submit's graph builder
// (internal/submit, internal/partition).
package localrun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/af-project/af/internal/filter"
	"github.com/af-project/af/internal/index"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/worker"
)

// Source is where the input files are: a data dir, or an S3 bucket.
type Source struct {
	// DataDir is a directory laid out like the bucket: a file's key is its
	// path relative to DataDir.
	DataDir string
	// S3 and Bucket are the bucket to list and read, with the user's own
	// AWS settings, when DataDir is empty.
	S3     *s3.Client
	Bucket string
	// Prefix is the key prefix the layout lives under (as af index build's
	// --prefix).
	Prefix string
	Schema layout.Schema
}

// Selection is the files a filter selected, and how to read them.
type Selection struct {
	// Bucket names the source in tasks and messages (the data dir's path
	// for a data dir).
	Bucket, Prefix string
	Schema         layout.Schema
	// Files are in key order.
	Files []taskdef.InputFile
	// Listed counts every file listed; Skipped those outside the layout.
	Listed, Skipped int
	// Where is the source in messages: "data dir D" or "s3://B/P".
	Where string
	// Objects reads the files.
	Objects worker.ObjectGetter
}

// ErrNoFiles is a filter that selects nothing.
var ErrNoFiles = errors.New("the filter selects no files")

// Select lists the source into a temporary index in tmpDir and queries it
// with the filter. A filter that selects nothing is ErrNoFiles, with a
// message that says what was listed.
func Select(ctx context.Context, src Source, filterName string, filterJSON []byte, tmpDir string, log *slog.Logger) (Selection, error) {
	if len(src.Schema.Fields) == 0 {
		src.Schema = layout.Telemetry()
	}
	f, err := filter.Parse(filterName, filterJSON, src.Schema)
	if err != nil {
		return Selection{}, err
	}
	sel := Selection{Prefix: layout.NormalizePrefix(src.Prefix), Schema: src.Schema}
	var lister index.Lister
	switch {
	case src.DataDir != "":
		abs, err := filepath.Abs(src.DataDir)
		if err != nil {
			return sel, fmt.Errorf("data dir %s: %w", src.DataDir, err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return sel, fmt.Errorf("data dir: %w (give --data-dir a directory laid out like the bucket)", err)
		}
		if !fi.IsDir() {
			return sel, fmt.Errorf("data dir %s is not a directory (give --data-dir a directory laid out like the bucket)", src.DataDir)
		}
		d := dirStore{root: abs}
		lister, sel.Objects, sel.Bucket = d, d, abs
		sel.Where = "data dir " + src.DataDir
		if sel.Prefix != "" {
			sel.Where += " under prefix " + sel.Prefix
		}
	case src.S3 != nil && src.Bucket != "":
		lister, sel.Objects, sel.Bucket = src.S3, src.S3, src.Bucket
		sel.Where = "s3://" + src.Bucket + "/" + sel.Prefix
	default:
		return sel, errors.New("no input source: give --data-dir DIR, or --bucket BUCKET to sample S3")
	}
	db, err := index.Open(filepath.Join(tmpDir, "index.db"), index.Options{Logger: log})
	if err != nil {
		return sel, err
	}
	defer db.Close()
	rep, err := db.Build(ctx, lister, sel.Bucket, sel.Prefix, src.Schema, nil)
	if err != nil {
		return sel, fmt.Errorf("list %s: %w", sel.Where, err)
	}
	sel.Listed, sel.Skipped = rep.Listed, rep.Skipped
	if _, err := db.Query(ctx, f, func(o index.Object) error {
		sel.Files = append(sel.Files, taskdef.InputFile{Key: o.Key, Size: o.Size})
		return nil
	}); err != nil {
		return sel, fmt.Errorf("query %s with %s: %w", sel.Where, filterName, err)
	}
	if len(sel.Files) == 0 {
		why := fmt.Sprintf("%d files listed, none of them selected", rep.Listed)
		switch {
		case rep.Listed == 0:
			why = "it holds no files"
		case rep.Skipped == rep.Listed:
			why = fmt.Sprintf("all %d files listed are outside the layout (%s), e.g. %s; if the layout starts below a prefix, give it with --prefix", rep.Listed, src.Schema, rep.SkippedKeys[0])
		case rep.Skipped > 0:
			why = fmt.Sprintf("%d files listed, %d of them outside the layout, none of the rest selected", rep.Listed, rep.Skipped)
		}
		return sel, fmt.Errorf("%w in %s (%s): check the filter's allowed_values against the files' dimensions (%s)", ErrNoFiles, sel.Where, why, src.Schema)
	}
	return sel, nil
}

// Sample keeps n of the selected files, spread evenly over the selection
// in key order (so every part of it, e.g. each day or channel, tends to be
// represented), the first and, for n > 1, the last among them. n <= 0 or
// at least the number of files keeps them all.
func (s Selection) Sample(n int) Selection {
	if n <= 0 || n >= len(s.Files) {
		return s
	}
	files := make([]taskdef.InputFile, 0, n)
	if n == 1 {
		files = append(files, s.Files[0])
	} else {
		for i := range n {
			files = append(files, s.Files[i*(len(s.Files)-1)/(n-1)])
		}
	}
	s.Files = files
	return s
}

// Bytes is the selection's total size.
func (s Selection) Bytes() int64 {
	var n int64
	for _, f := range s.Files {
		n += f.Size
	}
	return n
}
