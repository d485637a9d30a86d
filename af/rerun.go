package main

import (
	"context"
	"fmt"
	"io"
)

func init() {
	register(command{
		name:    "rerun",
		summary: "run a resolved task again as a new run (TaskCluster's rerunTask)",
		run:     runRerun,
	})
}

func runRerun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("rerun", "rerun TASK [--queue URL] [--token T]", stderr)
	qf := addQueueFlags(fs)
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want exactly one task id", errUsage)
	}
	st, err := qf.client().Rerun(ctx, fs.Arg(0))
	if err != nil {
		return explainQueueErr(err, *qf.url)
	}
	run := -1
	if n := len(st.Runs); n > 0 {
		run = st.Runs[n-1].RunID
	}
	fmt.Fprintf(stdout, "task %s (%s) is %s as run %d; %d retries left\n", st.TaskID, st.Name, st.State, run, st.RetriesLeft)
	return nil
}
