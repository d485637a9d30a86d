package main

import (
	"context"
	"fmt"
	"io"

	"github.com/af-project/af/internal/taskdef"
)

func init() {
	register(command{
		name:    "rerun",
		summary: "run a resolved task again (its reducer follows), or every failed task of a graph",
		run:     runRerun,
	})
}

// rerunHelp explains what a rerun does to the rest of the graph; it is the
// body of `af rerun --help`.
const rerunHelp = `Rerun gives a resolved (completed, failed or exception) task a new run with
a fresh retry budget, and keeps its graph sound:

  - if the reducer had not started yet (unscheduled or pending):
    the reducer will wait for the new run; it starts once every mapper
    completed again;
  - if the reducer already ran (completed or failed) or is running (its run
    is superseded and its late report refused):
    the reducer will run again on the new outputs, as a new run, once the
    rerun mapper completed;
  - a reducer that another mapper failed for good is left as it is.

The graph is running again until every task resolved. af rerun prints
which of these happened.

With --failed the argument is a graph: every failed or exception task of
it is rerun in one step (tasks whose own dependencies are rerun with them
wait for those), and the graph is running again. This is also the only way
to re-open a canceled graph: its canceled tasks are exception, so they are
rerun; the tasks of a canceled graph cannot be rerun one by one.
`

func runRerun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("rerun", "rerun TASK | rerun GRAPH --failed  [--queue URL] [--token T]", stderr)
	failed := fs.Bool("failed", false, "the argument is a graph id: rerun every failed or exception task of it (canceled ones too), re-opening the graph")
	qf := addQueueFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: af rerun TASK\n       af rerun GRAPH --failed\n\n%s\nFlags:\n", rerunHelp)
		fs.PrintDefaults()
	}
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		if *failed {
			return fmt.Errorf("%w: want exactly one graph id", errUsage)
		}
		return fmt.Errorf("%w: want exactly one task id (or a graph id with --failed)", errUsage)
	}
	q, err := qf.client()
	if err != nil {
		return err
	}
	if *failed {
		resp, err := q.RerunFailed(ctx, fs.Arg(0))
		if err != nil {
			return explainQueueErr(err, *qf.url)
		}
		printGraphRerun(stdout, resp)
		return nil
	}
	st, err := q.Rerun(ctx, fs.Arg(0))
	if err != nil {
		return explainQueueErr(err, *qf.url)
	}
	printRerun(stdout, st)
	return nil
}

// printRerun says what `af rerun TASK` did: the task's new run, then one
// line per dependent.
func printRerun(w io.Writer, st taskdef.RerunResponse) {
	run := -1
	if n := len(st.Runs); n > 0 {
		run = st.Runs[n-1].RunID
	}
	switch st.State {
	case taskdef.StateUnscheduled:
		fmt.Fprintf(w, "task %s (%s) is unscheduled: it waits for its dependencies, then runs as a new run; %d retries left\n", st.TaskID, st.Name, st.RetriesLeft)
	default:
		fmt.Fprintf(w, "task %s (%s) is %s as run %d; %d retries left\n", st.TaskID, st.Name, st.State, run, st.RetriesLeft)
	}
	for _, e := range st.Dependents {
		fmt.Fprintln(w, dependentLine(e))
	}
}

// dependentLine is one dependent's fate in words.
func dependentLine(e taskdef.RerunEffect) string {
	who := "the dependent task"
	if e.Kind == taskdef.KindReducer {
		who = "the reducer"
	}
	head := fmt.Sprintf("%s %s (%s), %s", e.Kind, e.TaskID, e.Name, e.From)
	if e.Kind == "" {
		head = fmt.Sprintf("task %s (%s), %s", e.TaskID, e.Name, e.From)
	}
	switch e.Effect {
	case taskdef.RerunWaits:
		return fmt.Sprintf("%s: %s will wait for the new run", head, who)
	case taskdef.RerunRunsAgain:
		if e.From == taskdef.StateRunning {
			return fmt.Sprintf("%s: its run is superseded; %s will run again on the new outputs", head, who)
		}
		return fmt.Sprintf("%s: %s will run again on the new outputs", head, who)
	case taskdef.RerunUnchanged:
		return fmt.Sprintf("%s: left as it is (%s)", head, e.Message)
	}
	return fmt.Sprintf("%s: %s", head, e.Effect)
}

// printGraphRerun says what `af rerun GRAPH --failed` did.
func printGraphRerun(w io.Writer, r taskdef.GraphRerunResponse) {
	pending, waiting := 0, 0
	for _, e := range r.Rerun {
		if e.To == taskdef.StateUnscheduled {
			waiting++
		} else {
			pending++
		}
	}
	fmt.Fprintf(w, "graph %s is %s: %d failed or exception tasks rerun (%d pending, %d waiting for dependencies rerun with them)\n",
		r.Graph.GraphID, r.Graph.State, len(r.Rerun), pending, waiting)
	for _, e := range r.Dependents {
		fmt.Fprintln(w, dependentLine(e))
	}
}
