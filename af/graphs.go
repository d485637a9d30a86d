package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

func init() {
	register(command{
		name:    "graphs",
		summary: "list graphs, newest first (--owner, --name, --state filters)",
		run:     runGraphs,
	})
}

// statesFlag collects --state values, repeated or comma-separated.
type statesFlag []taskdef.GraphState

func (s *statesFlag) String() string { return "" }
func (s *statesFlag) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		switch st := taskdef.GraphState(strings.TrimSpace(part)); st {
		case taskdef.GraphRunning, taskdef.GraphCompleted, taskdef.GraphFailed, taskdef.GraphCanceled:
			*s = append(*s, st)
		default:
			return fmt.Errorf("%q is not a graph state: want running, completed, failed or canceled", part)
		}
	}
	return nil
}

func runGraphs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("graphs", "graphs [--owner NAME] [--name TEXT] [--state STATE] [--limit N] [--json]", stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: af graphs [--owner NAME] [--name TEXT] [--state STATE] [--limit N] [--json]

Lists the graphs you may read, newest first: a submit identity its own, a
read or admin identity everyone's. One line per graph: id, state, owner,
when it was created, how long it ran, tasks completed of all, and name.
--json prints the server's answer, {"graphs": [...]}, as GET /api/v1/graphs
sends it.

  af graphs --state failed,canceled --owner alice@example.com
  af graphs --name os-count --limit 5 --json | jq -r '.graphs[].graphId'

Flags:
`)
		fs.PrintDefaults()
	}
	owner := fs.String("owner", "", "only the graphs of this owner (exact)")
	name := fs.String("name", "", "only the graphs whose name contains `TEXT` (any case)")
	var states statesFlag
	fs.Var(&states, "state", "only graphs in this `STATE`: running, completed, failed or canceled (repeat or comma-separate for any of several)")
	limit := fs.Int("limit", 20, "list at most `N` graphs (the server lists at most 1000)")
	asJSON := fs.Bool("json", false, "print JSON ({\"graphs\": [...]}) instead of a table")
	qf := addQueueFlags(fs)
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: af graphs takes no arguments (filters are flags: --owner, --name, --state)", errUsage)
	}
	if *limit < 1 {
		return fmt.Errorf("%w: --limit %d must be at least 1", errUsage, *limit)
	}
	q, err := qf.client()
	if err != nil {
		return err
	}
	gs, err := q.ListGraphs(ctx, taskdef.GraphListQuery{Limit: *limit, Owner: *owner, Name: *name, States: states})
	if err != nil {
		return explainQueueErr(err, *qf.url)
	}
	if *asJSON {
		return printJSON(stdout, taskdef.GraphList{Graphs: gs})
	}
	return printGraphs(stdout, gs, time.Now())
}

// printGraphs writes af graphs' table.
func printGraphs(w io.Writer, gs []taskdef.GraphSummary, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GRAPH\tSTATE\tOWNER\tCREATED\tDURATION\tTASKS\tNAME")
	for _, g := range gs {
		end := now
		if g.Resolved != nil {
			end = *g.Resolved
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", g.GraphID, g.State, g.Owner, g.Created.Local().Format(time.DateTime),
			end.Sub(g.Created).Round(time.Second), g.Counts[taskdef.StateCompleted], g.Tasks, oneLine(g.Name, 60))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(gs) == 0 {
		_, err := fmt.Fprintln(w, "no graphs match")
		return err
	}
	return nil
}
