package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/taskdef"
)

func init() {
	register(command{
		name:    "submit",
		summary: "run a job: FILTER selects the input files, IMAGE holds the mapper and reducer",
		run:     runSubmit,
	})
}

// envFlag collects repeated --env K=V.
type envFlag map[string]string

func (e envFlag) String() string { return "" }
func (e envFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want K=V, got %q", v)
	}
	e[k] = val
	return nil
}

func runSubmit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("submit", "submit FILTER.json IMAGE [flags]", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: af submit FILTER.json IMAGE [flags]

Runs the job in IMAGE (a job image on the workers, e.g. af/os-count) over the
input files FILTER.json selects. The tasks pin the image: REGISTRY/NAME:TAG
(e.g. 127.0.0.1:5000/team/job:v1) is resolved at its registry, with the
credentials of Docker's config ($DOCKER_CONFIG or ~/.docker), to NAME@sha256:…,
which workers started with --pull fetch; any other NAME[:TAG] must be on this
host's engine and is pinned to its image id, so every worker needs that same
build (docker save | docker load). af queries the file index, mints temporary
S3 credentials, seals them to the worker pool's key, balances the files into
mapper tasks feeding one reducer, and posts the graph. It prints the graph
id and the monitor page's URL; with --wait it follows the graph and prints
the result.

For scripts: with --wait only the result goes to standard output (or to -o
FILE); what was posted, the monitor link and the progress go to standard
error, which -q silences (errors still go there). Without --wait, -q prints
only the graph id. --json prints one JSON object instead (graph id, monitor
URL, state, the counts and, with --wait, the result). The exit status is 0
when the job completed, 1 when it failed or was canceled, 2 for a usage or
input error (bad flag, filter, image), 3 when the queue, S3/STS or Docker
failed. Examples:

  af submit filters/Filter.json af/os-count --wait -q > counts.tsv
  af submit filters/Filter.json af/os-count --wait -o counts.tsv
  id=$(af submit filters/Filter.json af/os-count -q)
  af submit filters/Filter.json af/os-count --wait --json | jq .totals.input

The credentials can only read (s3:GetObject; no listing, no writes) the keys
under the smallest set of key prefixes covering the selected files: one per
combination of dimension values the filter kept, e.g.
saved_session/Firefox/release/40.0/20150101000000.20150105., so a file the
filter did not select is readable only if it shares every dimension value
with a selected one. When those prefixes do not fit STS's 2,048-character
session policy, af drops dimensions from the end, one level at a time, and
says so. They expire --credentials-ttl after submission: by default the
graph's --deadline plus 10 minutes (at most 12 hours for assume-role). They
are sealed to this graph: workers refuse them in any other graph, for inputs
outside those prefixes, or at an S3 endpoint other than the workers' own.

Flags:
`)
		fs.PrintDefaults()
	}
	owner := fs.String("owner", envOr("AF_OWNER", ""), "the graph's owner, who is emailed when it ends (env AF_OWNER; default: the identity of your token). Only an admin may name another identity; the config file's shared submit token may name an owner that is no registered identity, as scripts did before identities")
	name := fs.String("name", "", "job name (default: the image and filter)")
	priority := fs.String("priority", "normal", "claim priority: high, normal or low (the server's priority.high_owners may keep high for some owners)")
	env := envFlag{}
	fs.Var(env, "env", "K=V environment variable for the job's containers (repeatable)")
	maxLoad := fs.Int64("max-load-bytes", submit.DefaultMaxLoadBytes, "compressed input bytes per mapper task at most")
	maxFiles := fs.Int("max-files-per-task", submit.DefaultMaxFilesPerTask, "input files per mapper task at most")
	maxRunTime := fs.Duration("max-run-time", submit.DefaultMaxRunTime, "a task's container is killed after this long")
	deadline := fs.Duration("deadline", submit.DefaultDeadline, "the whole graph must finish within this")
	indexDB := fs.String("index-db", "", "query this local index file instead of the queue's index")
	cf := addCredentialFlags(fs, "lifetime of the job's S3 credentials (default: --deadline plus 10m, at most 12h for assume-role, 36h for federation-token; a shorter one shortens the deadline to fit)")
	of := addOutputFlags(fs, outputHelp{
		wait:  "follow the graph to its end and print the result: only the result goes to standard output; progress and links go to standard error",
		out:   "with --wait: write the result to `FILE` (atomically: a temporary file beside it, renamed into place when whole) instead of standard output",
		json:  "print one JSON object on standard output instead of text: graph id, monitor URL, state, counts and (with --wait) the result's location and text; see README's \"Scripting af\"",
		quiet: "quiet: print nothing but the result and errors; without --wait, only the graph id",
	})
	dryRun := fs.Bool("dry-run", false, "print the graph as JSON and post nothing")
	noImageCheck := fs.Bool("no-image-check", false, "do not check IMAGE on this host's Docker engine (that it is there, its analysis-tools.yml, and that a Python job compiles); an IMAGE without a registry host then runs unpinned")
	fs.DurationVar(&submit.NoWorkerAfter, "no-worker-notice", submit.NoWorkerAfter, "with --wait, say on stderr when no worker has claimed a task of the graph for this long (0: never)")
	qf := addQueueFlags(fs)
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("%w: want FILTER.json and IMAGE", errUsage)
	}
	filterPath, image := fs.Arg(0), fs.Arg(1)
	if err := of.check(", or save it later with `af result GRAPH -o FILE`"); err != nil {
		return err
	}
	// Before any credentials are minted: a token that would go over
	// plain http, or a bad --ca, stops here.
	q, err := qf.client()
	if err != nil {
		return err
	}
	filterJSON, err := os.ReadFile(filterPath)
	if err != nil {
		return badInput(fmt.Errorf("read filter: %w", err))
	}
	prio, err := taskdef.ParsePriority(*priority)
	if err != nil {
		return fmt.Errorf("%w: --priority: %v", errUsage, err)
	}
	co, err := cf.options()
	if err != nil {
		return err
	}
	req := submit.Request{
		FilterName: filterPath, FilterJSON: filterJSON, Image: image, Name: *name, Owner: *owner, Priority: prio, Env: env,
		MaxLoadBytes: *maxLoad, MaxFilesPerTask: *maxFiles, MaxRunTime: *maxRunTime, Deadline: *deadline,
		IndexDB: *indexDB, CredentialOptions: co,
	}
	if req.Name == "" {
		req.Name = image + " over " + strings.TrimSuffix(baseName(filterPath), ".json")
	}
	awsCfg, err := awsconf.Load(ctx, awsconf.Options{})
	if err != nil {
		return err
	}
	s := &submit.Submitter{Queue: q, AWS: awsCfg}
	if !*noImageCheck {
		d, err := runner.NewDockerClient()
		if err != nil {
			return infra(fmt.Errorf("connect to Docker to check the image: %w (pass --no-image-check when this host has no Docker)", err))
		}
		defer d.Close()
		s.Docker = d
		if s.Runner, err = jobChecker(d); err != nil {
			return err
		}
		s.Warn = stderr
	}
	start := time.Now()
	plan, err := s.Plan(ctx, req)
	if err != nil {
		return explainQueueErr(err, *qf.url)
	}
	// Progress and notes go to stderr: stdout stays the graph (or result);
	// -q keeps stderr for errors alone.
	if !*of.quiet {
		fmt.Fprintln(stderr, plan.Image.Note)
	}
	if *dryRun {
		return printJSON(stdout, plan.Graph)
	}
	if _, err := s.Post(ctx, plan.Graph); err != nil {
		return explainQueueErr(err, *qf.url)
	}
	// The graph runs either way; only af resubmit needs the record.
	if err := s.Record(ctx, plan.Provenance); err != nil {
		fmt.Fprintf(stderr, "af: %v\n", err)
	}
	return of.outputs(stdout, stderr).posted(ctx, q, plan, time.Since(start))
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// isTerminal reports whether w is a terminal, for progress bars.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// jobChecker is the runner af submit checks the job's image with (its
// analysis-tools.yml, its entry points, a Python job's compile) before
// posting; its containers are labelled as af submit's.
func jobChecker(d runner.Docker) (*runner.Runner, error) {
	host, _ := os.Hostname()
	return runner.New(d, runner.Options{Logger: slog.New(slog.DiscardHandler), WorkerID: "af-submit-" + host})
}
