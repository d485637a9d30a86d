package main

import (
	"context"
	"fmt"
	"io"

	"github.com/af-project/af/internal/taskdef"
)

func init() {
	register(command{
		name:    "cancel",
		summary: "cancel a graph: unresolved tasks end exception/canceled",
		run:     runCancel,
	})
}

func runCancel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("cancel", "cancel GRAPH [--queue URL] [--token T]", stderr)
	qf := addQueueFlags(fs)
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want exactly one graph id", errUsage)
	}
	q, err := qf.client()
	if err != nil {
		return err
	}
	st, err := q.CancelGraph(ctx, fs.Arg(0))
	if err != nil {
		return explainQueueErr(err, *qf.url)
	}
	canceled := 0
	for _, t := range st.Tasks {
		if n := len(t.Runs); n > 0 && t.Runs[n-1].ReasonResolved == taskdef.ReasonCanceled {
			canceled++
		}
	}
	fmt.Fprintf(stdout, "graph %s is %s: %d of %d tasks canceled\n", st.GraphID, st.State, canceled, len(st.Tasks))
	return nil
}
