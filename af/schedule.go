package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/registry"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/units"
)

func init() {
	register(command{
		name:    "schedule",
		summary: "run a job on a cron schedule: create, list, show, pause, resume, update, delete",
		run:     runSchedule,
	})
	register(command{
		name:    "runs",
		summary: "list a schedule's runs: target, state, duration, input, result",
		run:     runRuns,
	})
	register(command{
		name:    "backfill",
		summary: "run a schedule for past dates (--from, --to), behind its own runs",
		run:     runBackfill,
	})
}

const scheduleHelp = `Usage: af schedule <create|list|show|pause|resume|update|delete> ...

  af schedule create NAME --cron "5 16 * * *" FILTER_TEMPLATE.json IMAGE
        [--env K=V]... [--timezone ZONE] [--catchup] [--max-active N] [--expect-within 6h]
        [--no-image-check] [-q]
  af schedule list
  af schedule show NAME
  af schedule pause NAME | resume NAME | delete NAME
  af schedule update NAME [--cron EXPR] [--timezone ZONE] [--template FILE] [--image IMAGE]
        [--env K=V]... [--catchup=true|false] [--max-active N] [--expect-within D]
        [--no-image-check] [-q]

af serve keeps the schedule and makes each run as an ordinary graph owned by
you, which emails you when it ends like any other.

--cron is a standard 5-field expression (minute hour day-of-month month
day-of-week, or @hourly, @daily, @weekly, @monthly), evaluated in --timezone
(an IANA name; default UTC). A run processes the interval that ends when it
falls due, as Airflow's logical date: the daily run at 16:05 on the 12th has
the target 11th. Across a DST change each wall-clock tick fires once.

The filter template is a filter (af submit's) whose strings may hold
  __TARGET_DATE__      the target's date, 20131011 (telemetry's submission_date)
  __TARGET_ISODATE__   2013-10-11 (Hive-style dt= partitions)
  __TARGET_HOUR__      its hour 00-23, for hourly schedules
  __TARGET_DATEHOUR__  2013101116
each with an optional offset in days (hours for the hours): __TARGET_DATE-6__.
The last 7 days up to the target:
  {"min": "__TARGET_DATE-6__", "max": "__TARGET_DATE__"}
A template that renders to an invalid filter is refused at create time.

--catchup makes every run missed while af serve was down or the schedule
paused; without it only the newest missed run is made. --max-active bounds
the schedule's runs not yet ended. --expect-within emails you once per run
that has not completed that long after it fell due.

IMAGE is pinned so every task of a run runs the same image. A registry name
(REGISTRY/NAME:TAG) stays a tag in the schedule: each run resolves it to its
digest at the registry when it starts (with the credentials of af serve's
schedules.docker_config), so a push reaches the next run. Any other name is
an image on this host's Docker engine, pinned here to its image id: the
schedule runs that build until "af schedule update NAME --image IMAGE"
re-pins it (--no-image-check: kept unpinned, as af submit's).

See also: af runs NAME, af backfill NAME, af result NAME@DATE.
`

func runSchedule(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, scheduleHelp)
		if len(args) == 0 {
			return fmt.Errorf("%w: say what to do: create, list, show, pause, resume, update or delete", errUsage)
		}
		return nil
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "create":
		return scheduleCreate(ctx, rest, stdout, stderr)
	case "update":
		return scheduleUpdate(ctx, rest, stdout, stderr)
	case "list", "show", "pause", "resume", "delete":
		return scheduleSimple(ctx, sub, rest, stdout, stderr)
	}
	return fmt.Errorf("%w: unknown subcommand %q: want create, list, show, pause, resume, update or delete", errUsage, sub)
}

// scheduleFlags are the flags create and update share.
type scheduleFlags struct {
	cron, timezone, expect *string
	catchup                *bool
	maxActive              *int
	env                    envFlag
}

func addScheduleFlags(fs *flag.FlagSet) *scheduleFlags {
	f := &scheduleFlags{env: envFlag{}}
	f.cron = fs.String("cron", "", `when runs fall due: 5 cron fields, e.g. "5 16 * * *" (16:05 daily), or @daily, @hourly`)
	f.timezone = fs.String("timezone", "", "IANA time zone of --cron and of the targets, e.g. Europe/Berlin (default UTC)")
	f.catchup = fs.Bool("catchup", false, "make every run missed while af serve was down or the schedule paused (default: only the newest)")
	f.maxActive = fs.Int("max-active", 0, "at most N of the schedule's runs not yet ended (0: no bound)")
	f.expect = fs.String("expect-within", "", "email the owner once if a run has not completed this long after it fell due, e.g. 6h")
	fs.Var(f.env, "env", "K=V environment variable for the job's containers (repeatable)")
	return f
}

func scheduleCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("schedule create", `schedule create NAME --cron "5 16 * * *" FILTER_TEMPLATE.json IMAGE [flags]`, stderr)
	sf := addScheduleFlags(fs)
	owner := fs.String("owner", envOr("AF_OWNER", ""), "the schedule's owner (default: the identity of your token; only an admin may name another)")
	asJSON := fs.Bool("json", false, "print the schedule as JSON")
	imf := addImageFlags(fs)
	qf := addQueueFlags(fs)
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return err
	}
	if fs.NArg() != 3 {
		return fmt.Errorf("%w: want NAME FILTER_TEMPLATE.json IMAGE, got %d argument(s)", errUsage, fs.NArg())
	}
	if *sf.cron == "" {
		return fmt.Errorf(`%w: --cron is required, e.g. --cron "5 16 * * *" for 16:05 every day`, errUsage)
	}
	name, tmplPath, image := fs.Arg(0), fs.Arg(1), fs.Arg(2)
	tmpl, err := readTemplate(tmplPath)
	if err != nil {
		return err
	}
	q, err := qf.client()
	if err != nil {
		return err
	}
	if image, err = imf.pin(ctx, name, image, stderr); err != nil {
		return err
	}
	st, err := q.CreateSchedule(ctx, taskdef.ScheduleSpec{
		Name: name, Owner: *owner, Cron: *sf.cron, Timezone: *sf.timezone, Template: tmpl, Image: image,
		Env: sf.env, Catchup: *sf.catchup, MaxActive: *sf.maxActive, ExpectWithin: *sf.expect,
	})
	if err != nil {
		return explainQueueErr(err, *qf.url)
	}
	if *asJSON {
		return printJSON(stdout, st)
	}
	fmt.Fprintf(stdout, "schedule %s created: %s", st.Name, describeNext(st))
	fmt.Fprintln(stdout)
	return nil
}

func scheduleUpdate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("schedule update", "schedule update NAME [flags]", stderr)
	sf := addScheduleFlags(fs)
	tmplPath := fs.String("template", "", "a new filter template file")
	image := fs.String("image", "", "a new job image (a local one is pinned again to its image id)")
	asJSON := fs.Bool("json", false, "print the schedule as JSON")
	imf := addImageFlags(fs)
	qf := addQueueFlags(fs)
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want exactly one schedule name", errUsage)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var u taskdef.ScheduleUpdate
	if set["cron"] {
		u.Cron = sf.cron
	}
	if set["timezone"] {
		u.Timezone = sf.timezone
	}
	if set["catchup"] {
		u.Catchup = sf.catchup
	}
	if set["max-active"] {
		u.MaxActive = sf.maxActive
	}
	if set["expect-within"] {
		u.ExpectWithin = sf.expect
	}
	if set["env"] {
		u.Env = sf.env
	}
	if set["image"] {
		u.Image = image
	}
	if set["template"] {
		tmpl, err := readTemplate(*tmplPath)
		if err != nil {
			return err
		}
		u.Template = tmpl
	}
	delete(set, "json")
	delete(set, "q")
	delete(set, "no-image-check")
	if len(set) == 0 {
		return fmt.Errorf("%w: nothing to change: give --cron, --timezone, --template, --image, --env, --catchup, --max-active or --expect-within", errUsage)
	}
	q, err := qf.client()
	if err != nil {
		return err
	}
	if u.Image != nil {
		pinned, err := imf.pin(ctx, fs.Arg(0), *u.Image, stderr)
		if err != nil {
			return err
		}
		u.Image = &pinned
	}
	st, err := q.UpdateSchedule(ctx, fs.Arg(0), u)
	if err != nil {
		return explainQueueErr(err, *qf.url)
	}
	if *asJSON {
		return printJSON(stdout, st)
	}
	fmt.Fprintf(stdout, "schedule %s updated: %s\n", st.Name, describeNext(st))
	return nil
}

// imageFlags are how create and update pin the schedule's image.
type imageFlags struct {
	noCheck, quiet *bool
}

func addImageFlags(fs *flag.FlagSet) *imageFlags {
	return &imageFlags{
		noCheck: fs.Bool("no-image-check", false, "do not ask this host's Docker engine for IMAGE: an IMAGE without a registry host then stays unpinned, and the workers run whatever image of that name they hold when each task starts"),
		quiet:   fs.Bool("q", false, "quiet: no note on stderr of how the image is pinned"),
	}
}

// pin is the image schedule name stores: a registry name as given (af
// serve resolves the tag when each run starts, so a push reaches the next
// run), anything else as submit's PinImage pins it for af submit (a local
// engine image to its image id). It says which on stderr unless -q.
func (f *imageFlags) pin(ctx context.Context, name, image string, stderr io.Writer) (string, error) {
	note := func(format string, a ...any) {
		if !*f.quiet {
			fmt.Fprintf(stderr, format+"\n", a...)
		}
	}
	ref, perr := registry.Parse(image)
	if perr == nil && ref.ExplicitDomain && ref.Digest == "" {
		note("image %s stays a tag: each run of %s resolves it to its digest at %s when the run starts (every task of the run runs that digest), so a push to the tag reaches the next run", image, name, ref.Domain)
		return image, nil
	}
	s := &submit.Submitter{}
	if !*f.noCheck && perr == nil && ref.Digest == "" {
		d, err := runner.NewDockerClient()
		if err != nil {
			return "", infra(fmt.Errorf("connect to Docker to pin the image: %w (pass --no-image-check when this host has no Docker)", err))
		}
		defer d.Close()
		s.Docker = d
	}
	pin, err := s.PinImage(ctx, image)
	if err != nil {
		return "", err
	}
	switch pin.Source {
	case "image-id", "repo-digest":
		note("image %s is pinned to %s: schedule %s runs that build until `af schedule update %s --image %s` re-pins it (every worker must hold it; a registry name, REGISTRY/NAME:TAG, is resolved again by each run instead)", image, pin.Ref, name, name, image)
	default:
		note("%s", pin.Note)
	}
	return pin.Ref, nil
}

func scheduleSimple(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	synopsis := "schedule " + sub + " NAME"
	if sub == "list" {
		synopsis = "schedule list [--json]"
	}
	fs := newFlags("schedule "+sub, synopsis, stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	qf := addQueueFlags(fs)
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return err
	}
	want := 1
	if sub == "list" {
		want = 0
	}
	if fs.NArg() != want {
		if want == 0 {
			return fmt.Errorf("%w: schedule list takes no arguments", errUsage)
		}
		return fmt.Errorf("%w: want exactly one schedule name", errUsage)
	}
	q, err := qf.client()
	if err != nil {
		return err
	}
	if sub == "list" {
		list, err := q.Schedules(ctx)
		if err != nil {
			return explainQueueErr(err, *qf.url)
		}
		if *asJSON {
			return printJSON(stdout, taskdef.ScheduleList{Schedules: list})
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSTATE\tCRON\tZONE\tOWNER\tIMAGE\tNEXT RUN")
		for _, s := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.State, s.Cron, zoneOf(s), s.Owner, s.Image, nextOf(s))
		}
		return tw.Flush()
	}
	name := fs.Arg(0)
	var st taskdef.ScheduleStatus
	switch sub {
	case "show":
		st, err = q.Schedule(ctx, name)
	case "pause":
		st, err = q.PauseSchedule(ctx, name)
	case "resume":
		st, err = q.ResumeSchedule(ctx, name)
	case "delete":
		st, err = q.DeleteSchedule(ctx, name)
	}
	if err != nil {
		return explainQueueErr(err, *qf.url)
	}
	if *asJSON {
		return printJSON(stdout, st)
	}
	switch sub {
	case "show":
		printSchedule(stdout, st)
	case "delete":
		fmt.Fprintf(stdout, "schedule %s deleted (its runs' graphs stay until they expire)\n", st.Name)
	default:
		fmt.Fprintf(stdout, "schedule %s is %s: %s\n", st.Name, st.State, describeNext(st))
	}
	return nil
}

func printSchedule(w io.Writer, s taskdef.ScheduleStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name:\t%s\n", s.Name)
	fmt.Fprintf(tw, "owner:\t%s\n", s.Owner)
	fmt.Fprintf(tw, "state:\t%s\n", s.State)
	fmt.Fprintf(tw, "cron:\t%s (%s)\n", s.Cron, zoneOf(s))
	fmt.Fprintf(tw, "image:\t%s\n", s.Image)
	fmt.Fprintf(tw, "catchup:\t%v\n", s.Catchup)
	if s.MaxActive > 0 {
		fmt.Fprintf(tw, "max active:\t%d\n", s.MaxActive)
	}
	if s.ExpectWithin != "" {
		fmt.Fprintf(tw, "expect within:\t%s\n", s.ExpectWithin)
	}
	for k, v := range s.Env {
		fmt.Fprintf(tw, "env:\t%s=%s\n", k, v)
	}
	fmt.Fprintf(tw, "next run:\t%s\n", nextOf(s))
	fmt.Fprintf(tw, "created:\t%s\n", s.Created.Format(time.RFC3339))
	tw.Flush()
	fmt.Fprintf(w, "filter template:\n%s\n", indentJSON(s.Template))
}

func zoneOf(s taskdef.ScheduleStatus) string {
	if s.Timezone == "" {
		return "UTC"
	}
	return s.Timezone
}

func nextOf(s taskdef.ScheduleStatus) string {
	if s.NextDue.IsZero() {
		return "-"
	}
	loc, err := time.LoadLocation(zoneOf(s))
	if err != nil {
		loc = time.UTC
	}
	return fmt.Sprintf("%s (target %s)", s.NextDue.In(loc).Format("2006-01-02 15:04 MST"), s.NextTarget.In(loc).Format("2006-01-02 15:04"))
}

func describeNext(s taskdef.ScheduleStatus) string {
	if s.NextDue.IsZero() {
		return "no run falls due while it is " + s.State
	}
	return "next run " + nextOf(s)
}

func indentJSON(raw json.RawMessage) string {
	var b strings.Builder
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
	return strings.TrimRight(b.String(), "\n")
}

// readTemplate reads a filter template file; the server renders and
// checks it.
func readTemplate(path string) (json.RawMessage, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: read the filter template: %v", errUsage, err)
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("%w: %s is not JSON: give a filter file whose strings may hold __TARGET_DATE__", errUsage, path)
	}
	return json.RawMessage(data), nil
}

// printJSON is every command's --json output: v indented, one value.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runRuns(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("runs", "runs NAME [--json]", stderr)
	asJSON := fs.Bool("json", false, "print the schedule and its runs as JSON")
	qf := addQueueFlags(fs)
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want exactly one schedule name", errUsage)
	}
	q, err := qf.client()
	if err != nil {
		return err
	}
	rs, err := q.ScheduleRuns(ctx, fs.Arg(0))
	if err != nil {
		return explainQueueErr(err, *qf.url)
	}
	if *asJSON {
		return printJSON(stdout, rs)
	}
	if len(rs.Runs) == 0 {
		fmt.Fprintf(stdout, "schedule %s has no runs yet: %s\n", rs.Schedule.Name, describeNext(rs.Schedule))
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tKIND\tSTATE\tSTARTED\tDURATION\tINPUT\tGRAPH\tRESULT")
	for _, r := range rs.Runs {
		state, started, dur, input, result := r.RunState, "-", "-", "-", "-"
		if r.GraphID != "" {
			state = string(r.GraphState)
			started = r.Created.UTC().Format("2006-01-02 15:04")
			if r.Resolved != nil {
				dur = r.Resolved.Sub(r.Created).Round(time.Second).String()
			}
			input = fmt.Sprintf("%d files, %s", r.Files, units.Bytes(r.Bytes))
			if r.GraphState == taskdef.GraphCompleted {
				result = "af result " + rs.Schedule.Name + "@" + r.Label
			}
		}
		if r.Message != "" && r.GraphID == "" {
			state += ": " + r.Message
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Label, r.Kind, state, started, dur, input, orDash(r.GraphID), result)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runBackfill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("backfill", "backfill NAME --from DATE --to DATE [--parallel N]", stderr)
	from := fs.String("from", "", "first target date, 20131011 or 2013-10-11 (2013101116 for an hourly schedule)")
	to := fs.String("to", "", "last target date, inclusive")
	parallel := fs.Int("parallel", 0, "at most N of the backfill's runs at once (0: no bound); they claim behind the schedule's own runs either way")
	asJSON := fs.Bool("json", false, "print the runs as JSON")
	qf := addQueueFlags(fs)
	if err := parseErr(fs.Parse(interleave(fs, args))); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want exactly one schedule name", errUsage)
	}
	if *from == "" || *to == "" {
		return fmt.Errorf("%w: give both --from and --to (dates such as 20131011)", errUsage)
	}
	q, err := qf.client()
	if err != nil {
		return err
	}
	resp, err := q.Backfill(ctx, fs.Arg(0), taskdef.BackfillRequest{From: *from, To: *to, Parallel: *parallel})
	if err != nil {
		return explainQueueErr(err, *qf.url)
	}
	if *asJSON {
		return printJSON(stdout, resp)
	}
	if len(resp.Runs) == 0 {
		fmt.Fprintf(stdout, "schedule %s has runs for every target from %s to %s already (af runs %s)\n", fs.Arg(0), *from, *to, fs.Arg(0))
		return nil
	}
	labels := make([]string, len(resp.Runs))
	for i, r := range resp.Runs {
		labels[i] = r.Label
	}
	fmt.Fprintf(stdout, "backfill of %s: %d run(s) queued: %s (follow with af runs %s)\n", fs.Arg(0), len(resp.Runs), strings.Join(labels, ", "), fs.Arg(0))
	return nil
}

// resolveResultArg maps af result's argument to a graph id: NAME@DATE is
// that target's run of schedule NAME (its scheduled run, else a
// backfill's), NAME alone the newest completed run; anything else is a
// graph id. With wait, a run that is not launched yet is waited for.
func resolveResultArg(ctx context.Context, q *queueclient.Client, arg string, wait bool, stderr io.Writer) (string, error) {
	name, label, hasAt := strings.Cut(arg, "@")
	if !hasAt {
		if _, err := q.Graph(ctx, arg); err == nil || !errors.Is(err, queueclient.ErrNotFound) {
			return arg, nil
		}
		rs, err := q.ScheduleRuns(ctx, arg)
		if err != nil {
			if errors.Is(err, queueclient.ErrNotFound) {
				return "", fmt.Errorf("%s is neither a graph id nor a schedule name (af graphs and af schedule list show them)", arg)
			}
			return "", err
		}
		for i := len(rs.Runs) - 1; i >= 0; i-- {
			if rs.Runs[i].GraphState == taskdef.GraphCompleted {
				fmt.Fprintf(stderr, "%s@%s (graph %s)\n", name, rs.Runs[i].Label, rs.Runs[i].GraphID)
				return rs.Runs[i].GraphID, nil
			}
		}
		return "", fmt.Errorf("schedule %s has no completed run yet (af runs %s)", arg, arg)
	}
	for {
		rs, err := q.ScheduleRuns(ctx, name)
		if err != nil {
			return "", err
		}
		var found *taskdef.ScheduleRun
		var labels []string
		for i := range rs.Runs {
			r := &rs.Runs[i]
			labels = append(labels, r.Label)
			if r.Label == strings.ReplaceAll(label, "-", "") && (found == nil || r.Kind == "scheduled") {
				found = r
			}
		}
		switch {
		case found != nil && found.GraphID != "":
			return found.GraphID, nil
		case found != nil && found.RunState == "refused":
			return "", fmt.Errorf("the run of %s for %s was not made: %s", name, label, found.Message)
		case found == nil && !wait:
			known := "it has no runs yet"
			if len(labels) > 0 {
				known = "its runs are " + strings.Join(labels, ", ")
			}
			return "", fmt.Errorf("schedule %s has no run for %s (%s); make one with `af backfill %s --from %s --to %s`", name, label, known, name, label, label)
		case found != nil && !wait:
			return "", fmt.Errorf("the run of %s for %s is %s; wait for it with `af result --wait %s`", name, label, found.RunState, arg)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}
