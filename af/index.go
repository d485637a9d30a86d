package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/filter"
	"github.com/af-project/af/internal/index"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/taskdef"
)

func init() {
	register(command{
		name:    "index",
		summary: "build, query and describe the index of input files in S3",
		run:     runIndex,
	})
}

const indexUsage = `Usage: af index <build|query|stats> [flags]

  af index build --bucket BUCKET [--prefix P] [--schema FILE] [--db PATH] [--list-skipped]
      list the bucket and add, update and remove index entries to match
  af index query [--db PATH] FILTER.json
      print KEY<TAB>SIZE for every file the filter selects, in key order
  af index stats [--db PATH]
      count objects and bytes, and each dimension's values

The index file is --db, default $AF_INDEX_DB or af-index.db. S3 endpoint and
credentials come from the standard AWS environment and profile settings
(AWS_ENDPOINT_URL, AWS_PROFILE, AWS_ACCESS_KEY_ID, ...).
`

func runIndex(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, indexUsage)
		return fmt.Errorf("%w: name a subcommand: build, query or stats", errUsage)
	}
	switch args[0] {
	case "build":
		return runIndexBuild(ctx, args[1:], stdout, stderr)
	case "query":
		return runIndexQuery(ctx, args[1:], stdout, stderr)
	case "stats":
		return runIndexStats(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, indexUsage)
		return nil
	}
	return fmt.Errorf("%w: unknown subcommand %q: want build, query or stats", errUsage, args[0])
}

func indexDBFlag(fs *flag.FlagSet) *string {
	return fs.String("db", envOr("AF_INDEX_DB", "af-index.db"), "index file (env AF_INDEX_DB)")
}

// parseIndexFlags parses flags that may come before or after the
// positional arguments ("af index query F.json --db x") and returns the
// positionals.
func parseIndexFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return nil, err
	}
	return fs.Args(), nil
}

func runIndexBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("index build", "index build --bucket BUCKET [--prefix P] [--schema FILE] [--db PATH] [--list-skipped]", stderr)
	db := indexDBFlag(fs)
	bucket := fs.String("bucket", "", "S3 bucket holding the input files (required on the first build; later builds default to the indexed one)")
	prefix := fs.String("prefix", "", "key prefix the layout lives under (default \"\" on the first build; later builds default to the indexed one, and another is refused)")
	schemaPath := fs.String("schema", layout.DefaultSchemaPath, "telemetry_schema.json naming the dimensions and where each lives in a key (filters/layouts has telemetry-2's all-directory and Hive's key=value layouts; the built-in telemetry schema when the default file is absent)")
	listSkipped := fs.Bool("list-skipped", false, "print every key outside the layout, not just the first few")
	qf := addQueueFlags(fs)
	pos, err := parseIndexFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, pos)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if q, ok, err := remoteIndex(fs, qf); err != nil {
		return err
	} else if ok {
		return remoteIndexBuild(ctx, q, *qf.url, *bucket, *prefix, *schemaPath, set, *listSkipped, stdout, stderr)
	}

	req, err := indexBuildRequest(*bucket, *prefix, *schemaPath, set)
	if err != nil {
		return err
	}
	idx, err := index.Open(*db, index.Options{})
	if err != nil {
		return err
	}
	defer idx.Close()
	cfg, err := awsconf.Load(ctx, awsconf.Options{})
	if err != nil {
		return err
	}
	return indexBuild(ctx, idx, awsconf.S3(cfg), req, *listSkipped, stdout, stderr)
}

// indexBuildRequest turns the flags into the index's refresh request:
// what was not set is left for the index's rule (index.Refresh) to fill
// from what it holds, locally and on a server alike.
func indexBuildRequest(bucket, prefix, schemaPath string, set map[string]bool) (index.Request, error) {
	req := index.Request{Bucket: bucket}
	if set["prefix"] {
		req.Prefix = &prefix
	}
	if set["schema"] {
		schema, err := layout.LoadSchema(schemaPath)
		if err != nil {
			return req, err
		}
		req.Schema = &schema
		return req, nil
	}
	// A first build without --schema reads the default file when there
	// is one.
	schema, err := layout.LoadSchema(schemaPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		schema = layout.Telemetry()
	case err != nil:
		return req, err
	}
	req.FirstSchema = schema
	return req, nil
}

// indexBuild refreshes idx from the listing and prints the report: the
// command's logic, apart from where the index and the lister come from.
func indexBuild(ctx context.Context, idx *index.DB, lister index.Lister, req index.Request, listSkipped bool, stdout, stderr io.Writer) error {
	prog := newBuildProgressLine(stderr)
	rep, err := idx.Refresh(ctx, lister, req, prog.update)
	prog.done()
	if errors.Is(err, index.ErrInvalidRequest) {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err != nil {
		return err
	}
	writeBuildReport(stdout, idx.Path(), rep.Wire(), listSkipped)
	return nil
}

// maxSkippedShown is how many keys outside the layout a build prints
// without --list-skipped.
const maxSkippedShown = 5

func writeBuildReport(w io.Writer, path string, rep taskdef.IndexBuildReport, listSkipped bool) {
	fmt.Fprintf(w, "indexed s3://%s/%s into %s: %s objects (%s listed) in %s\n", rep.Bucket, rep.Prefix, path,
		thousands(rep.Indexed), thousands(rep.Listed), rep.Duration.Round(time.Millisecond))
	fmt.Fprintf(w, "added %s, updated %s, removed %s, unchanged %s\n", thousands(rep.Added), thousands(rep.Updated), thousands(rep.Removed), thousands(rep.Unchanged))
	if rep.Skipped == 0 {
		return
	}
	fmt.Fprintf(w, "skipped %s keys outside the layout (not indexed):\n", thousands(rep.Skipped))
	shown := rep.SkippedKeys
	if !listSkipped && len(shown) > maxSkippedShown {
		shown = shown[:maxSkippedShown]
	}
	for _, k := range shown {
		fmt.Fprintf(w, "  %s\n", k)
	}
	if len(shown) < rep.Skipped {
		fmt.Fprintf(w, "  ... and %s more (--list-skipped prints them all)\n", thousands(rep.Skipped-len(shown)))
	}
}

func runIndexQuery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("index query", "index query [--db PATH | --queue URL] FILTER.json", stderr)
	db := indexDBFlag(fs)
	qf := addQueueFlags(fs)
	pos, err := parseIndexFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want one filter file, e.g. filters/Filter.json", errUsage)
	}
	if q, ok, err := remoteIndex(fs, qf); err != nil {
		return err
	} else if ok {
		return remoteIndexQuery(ctx, q, *qf.url, pos[0], stdout, stderr)
	}
	idx, err := index.Open(*db, index.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer idx.Close()
	_, _, schema, err := idx.Source()
	if err != nil {
		return err
	}
	f, err := filter.ParseFile(pos[0], schema)
	if err != nil {
		return err
	}
	return indexQuery(ctx, idx, f, stdout, stderr)
}

// indexQuery prints KEY<TAB>SIZE per selected object and a summary on
// stderr.
func indexQuery(ctx context.Context, idx *index.DB, f *filter.Filter, stdout, stderr io.Writer) error {
	bw := bufio.NewWriterSize(stdout, 64<<10)
	var line []byte
	st, err := idx.Query(ctx, f, func(o index.Object) error {
		line = append(append(line[:0], o.Key...), '\t')
		line = strconv.AppendInt(line, o.Size, 10)
		line = append(line, '\n')
		_, err := bw.Write(line)
		return err
	})
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%s files, %s in %s\n", thousands(st.Files), humanBytes(st.Bytes), st.Duration.Round(time.Microsecond))
	return nil
}

func runIndexStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("index stats", "index stats [--db PATH | --queue URL]", stderr)
	db := indexDBFlag(fs)
	qf := addQueueFlags(fs)
	pos, err := parseIndexFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, pos)
	}
	if q, ok, err := remoteIndex(fs, qf); err != nil {
		return err
	} else if ok {
		return remoteIndexStats(ctx, q, *qf.url, stdout)
	}
	idx, err := index.Open(*db, index.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer idx.Close()
	return indexStats(ctx, idx, stdout)
}

// indexStats prints the index's totals and each dimension's values.
func indexStats(ctx context.Context, idx *index.DB, stdout io.Writer) error {
	st, err := idx.Stats(ctx)
	if err != nil {
		return err
	}
	printIndexStats(stdout, idx.Path(), st.Wire())
	return nil
}

// printIndexStats prints an index's totals and each dimension's values;
// where names the index (its file, or the server holding it).
func printIndexStats(stdout io.Writer, where string, st taskdef.IndexStats) {
	fmt.Fprintf(stdout, "index %s: s3://%s/%s", where, st.Bucket, st.Prefix)
	if !st.Built.IsZero() {
		fmt.Fprintf(stdout, ", built %s", st.Built.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(stdout, "\nobjects: %s\nbytes:   %s\n", thousands(st.Objects), humanBytes(st.Bytes))
	if st.Schema.Layout != "" {
		if s, err := layout.ParseLayout(st.Schema.Fields, st.Schema.Layout); err == nil {
			fmt.Fprintf(stdout, "layout:  %s\n", s.Template())
		}
	}
	for _, d := range st.Dims {
		fmt.Fprintf(stdout, "\n%s: %s values\n", d.Field, thousands(len(d.Values)))
		vw, nw := 0, 0
		for _, v := range d.Values {
			vw, nw = max(vw, len(v.Value)), max(nw, len(thousands(v.Objects)))
		}
		for _, v := range d.Values {
			fmt.Fprintf(stdout, "  %-*s  %*s objects  %s\n", vw, v.Value, nw, thousands(v.Objects), humanBytes(v.Bytes))
		}
	}
}

// buildProgressLine rewrites one status line on a terminal while a build lists;
// elsewhere it prints nothing (the final report says it all).
type buildProgressLine struct {
	w    io.Writer
	on   bool
	last time.Duration
	wide int
}

func newBuildProgressLine(w io.Writer) *buildProgressLine {
	f, ok := w.(*os.File)
	return &buildProgressLine{w: w, on: ok && term.IsTerminal(int(f.Fd()))}
}

func (p *buildProgressLine) update(bp index.BuildProgress) {
	if !p.on || bp.Elapsed-p.last < 200*time.Millisecond {
		return
	}
	p.last = bp.Elapsed
	rate := float64(bp.Listed) / bp.Elapsed.Seconds()
	line := fmt.Sprintf("listed %s objects (%s/s), %s outside the layout", thousands(bp.Listed), thousands(int(rate)), thousands(bp.Skipped))
	p.wide = max(p.wide, len(line))
	fmt.Fprintf(p.w, "\r%-*s", p.wide, line)
}

func (p *buildProgressLine) done() {
	if p.on && p.wide > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.wide))
	}
}

// thousands writes n with thousands separators.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
