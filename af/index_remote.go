package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
)

// The index belongs to one process at a time (bbolt locks its file), so
// while `af serve` runs, `af index` goes through it: the server owns
// DATA/index.db and refreshes it from S3 with its own credentials. --db
// works on a local file instead, for when no server runs.
//
// remoteIndex decides: an explicit --db means the local file; otherwise a
// queue named by --queue or AF_QUEUE_URL means the server.
func remoteIndex(fs *flag.FlagSet, qf queueFlags) (*queueclient.Client, bool, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["db"] {
		return nil, false, nil
	}
	if !set["queue"] && os.Getenv("AF_QUEUE_URL") == "" {
		return nil, false, nil
	}
	q, err := qf.client()
	return q, true, err
}

// remoteIndexBuild asks the server to refresh its index. What the flags
// leave out (no --prefix: a nil Prefix) the server fills from what its
// index holds, by the same rule as a local build (index.Refresh).
func remoteIndexBuild(ctx context.Context, q *queueclient.Client, qurl, bucket, prefix, schemaPath string, set map[string]bool, listSkipped bool, stdout, stderr io.Writer) error {
	req := taskdef.IndexBuildRequest{Bucket: bucket}
	if set["prefix"] {
		req.Prefix = &prefix
	}
	if set["schema"] {
		// Validate locally first so a typo is reported against the file.
		if _, err := layout.LoadSchema(schemaPath); err != nil {
			return err
		}
		data, err := os.ReadFile(schemaPath)
		if err != nil {
			return err
		}
		req.Schema = data
	}
	fmt.Fprintf(stderr, "refreshing the index of %s from S3 (the server lists the bucket)...\n", q.BaseURL())
	rep, err := q.IndexBuild(ctx, req)
	if err != nil {
		return explainQueueErr(err, qurl)
	}
	writeBuildReport(stdout, q.BaseURL()+" (index.db)", rep, listSkipped)
	return nil
}

func remoteIndexQuery(ctx context.Context, q *queueclient.Client, qurl, filterPath string, stdout, stderr io.Writer) error {
	data, err := os.ReadFile(filterPath)
	if err != nil {
		return fmt.Errorf("read filter: %w", err)
	}
	start := time.Now()
	res, err := q.IndexQuery(ctx, data, false)
	if err != nil {
		return explainQueueErr(fmt.Errorf("%s: %w", filterPath, err), qurl)
	}
	bw := bufio.NewWriterSize(stdout, 64<<10)
	var line []byte
	for _, o := range res.Objects {
		line = append(append(line[:0], o.Key...), '\t')
		line = strconv.AppendInt(line, o.Size, 10)
		line = append(line, '\n')
		if _, err := bw.Write(line); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%s files, %s in %s (through %s)\n", thousands(int(res.Files)), humanBytes(res.Bytes), time.Since(start).Round(time.Microsecond), q.BaseURL())
	return nil
}

func remoteIndexStats(ctx context.Context, q *queueclient.Client, qurl string, stdout io.Writer) error {
	st, err := q.IndexStats(ctx)
	if err != nil {
		return explainQueueErr(err, qurl)
	}
	printIndexStats(stdout, q.BaseURL()+" (index.db)", st)
	return nil
}
