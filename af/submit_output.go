package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/af-project/af/internal/notify"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/units"
)

// submitJSON is what `af submit --json` prints: one JSON object, on one
// line, on standard output. README's "Scripting af" documents it. It is
// only printed (no HTTP route sends it), so it lives here, not in
// taskdef; Totals is taskdef's, as the queue computes it.
type submitJSON struct {
	GraphID    string             `json:"graphId"`
	Name       string             `json:"name"`
	Owner      string             `json:"owner"`
	MonitorURL string             `json:"monitorUrl"`
	State      taskdef.GraphState `json:"state"`
	// What was posted: mapper tasks, and the files and compressed bytes
	// the filter selected under Source (s3://bucket/prefix).
	Mappers           int       `json:"mappers"`
	Files             int       `json:"files"`
	Bytes             int64     `json:"bytes"`
	Source            string    `json:"source"`
	CredentialsExpire time.Time `json:"credentialsExpire"`
	// With --wait: how long the graph ran, what its tasks processed
	// (the mappers' input apart from the reducer's counts), the tasks
	// that did not complete, and the result.
	Seconds  float64              `json:"seconds,omitempty"`
	Totals   *taskdef.GraphTotals `json:"totals,omitempty"`
	Failures []string             `json:"failures,omitempty"`
	Result   *resultJSON          `json:"result,omitempty"`
}

// resultJSON says where a completed graph's result is, and (without -o,
// when it is small enough) what it says.
type resultJSON struct {
	// TaskID and Artifact name the reducer's result artifact; URL reads
	// it from the queue (with a read token: `af result GRAPH` does).
	TaskID   string `json:"taskId"`
	Artifact string `json:"artifact"`
	URL      string `json:"url"`
	Bytes    int64  `json:"bytes"`
	// File is where -o wrote it.
	File string `json:"file,omitempty"`
	// Text is the result itself, without -o and up to maxInlineResult
	// bytes (invalid UTF-8 becomes U+FFFD); TextOmitted says a longer
	// one was left out (use -o or `af result`).
	Text        *string `json:"text,omitempty"`
	TextOmitted bool    `json:"textOmitted,omitempty"`
}

// maxInlineResult bounds the result --json carries in "text".
const maxInlineResult = 8 << 20

// submitOutputs is where a posted submit writes what: with --wait only
// the result goes to stdout (or -o's file), with --json one object goes
// there, with -q nothing but the result (or the graph id) and errors;
// the rest (what was posted, the monitor link, progress) goes to stderr,
// or to stdout when it is the command's only output.
type submitOutputs struct {
	json, quiet, wait bool
	path              string
	stdout, stderr    io.Writer
}

// info is where the lines about the posting and the progress go.
func (o submitOutputs) info() io.Writer {
	switch {
	case o.quiet:
		return io.Discard
	case o.wait || o.json:
		return o.stderr
	}
	return o.stdout
}

func (o submitOutputs) posted(ctx context.Context, q *queueclient.Client, plan submit.Plan, took time.Duration) error {
	g := plan.Graph
	monitor := submit.MonitorURL(q.BaseURL(), g.GraphID)
	info := o.info()
	fmt.Fprintf(info, "graph %s posted: %d mapper tasks + 1 reducer over %d files, %s from s3://%s/%s (in %s)\n",
		g.GraphID, plan.Mappers, plan.Files, units.Bytes(plan.Bytes), plan.Bucket, plan.Prefix, took.Round(time.Millisecond))
	fmt.Fprintf(info, "%s, until %s\n", plan.Scope.Describe(), plan.CredentialsExpire.UTC().Format(time.RFC3339))
	fmt.Fprintf(info, "monitor: %s\n", monitor)
	js := submitJSON{
		GraphID: g.GraphID, Name: g.Name, Owner: g.Owner, MonitorURL: monitor, State: taskdef.GraphRunning,
		Mappers: plan.Mappers, Files: plan.Files, Bytes: plan.Bytes, Source: "s3://" + plan.Bucket + "/" + plan.Prefix,
		CredentialsExpire: plan.CredentialsExpire.UTC(),
	}
	if !o.wait {
		switch {
		case o.json:
			return o.printJSON(js)
		case o.quiet:
			_, err := fmt.Fprintln(o.stdout, g.GraphID)
			return err
		}
		fmt.Fprintf(info, "follow it with: af status %s   result: af result %s\n", g.GraphID, g.GraphID)
		return nil
	}
	gs, err := submit.Follow(ctx, q, g.GraphID, info, !o.quiet && isTerminal(o.stderr), time.Second)
	if err != nil {
		return err
	}
	js.State, js.Owner, js.Totals = gs.State, gs.Owner, gs.Totals
	if gs.Resolved != nil {
		js.Seconds = gs.Resolved.Sub(gs.Created).Seconds()
	}
	if gs.State != taskdef.GraphCompleted {
		// Why is an error: it goes to stderr even with -q.
		js.Failures = submit.FailedTasks(gs)
		fmt.Fprintf(o.stderr, "graph %s %s:\n", g.GraphID, gs.State)
		for _, l := range js.Failures {
			fmt.Fprintf(o.stderr, "  %s\n", l)
		}
		fmt.Fprintf(o.stderr, "logs: af logs TASK\n")
		if o.json {
			if err := o.printJSON(js); err != nil {
				return err
			}
		}
		return errJobFailed
	}
	if !o.json {
		return printResult(ctx, q, gs, o.stdout, info, o.path)
	}
	res, err := fetchResult(ctx, q, gs, o.path, info)
	if err != nil {
		return err
	}
	js.Result = res
	return o.printJSON(js)
}

func (o submitOutputs) printJSON(js submitJSON) error {
	return json.NewEncoder(o.stdout).Encode(js)
}

// fetchResult saves the result to path (when set) or reads it for
// --json's "text".
func fetchResult(ctx context.Context, q *queueclient.Client, gs taskdef.GraphStatus, path string, info io.Writer) (*resultJSON, error) {
	if gs.ResultTaskID == "" {
		return nil, fmt.Errorf("graph %s has no reducer task to take a result from", gs.GraphID)
	}
	res := &resultJSON{
		TaskID: gs.ResultTaskID, Artifact: taskdef.ResultArtifact,
		URL: notify.ArtifactURL(q.BaseURL(), gs.ResultTaskID, taskdef.ResultArtifact),
	}
	body, err := q.GetArtifact(ctx, gs.ResultTaskID, -1, taskdef.ResultArtifact)
	if err != nil {
		return nil, fmt.Errorf("fetch the result of graph %s: %w", gs.GraphID, err)
	}
	defer body.Close()
	if path != "" && path != "-" {
		n, err := writeFileAtomic(path, body)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(info, "wrote %s (%s)\n", path, units.Bytes(n))
		res.File, res.Bytes = path, n
		return res, nil
	}
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(body, maxInlineResult+1))
	if err != nil {
		return nil, fmt.Errorf("read the result of graph %s: %w", gs.GraphID, err)
	}
	if n > maxInlineResult {
		rest, err := io.Copy(io.Discard, body)
		if err != nil {
			return nil, fmt.Errorf("read the result of graph %s: %w", gs.GraphID, err)
		}
		res.Bytes, res.TextOmitted = n+rest, true
		return res, nil
	}
	text := buf.String()
	res.Bytes, res.Text = n, &text
	return res, nil
}

// writeFileAtomic writes r to path through a temporary file in the same
// directory, renamed over path only when all of r was written and
// synced: a reader of path never sees part of a result, and a failed
// fetch leaves an earlier file as it was.
func writeFileAtomic(path string, r io.Reader) (int64, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return 0, badInput(fmt.Errorf("write the result to %s: %w", path, err))
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	n, err := io.Copy(f, r)
	if err != nil {
		return n, fmt.Errorf("write the result to %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return n, fmt.Errorf("write the result to %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return n, fmt.Errorf("write the result to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("write the result to %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return n, badInput(fmt.Errorf("write the result to %s: %w", path, err))
	}
	done = true
	return n, nil
}
