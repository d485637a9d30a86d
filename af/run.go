package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/jobspec"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/localrun"
	"github.com/af-project/af/internal/submit"
)

func init() {
	register(command{
		name:    "run",
		summary: "run a job on this host: af run --local IMAGE --filter F.json (--data-dir DIR | --bucket B [--sample N])",
		run:     runLocal,
	})
	register(command{
		name:    "sample",
		summary: "print documents as a job receives them: af sample F.json [-n 5] (--data-dir DIR | --bucket B)",
		run:     runSample,
	})
}

// sourceFlags are the input source flags af run --local and af sample share.
type sourceFlags struct {
	dataDir, bucket, prefix, schema *string
}

func addSourceFlags(fs *flag.FlagSet) sourceFlags {
	return sourceFlags{
		dataDir: fs.String("data-dir", "", "a directory laid out like the bucket (a file's key is its path under DIR, as telemetry-server's --local-only --data-dir); files are read from there"),
		bucket:  fs.String("bucket", envOr("AF_BUCKET", ""), "without --data-dir: the S3 bucket to list and read with your own AWS settings (AWS_PROFILE, AWS_ENDPOINT_URL, ...; env AF_BUCKET); no STS, nothing sealed"),
		prefix:  fs.String("prefix", "", "key prefix the layout lives under, in the bucket or the data dir (as af index build --prefix)"),
		schema:  fs.String("schema", layout.DefaultSchemaPath, "telemetry_schema.json naming the dimensions (the built-in telemetry schema when the default file is absent)"),
	}
}

// source resolves the flags into a localrun.Source.
func (sf sourceFlags) source(ctx context.Context, fs *flag.FlagSet) (localrun.Source, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	schema, err := layout.LoadSchema(*sf.schema)
	switch {
	case errors.Is(err, os.ErrNotExist) && !set["schema"]:
		schema = layout.Telemetry()
	case err != nil:
		return localrun.Source{}, err
	}
	src := localrun.Source{DataDir: *sf.dataDir, Bucket: *sf.bucket, Prefix: *sf.prefix, Schema: schema}
	switch {
	case src.DataDir != "" && set["bucket"]:
		return src, fmt.Errorf("%w: give --data-dir or --bucket, not both", errUsage)
	case src.DataDir != "":
		return src, nil
	case src.Bucket == "":
		return src, fmt.Errorf("%w: no input: give --data-dir DIR (a directory laid out like the bucket) or --bucket BUCKET (env AF_BUCKET) to read a sample of S3 with your AWS settings", errUsage)
	}
	cfg, err := awsconf.Load(ctx, awsconf.Options{})
	if err != nil {
		return src, err
	}
	src.S3 = awsconf.S3(cfg)
	return src, nil
}

func runLocal(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", "run --local IMAGE --filter FILTER.json (--data-dir DIR | --bucket BUCKET [--sample N]) [flags]", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: af run --local IMAGE --filter FILTER.json (--data-dir DIR | --bucket BUCKET [--sample N]) [flags]

Runs the job in IMAGE on this host, with no queue, workers or af serve:
its mappers and then its reducer, each in the same locked-down container as
on a worker (no network, non-root, the same limits), with the same helper,
input framing, decompression, mapper sort, reducer merge and failure
messages. The inputs are the files FILTER.json selects in a directory laid
out like the bucket (--data-dir), or a sample of --sample N of the files it
selects in S3, listed and read with your own AWS settings (--bucket; no
STS, nothing sealed). The files are split into --mappers tasks (2 by
default, so the reducer merges several mappers' outputs as on the cluster).

The result goes to stdout; the plan, each task's log (the worker's lines
and the job's own output, prefixed with the task's name) and the outcome
go to stderr. When a task fails, af prints the message a worker would
report for it and exits 1.

Flags:
`)
		fs.PrintDefaults()
	}
	local := fs.Bool("local", false, "run on this host (required: the cluster's way is af submit)")
	filterPath := fs.String("filter", "", "FILTER.json selecting the input files (required)")
	sf := addSourceFlags(fs)
	sample := fs.Int("sample", 10, "run over this many of the selected files, spread evenly over the selection in key order (0: all of them); with --bucket 10 by default, with --data-dir all unless given")
	mappers := fs.Int("mappers", localrun.DefaultMappers, "split the files into at most this many mapper tasks (0: as af submit splits them, by --max-load-bytes and --max-files-per-task)")
	parallel := fs.Int("parallel", min(2, runtime.NumCPU()), "mapper tasks run at once")
	env := envFlag{}
	fs.Var(env, "env", "K=V environment variable for the job's containers (repeatable)")
	maxLoad := fs.Int64("max-load-bytes", submit.DefaultMaxLoadBytes, "compressed input bytes per mapper task at most")
	maxFiles := fs.Int("max-files-per-task", submit.DefaultMaxFilesPerTask, "input files per mapper task at most")
	maxRunTime := fs.Duration("max-run-time", 30*time.Minute, "a task's container is killed after this long")
	quiet := fs.Bool("q", false, "print no task logs on stderr, only the plan and failures")
	jobDir := fs.String("job-dir", "", "mount `DIR` (your job's directory, e.g. the one holding job.py) read-only at /job in place of the image's, so an edit runs without a docker build; the image still gives the helper, the libraries and /etc/analysis-tools.yml")
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return err
	}
	pos := fs.Args()
	switch {
	case !*local:
		return fmt.Errorf("%w: af run needs --local (it runs the job on this host; af submit runs it on the cluster)", errUsage)
	case len(pos) != 1:
		return fmt.Errorf("%w: want one IMAGE (e.g. af/os-count), got %q", errUsage, pos)
	case *filterPath == "":
		return fmt.Errorf("%w: no --filter: say which files to read, e.g. --filter filters/Filter.json", errUsage)
	}
	image := pos[0]
	if *jobDir != "" {
		abs, err := filepath.Abs(*jobDir)
		if err != nil {
			return fmt.Errorf("%w: --job-dir: %v", errUsage, err)
		}
		fi, err := os.Stat(abs)
		if err != nil || !fi.IsDir() {
			return fmt.Errorf("%w: --job-dir %s is not a directory: give the directory holding your job's files (the image's /job)", errUsage, *jobDir)
		}
		if fi.Mode().Perm()&0o005 != 0o005 {
			fmt.Fprintf(stderr, "af run --local: warning: the job runs as uid:gid %s, which may not read %s (mode %s): chmod -R o+rX %s\n", jobspec.UserID, abs, fi.Mode().Perm(), *jobDir)
		}
		*jobDir = abs
	}
	src, err := sf.source(ctx, fs)
	if err != nil {
		return err
	}
	filterJSON, err := os.ReadFile(*filterPath)
	if err != nil {
		return fmt.Errorf("read the filter: %w", err)
	}
	tmp, err := os.MkdirTemp("", "af-run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	sel, err := localrun.Select(ctx, src, *filterPath, filterJSON, tmp, nil)
	if err != nil {
		return err
	}
	sampled := src.DataDir == ""
	fs.Visit(func(f *flag.Flag) { sampled = sampled || f.Name == "sample" })
	if sampled {
		all := len(sel.Files)
		sel = sel.Sample(*sample)
		if len(sel.Files) < all {
			fmt.Fprintf(stderr, "af run --local: a sample of %d of the %d files %s selects (--sample)\n", len(sel.Files), all, *filterPath)
		}
	}
	progress := stderr
	if *quiet {
		progress = io.Discard
	}
	sum, err := localrun.Run(ctx, localrun.Options{
		Image: image, Selection: sel, Mappers: *mappers, Parallel: *parallel, MaxLoadBytes: *maxLoad, MaxFilesPerTask: *maxFiles,
		Env: env, MaxRunTime: *maxRunTime, Result: stdout, Progress: progress, JobDir: *jobDir,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	var te *localrun.TaskError
	if errors.As(err, &te) && te.Failed() {
		// The job's own fault, worded as the worker reports it.
		return fmt.Errorf("the job's %w", te)
	}
	if err != nil {
		return err
	}
	var in, out int64
	for _, t := range sum.Tasks[:len(sum.Tasks)-1] {
		in += t.Result.Stats.RecordsIn
		out += t.Result.Stats.RecordsOut
	}
	fmt.Fprintf(stderr, "af run --local: completed in %s: %d files, %d records into %d mapper(s), %d lines of result\n",
		sum.Duration.Round(time.Millisecond), sum.Files, in, sum.Mappers, sum.Tasks[len(sum.Tasks)-1].Result.Stats.RecordsOut)
	return nil
}

func runSample(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sample", "sample FILTER.json [-n 5] [--json] (--data-dir DIR | --bucket BUCKET)", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: af sample FILTER.json [-n 5] [--json] (--data-dir DIR | --bucket BUCKET)

Prints documents of the files FILTER.json selects exactly as a mapper
receives them: decompressed and framed by the worker's own code, bad lines
dropped, each with the arguments of map(key, dims, value, context): key
(the document id), dims (the file's dimension values, sanitised, in the
schema's order, named here) and value (the document's JSON text, shown
indented). The documents come from up to -n files spread evenly over the
selection in key order, the first ones of each. --json prints one JSON
object a line instead: {"file": KEY, "dims": [...], "key": ID, "value": DOC}.

Flags:
`)
		fs.PrintDefaults()
	}
	n := fs.Int("n", 5, "documents to print")
	asJSON := fs.Bool("json", false, "one JSON object a line: file, dims, key, value")
	sf := addSourceFlags(fs)
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return err
	}
	pos := fs.Args()
	if len(pos) != 1 {
		return fmt.Errorf("%w: want one FILTER.json, got %q", errUsage, pos)
	}
	if *n <= 0 {
		return fmt.Errorf("%w: -n %d: give a positive number of documents", errUsage, *n)
	}
	src, err := sf.source(ctx, fs)
	if err != nil {
		return err
	}
	filterJSON, err := os.ReadFile(pos[0])
	if err != nil {
		return fmt.Errorf("read the filter: %w", err)
	}
	tmp, err := os.MkdirTemp("", "af-sample-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	sel, err := localrun.Select(ctx, src, pos[0], filterJSON, tmp, nil)
	if err != nil {
		return err
	}
	printed, err := localrun.PrintSample(ctx, sel, localrun.SampleOptions{
		Docs: *n, JSON: *asJSON, Out: stdout,
		Logf: func(format string, args ...any) { fmt.Fprintf(stderr, "af sample: "+format+"\n", args...) },
	})
	if err != nil {
		return err
	}
	if printed < *n {
		fmt.Fprintf(stderr, "af sample: %d document(s): the %d file(s) sampled hold no more\n", printed, min(*n, len(sel.Files)))
	}
	return nil
}
