package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/units"
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
input files FILTER.json selects. af queries the file index, mints temporary
S3 credentials, seals them to the worker pool's key, balances the files into
mapper tasks feeding one reducer, and posts the graph. It prints the graph
id and the monitor page's URL; with --wait it follows the graph and prints
the result.

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
	pubKey := fs.String("public-key", envOr("AF_PUBLIC_KEY", ""), "the worker pool's public key file af.pub (env AF_PUBLIC_KEY; default: the key the queue publishes)")
	indexDB := fs.String("index-db", "", "query this local index file instead of the queue's index")
	ttl := fs.Duration("credentials-ttl", 0, "lifetime of the job's S3 credentials (default: --deadline plus 10m, at most 12h for assume-role, 36h for federation-token; a shorter one shortens the deadline to fit)")
	mode := fs.String("credentials-mode", "assume-role", "how credentials are minted: assume-role or federation-token")
	roleARN := fs.String("role-arn", envOr("AF_ROLE_ARN", ""), "role to assume on AWS (env AF_ROLE_ARN)")
	wait := fs.Bool("wait", false, "follow the graph to its end and print the result")
	fs.DurationVar(&submit.NoWorkerAfter, "no-worker-notice", submit.NoWorkerAfter, "with --wait, say on stderr when no worker has claimed a task of the graph for this long (0: never)")
	dryRun := fs.Bool("dry-run", false, "print the graph as JSON and post nothing")
	noImageCheck := fs.Bool("no-image-check", false, "do not check IMAGE on this host's Docker engine (that it is there, its analysis-tools.yml, and that a Python job compiles)")
	qf := addQueueFlags(fs)
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("%w: want FILTER.json and IMAGE", errUsage)
	}
	filterPath, image := fs.Arg(0), fs.Arg(1)
	// Before any credentials are minted: a token that would go over
	// plain http, or a bad --ca, stops here.
	q, err := qf.client()
	if err != nil {
		return err
	}
	filterJSON, err := os.ReadFile(filterPath)
	if err != nil {
		return fmt.Errorf("read filter: %w", err)
	}
	prio, err := taskdef.ParsePriority(*priority)
	if err != nil {
		return fmt.Errorf("%w: --priority: %v", errUsage, err)
	}
	cmode, err := creds.ParseMode(*mode)
	if err != nil {
		return fmt.Errorf("%w: --credentials-mode: %v", errUsage, err)
	}
	req := submit.Request{
		FilterName: filterPath, FilterJSON: filterJSON, Image: image, Name: *name, Owner: *owner, Priority: prio, Env: env,
		MaxLoadBytes: *maxLoad, MaxFilesPerTask: *maxFiles, MaxRunTime: *maxRunTime, Deadline: *deadline,
		IndexDB: *indexDB, CredentialsTTL: *ttl, CredentialsMode: cmode, RoleARN: *roleARN,
	}
	if req.Name == "" {
		req.Name = image + " over " + strings.TrimSuffix(baseName(filterPath), ".json")
	}
	if *pubKey != "" {
		if req.PublicKey, err = creds.LoadPublicKey(*pubKey); err != nil {
			return err
		}
	}
	awsCfg, err := awsconf.Load(ctx, awsconf.Options{})
	if err != nil {
		return err
	}
	s := &submit.Submitter{Queue: q, AWS: awsCfg}
	if !*noImageCheck {
		d, err := runner.NewDockerClient()
		if err != nil {
			return fmt.Errorf("connect to Docker to check the image: %w (pass --no-image-check when this host has no Docker)", err)
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
	if *dryRun {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(plan.Graph)
	}
	if _, err := s.Post(ctx, plan.Graph); err != nil {
		return explainQueueErr(err, *qf.url)
	}
	monitor := submit.MonitorURL(q.BaseURL(), plan.Graph.GraphID)
	fmt.Fprintf(stdout, "graph %s posted: %d mapper tasks + 1 reducer over %d files, %s from s3://%s/%s (in %s)\n",
		plan.Graph.GraphID, plan.Mappers, plan.Files, units.Bytes(plan.Bytes), plan.Bucket, plan.Prefix, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "%s, until %s\n", plan.Scope.Describe(), plan.CredentialsExpire.UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "monitor: %s\n", monitor)
	if !*wait {
		fmt.Fprintf(stdout, "follow it with: af status %s   result: af result %s\n", plan.Graph.GraphID, plan.Graph.GraphID)
		return nil
	}
	return waitAndPrint(ctx, q, plan.Graph.GraphID, stdout, stderr)
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

// errJobFailed makes af exit non-zero after it printed why.
var errJobFailed = errors.New("the job did not complete")

func waitAndPrint(ctx context.Context, q *queueclient.Client, graphID string, stdout, stderr io.Writer) error {
	gs, err := submit.Follow(ctx, q, graphID, stderr, isTerminal(stderr), time.Second)
	if err != nil {
		return err
	}
	if gs.State != taskdef.GraphCompleted {
		fmt.Fprintf(stderr, "graph %s %s:\n", graphID, gs.State)
		for _, l := range submit.FailedTasks(gs) {
			fmt.Fprintf(stderr, "  %s\n", l)
		}
		fmt.Fprintf(stderr, "logs: af logs TASK\n")
		return errJobFailed
	}
	return printResult(ctx, q, gs, stdout, stderr, "")
}

// jobChecker is the runner af submit checks the job's image with (its
// analysis-tools.yml, its entry points, a Python job's compile) before
// posting; its containers are labelled as af submit's.
func jobChecker(d runner.Docker) (*runner.Runner, error) {
	host, _ := os.Hostname()
	return runner.New(d, runner.Options{Logger: slog.New(slog.DiscardHandler), WorkerID: "af-submit-" + host})
}
