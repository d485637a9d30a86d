package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/af-project/af/internal/elide"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
)

func init() {
	register(command{
		name:    "status",
		summary: "show a graph's tasks, states, runs and durations",
		run:     runStatus,
	})
}

// defaultQueueURL is where af looks for the queue without --queue or
// AF_QUEUE_URL: `af serve`'s default address.
const defaultQueueURL = "http://127.0.0.1:8080"

// queueFlags are the flags of every command that talks to the queue:
// where it is, the token, the CA its https certificate is signed by, and
// the consent to send the token over plain http to another host.
type queueFlags struct {
	url, token, ca *string
	insecure       *bool
}

func addQueueFlags(fs *flag.FlagSet) queueFlags {
	return queueFlags{
		url: fs.String("queue", envOr("AF_QUEUE_URL", defaultQueueURL), "queue URL (env AF_QUEUE_URL); https:// when af serve has --tls-cert"),
		// The default stays empty so --help never prints AF_TOKEN.
		token:    fs.String("token", "", "bearer token (default: env AF_TOKEN)"),
		ca:       fs.String("ca", envOr("AF_CA_FILE", ""), "PEM `FILE` of the CA that signed af serve's https certificate, trusted besides the system's CAs (env AF_CA_FILE)"),
		insecure: fs.Bool("insecure-http", envBool("AF_INSECURE_HTTP"), "send the token over plain http to a host that is not loopback (env AF_INSECURE_HTTP=1); anyone on the network path can read it, so use https instead where you can"),
	}
}

// client is the queue client the flags describe. A bad --ca file is an
// error here; a token bound for plain http to another host is refused
// here, before anything is sent.
func (f queueFlags) client() (*queueclient.Client, error) {
	token := *f.token
	if token == "" {
		token = os.Getenv("AF_TOKEN")
	}
	opts := []queueclient.Option{queueclient.WithUserAgent("af-cli")}
	if *f.ca != "" {
		pool, err := queueclient.LoadCAFile(*f.ca)
		if err != nil {
			return nil, fmt.Errorf("--ca (AF_CA_FILE): %w", err)
		}
		opts = append(opts, queueclient.WithRootCAs(pool))
	}
	if *f.insecure {
		opts = append(opts, queueclient.WithInsecureHTTP())
	}
	c := queueclient.New(*f.url, token, opts...)
	if err := c.CheckTransport(); err != nil {
		return nil, explainQueueErr(err, *f.url)
	}
	return c, nil
}

// envBool reads a yes/no environment variable: 1, true, yes (any case)
// are yes.
func envBool(key string) bool {
	switch strings.ToLower(os.Getenv(key)) {
	case "1", "true", "yes":
		return true
	}
	return false
}

// explainQueueErr turns the client's errors into what the user should do.
func explainQueueErr(err error, queueURL string) error {
	switch {
	case errors.Is(err, queueclient.ErrInsecureHTTP):
		return fmt.Errorf("%w; to send it anyway over a network you trust, pass --insecure-http or set AF_INSECURE_HTTP=1", err)
	case errors.Is(err, queueclient.ErrCertificate):
		return fmt.Errorf("%w — if af serve's certificate comes from a private CA, pass --ca FILE or set AF_CA_FILE to that CA's PEM certificate", err)
	case errors.Is(err, queueclient.ErrUnreachable):
		return fmt.Errorf("%w — is `af serve` running? set --queue or AF_QUEUE_URL", err)
	case errors.Is(err, queueclient.ErrUnauthorized), errors.Is(err, queueclient.ErrForbidden):
		return fmt.Errorf("%w (queue %s; set --token or AF_TOKEN to your own identity's token: an admin makes one with `af users add NAME --role ROLE`)", err, queueURL)
	}
	return explainFieldErr(err)
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", "status GRAPH [--json] [--queue URL] [--token T]", stderr)
	asJSON := fs.Bool("json", false, "print the graph status as JSON")
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
	st, err := q.Graph(ctx, fs.Arg(0))
	if err != nil {
		return explainQueueErr(err, *qf.url)
	}
	if *asJSON {
		return printJSON(stdout, st)
	}
	return printStatus(stdout, st, time.Now())
}

// interleave lets flags follow the positional argument (`af status ID
// --json`), which the flag package alone stops at.
func interleave(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil {
			if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
				continue
			}
			if i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		}
	}
	return append(append(flags, "--"), pos...)
}

// printStatus writes the table of `af status`: one line per task, mappers
// first, then a summary line.
func printStatus(w io.Writer, st taskdef.GraphStatus, now time.Time) error {
	tasks := append([]taskdef.TaskStatus(nil), st.Tasks...)
	sort.SliceStable(tasks, func(i, j int) bool {
		if tasks[i].Kind != tasks[j].Kind {
			return tasks[i].Kind == taskdef.KindMapper
		}
		return tasks[i].Name < tasks[j].Name
	})
	fmt.Fprintf(w, "graph %s  %q  owner %s  %s  created %s", st.GraphID, st.Name, st.Owner, st.State, st.Created.Local().Format(time.DateTime))
	// The audit trail's graph-level names (--json has every run's).
	if st.CreatedBy != "" && st.CreatedBy != st.Owner {
		fmt.Fprintf(w, " by %s", st.CreatedBy)
	}
	if st.CanceledBy != "" {
		fmt.Fprintf(w, "  canceled by %s", st.CanceledBy)
	}
	fmt.Fprint(w, "\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tID\tKIND\tSTATE\tRUNS\tWORKER\tDURATION\tFILES\tBYTES\tREASON")
	counts := map[taskdef.TaskState]int{}
	for _, t := range tasks {
		counts[t.State]++
		worker, dur, reason := "-", "-", ""
		var stats taskdef.Stats
		if n := len(t.Runs); n > 0 {
			r := t.Runs[n-1]
			stats = r.Stats
			if r.WorkerID != "" {
				worker = r.WorkerGroup + "/" + r.WorkerID
			}
			if r.Started != nil {
				end := now
				if r.Resolved != nil {
					end = *r.Resolved
				}
				dur = end.Sub(*r.Started).Round(time.Second).String()
			}
			reason = r.ReasonResolved
			if r.Message != "" && t.State != taskdef.StateCompleted {
				// The message's first line names the error and the
				// user's file and line; a long one keeps its end.
				first, _, _ := strings.Cut(strings.TrimSpace(r.Message), "\n")
				reason += ": " + elide.Line(first, 100)
			}
		}
		fileCol := strconv.FormatInt(stats.Files, 10)
		byteCol := humanBytes(stats.Bytes)
		if t.Kind == taskdef.KindMapper {
			fileCol += "/" + strconv.Itoa(t.InputFiles)
			byteCol += "/" + humanBytes(t.InputBytes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n",
			t.Name, t.TaskID, t.Kind, t.State, len(t.Runs), worker, dur, fileCol, byteCol, reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var parts []string
	for _, s := range []taskdef.TaskState{taskdef.StateCompleted, taskdef.StateRunning, taskdef.StatePending,
		taskdef.StateUnscheduled, taskdef.StateFailed, taskdef.StateException} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	elapsed := now.Sub(st.Created)
	if st.Resolved != nil {
		elapsed = st.Resolved.Sub(st.Created)
	}
	tot := st.Totals
	if tot == nil {
		t := taskdef.TotalsOf(st.Tasks)
		tot = &t
	}
	if _, err := fmt.Fprintf(w, "\n%d tasks: %s; %s %s\n%s\n",
		len(tasks), strings.Join(parts, ", "), st.State, elapsed.Round(time.Second), totalsLines(*tot)); err != nil {
		return err
	}
	if st.State == taskdef.GraphCanceled {
		// Once for the graph; each stopped task's row says only
		// "canceled".
		canceled := 0
		for _, t := range tasks {
			if n := len(t.Runs); n > 0 && t.State == taskdef.StateException && t.Runs[n-1].ReasonResolved == taskdef.ReasonCanceled {
				canceled++
			}
		}
		if _, err := fmt.Fprintf(w, "graph canceled: %d task(s) stopped; `af rerun %s --failed` runs them again\n", canceled, st.GraphID); err != nil {
			return err
		}
	}
	return nil
}

// totalsLines says what the graph read (its mappers' input) and,
// apart, what its reducer merged and wrote.
func totalsLines(t taskdef.GraphTotals) string {
	in := t.Input
	s := fmt.Sprintf("input: %d/%d files, %s/%s read, %d records, %d pairs emitted by %d mapper(s)",
		in.Files, in.FilesAll, humanBytes(in.Bytes), humanBytes(in.BytesAll), in.Records, in.Pairs, in.Tasks)
	if in.BadFiles > 0 || in.BadLines > 0 {
		s += fmt.Sprintf(" (skipped %d bad file(s), %d bad line(s))", in.BadFiles, in.BadLines)
	}
	if r := t.Reducer; r.Tasks > 0 {
		s += fmt.Sprintf("\nreducer: %d mapper output(s), %s, %d pairs in, %d lines out", r.Inputs, humanBytes(r.Bytes), r.Pairs, r.Lines)
	}
	return s
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// humanBytes prints a size in B, KiB, MiB, ...
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + "B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
