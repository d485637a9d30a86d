package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/units"
)

func init() {
	register(command{
		name:    "result",
		summary: "print or save a finished job's result",
		run:     runResult,
	})
	register(command{
		name:    "logs",
		summary: "print a task's log (--follow while it runs)",
		run:     runLogs,
	})
}

func runResult(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("result", "result GRAPH|SCHEDULE@DATE|SCHEDULE [-o FILE] [--wait]", stderr)
	out := fs.String("o", "", "write the result to `FILE` (atomically: a temporary file beside it, renamed into place when whole) instead of standard output")
	wait := fs.Bool("wait", false, "wait for the graph to finish first")
	qf := addQueueFlags(fs)
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want exactly one graph id, or a schedule's NAME@DATE (NAME alone: its newest completed run)", errUsage)
	}
	q, err := qf.client()
	if err != nil {
		return err
	}
	graphID, err := resolveResultArg(ctx, q, fs.Arg(0), *wait, stderr)
	if err != nil {
		return explainQueueErr(err, *qf.url)
	}
	if *wait {
		if _, err := submit.Follow(ctx, q, graphID, stderr, isTerminal(stderr), time.Second); err != nil {
			return explainQueueErr(err, *qf.url)
		}
	}
	gs, err := q.Graph(ctx, graphID)
	if err != nil {
		return explainQueueErr(err, *qf.url)
	}
	switch gs.State {
	case taskdef.GraphRunning:
		p := submit.ProgressOf(gs, time.Now())
		return fmt.Errorf("graph %s is still running (%s); wait with `af result --wait %s`", gs.GraphID, p.Line(false), gs.GraphID)
	case taskdef.GraphCanceled:
		return jobFailed(fmt.Errorf("graph %s was canceled, so it has no result; rerun its unfinished tasks with `af rerun %s --failed`, or submit the job again", gs.GraphID, gs.GraphID))
	case taskdef.GraphFailed:
		fmt.Fprintf(stderr, "graph %s failed:\n", gs.GraphID)
		for _, l := range submit.FailedTasks(gs) {
			fmt.Fprintf(stderr, "  %s\n", l)
		}
		return errJobFailed
	}
	return printResult(ctx, q, gs, stdout, stderr, *out)
}

// printResult writes the reducer's result to path, or to stdout.
func printResult(ctx context.Context, q *queueclient.Client, gs taskdef.GraphStatus, stdout, stderr io.Writer, path string) error {
	if gs.ResultTaskID == "" {
		return fmt.Errorf("graph %s has no reducer task to take a result from", gs.GraphID)
	}
	body, err := q.GetArtifact(ctx, gs.ResultTaskID, -1, taskdef.ResultArtifact)
	if err != nil {
		return fmt.Errorf("fetch the result of graph %s: %w", gs.GraphID, err)
	}
	defer body.Close()
	if path != "" && path != "-" {
		n, err := writeFileAtomic(path, body)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s (%s)\n", path, units.Bytes(n))
		return nil
	}
	if _, err := io.Copy(stdout, body); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

func runLogs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("logs", "logs TASK [--run N] [--follow]", stderr)
	run := fs.Int("run", -1, "run id (default: the latest run)")
	follow := fs.Bool("follow", false, "keep printing the log as the task runs, until it ends")
	qf := addQueueFlags(fs)
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want exactly one task id", errUsage)
	}
	q, err := qf.client()
	if err != nil {
		return err
	}
	taskID := fs.Arg(0)
	var printed int64
	for {
		st, err := q.Task(ctx, taskID)
		if err != nil {
			return explainQueueErr(err, *qf.url)
		}
		runID := *run
		if runID < 0 {
			runID = len(st.Runs) - 1
		}
		if runID < 0 {
			if !*follow {
				return fmt.Errorf("task %s has not run yet (%s)", taskID, st.State)
			}
		} else {
			n, err := printLogFrom(ctx, q, taskID, runID, printed, stdout)
			switch {
			case err == nil:
				printed = n
			case errors.Is(err, queueclient.ErrNotFound):
				if !*follow {
					return fmt.Errorf("task %s run %d has no log yet", taskID, runID)
				}
			default:
				return err
			}
		}
		done := runID >= 0 && runID < len(st.Runs) && st.Runs[runID].State.Resolved()
		if !*follow || done {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// printLogFrom prints the log past offset and returns the new offset. The
// worker replaces the live log artifact as it grows, so following means
// fetching it again and printing only what is new.
func printLogFrom(ctx context.Context, q *queueclient.Client, taskID string, runID int, offset int64, w io.Writer) (int64, error) {
	body, err := q.GetArtifact(ctx, taskID, runID, taskdef.LiveLogArtifact)
	if err != nil {
		return offset, err
	}
	defer body.Close()
	if _, err := io.CopyN(io.Discard, body, offset); err != nil {
		return offset, nil
	}
	n, err := io.Copy(w, body)
	return offset + n, err
}
