package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/units"
)

func init() {
	register(command{name: "resubmit", summary: "run a graph again exactly: same image digest, input files and versions, env and options", run: runResubmit})
	register(command{name: "provenance", summary: "show what a graph was made from (image digest, filter, job spec, env, inputs with ETags)", run: runProvenance})
}

func runResubmit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("resubmit", "resubmit GRAPH [flags]", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: af resubmit GRAPH [flags]

Runs graph GRAPH again, exactly as it was made: the same image, by the digest
or image id its tasks ran; the same input files, each at the version (S3
ETag) it had then; the same env, filter and job options (files per task,
run time, deadline, retries, limits). Only the credentials are new: minted
now, with your AWS settings, and sealed to the new graph. Every graph af
submit, af resubmit or a schedule makes records this (af provenance GRAPH
shows it).

Before posting, the recorded files are checked against the queue's index (by
the filter as the graph rendered it): one that is gone or was rewritten
refuses the resubmission and names it, since the job would not read the
same data; submit the filter again with af submit to process the data as it
is now. The tasks carry every file's ETag too, so a file rewritten after the
check fails its task instead of being read. An image pinned by its image id
must still be on this host's engine (and on the workers).

The new graph is yours (or --owner's); its output, -q, --json, --wait and the
exit status are af submit's.

Flags:
`)
		fs.PrintDefaults()
	}
	owner := fs.String("owner", envOr("AF_OWNER", ""), "the new graph's owner (env AF_OWNER; default: the identity of your token)")
	name := fs.String("name", "", "the new graph's name (default: the original's)")
	priority := fs.String("priority", "", "claim priority: high, normal or low (default: the original's)")
	indexDB := fs.String("index-db", "", "check the inputs against this local index file instead of the queue's index")
	cf := addCredentialFlags(fs, "lifetime of the new S3 credentials (default: the deadline plus 10m)")
	of := addOutputFlags(fs, outputHelp{
		wait:  "follow the new graph to its end and print the result (only the result goes to standard output)",
		out:   "with --wait: write the result to `FILE` (atomically) instead of standard output",
		json:  "print one JSON object on standard output instead of text, as af submit --json",
		quiet: "quiet: print nothing but the result and errors; without --wait, only the new graph id",
	})
	dryRun := fs.Bool("dry-run", false, "check the inputs and print the new graph as JSON; post nothing")
	noImageCheck := fs.Bool("no-image-check", false, "do not ask this host's Docker engine whether it still holds an image pinned by image id")
	qf := addQueueFlags(fs)
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want the GRAPH id to run again (af graphs lists them)", errUsage)
	}
	if err := of.check(""); err != nil {
		return err
	}
	co, err := cf.options()
	if err != nil {
		return err
	}
	var prio taskdef.Priority
	if *priority != "" {
		if prio, err = taskdef.ParsePriority(*priority); err != nil {
			return fmt.Errorf("%w: --priority: %v", errUsage, err)
		}
	}
	q, err := qf.client()
	if err != nil {
		return err
	}
	graphID := fs.Arg(0)
	prov, err := q.Provenance(ctx, graphID)
	if err != nil {
		return explainProvenanceErr(err, graphID, *qf.url)
	}
	req := submit.ResubmitRequest{
		Of: prov, Name: *name, Owner: *owner, Priority: prio, IndexDB: *indexDB, CredentialOptions: co,
	}
	awsCfg, err := awsconf.Load(ctx, awsconf.Options{})
	if err != nil {
		return err
	}
	s := &submit.Submitter{Queue: q, AWS: awsCfg}
	if !*noImageCheck && (prov.Image.Source == "image-id" || prov.Image.Source == "repo-digest") {
		d, err := runner.NewDockerClient()
		if err != nil {
			return infra(fmt.Errorf("connect to Docker to check the image: %w (pass --no-image-check when this host has no Docker)", err))
		}
		defer d.Close()
		s.Docker = d
	}
	start := time.Now()
	plan, err := s.Replan(ctx, req)
	if err != nil {
		return explainQueueErr(err, *qf.url)
	}
	if !*of.quiet {
		fmt.Fprintln(stderr, plan.Image.Note)
		fmt.Fprintf(stderr, "graph %s's %d input files (%s) are unchanged in the index\n", graphID, plan.Files, units.Bytes(plan.Bytes))
	}
	if *dryRun {
		return printJSON(stdout, plan.Graph)
	}
	if _, err := s.Post(ctx, plan.Graph); err != nil {
		return explainQueueErr(err, *qf.url)
	}
	if err := s.Record(ctx, plan.Provenance); err != nil {
		fmt.Fprintf(stderr, "af: %v\n", err)
	}
	return of.outputs(stdout, stderr).posted(ctx, q, plan, time.Since(start))
}

// explainProvenanceErr says what a missing record means.
func explainProvenanceErr(err error, graphID, queueURL string) error {
	var ae *queueclient.APIError
	if errors.As(err, &ae) && ae.Code == "NoProvenance" {
		return badInput(fmt.Errorf("graph %s has no record of what it was made from (it was made by an af before records were kept, or its maker could not store it), so it cannot be run exactly again: submit its filter with af submit", graphID))
	}
	return explainQueueErr(err, queueURL)
}

func runProvenance(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("provenance", "provenance GRAPH [--json] [--filter]", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: af provenance GRAPH [--json | --filter | --inputs]

Shows what graph GRAPH was made from, as its maker recorded it: the image
(as asked and as pinned), the job spec read from the image, the filter as
given and as rendered (for a schedule's run), the env, the job options and
the input files with their S3 ETags. af resubmit GRAPH runs exactly that
again.

Flags:
`)
		fs.PrintDefaults()
	}
	asJSON := fs.Bool("json", false, "print the whole record as JSON")
	filterOnly := fs.Bool("filter", false, "print only the filter as rendered (a file af submit takes)")
	inputs := fs.Bool("inputs", false, "print only the input files, one per line: KEY SIZE ETAG")
	qf := addQueueFlags(fs)
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want the GRAPH id", errUsage)
	}
	q, err := qf.client()
	if err != nil {
		return err
	}
	p, err := q.Provenance(ctx, fs.Arg(0))
	if err != nil {
		return explainProvenanceErr(err, fs.Arg(0), *qf.url)
	}
	switch {
	case *asJSON:
		return printJSON(stdout, p)
	case *filterOnly:
		_, err := fmt.Fprintf(stdout, "%s\n", strings.TrimSpace(string(p.Rendered)))
		return err
	case *inputs:
		for i, in := range p.Inputs {
			tag := "-"
			if i < len(p.ETags) && p.ETags[i] != "" {
				tag = p.ETags[i]
			}
			fmt.Fprintf(stdout, "%s %d %s\n", in.Key, in.Size, tag)
		}
		return nil
	}
	return printProvenance(stdout, p)
}

// printProvenance is the record for people.
func printProvenance(w io.Writer, p taskdef.Provenance) error {
	var total int64
	for _, in := range p.Inputs {
		total += in.Size
	}
	fmt.Fprintf(w, "graph:      %s\n", p.GraphID)
	fmt.Fprintf(w, "made by:    %s at %s (af %s)\n", p.MadeBy, p.Created.UTC().Format(time.RFC3339), p.AfVersion)
	if p.ResubmitOf != "" {
		fmt.Fprintf(w, "runs again: %s\n", p.ResubmitOf)
	}
	if p.Schedule != "" && p.Target != nil {
		fmt.Fprintf(w, "schedule:   %s, target %s\n", p.Schedule, p.Target.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(w, "image:      %s (asked %s; pinned by %s)\n", p.Image.Ref, p.Image.Asked, p.Image.Source)
	fmt.Fprintf(w, "job:        %q, owner %s, priority %s, max %s or %d files per task, run time %s, deadline %s, retries %d\n",
		p.Job.Name, orDash(p.Job.Owner), orDash(string(p.Job.Priority)), units.Bytes(p.Job.MaxLoadBytes), p.Job.MaxFilesPerTask,
		time.Duration(p.Job.MaxRunTime)*time.Second, time.Duration(p.Job.Deadline)*time.Second, p.Job.Retries)
	if len(p.Env) > 0 {
		fmt.Fprintf(w, "env:       ")
		for _, k := range slices.Sorted(maps.Keys(p.Env)) {
			fmt.Fprintf(w, " %s=%s", k, p.Env[k])
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "inputs:     %d files, %s from s3://%s/%s (%d with ETags; af provenance --inputs lists them)\n", len(p.Inputs), units.Bytes(total), p.Bucket, p.Prefix, countSet(p.ETags))
	fmt.Fprintf(w, "filter (%s):\n%s\n", orDash(p.FilterName), indent(string(p.Filter)))
	if string(p.Rendered) != string(p.Filter) {
		fmt.Fprintf(w, "rendered:\n%s\n", indent(string(p.Rendered)))
	}
	if p.JobSpec != "" {
		fmt.Fprintf(w, "job spec (/etc/analysis-tools.yml):\n%s\n", indent(p.JobSpec))
	}
	return nil
}

func countSet(tags []string) int {
	n := 0
	for _, t := range tags {
		if t != "" {
			n++
		}
	}
	return n
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "  " + strings.Join(lines, "\n  ")
}
