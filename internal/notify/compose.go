package notify

import (
	"bytes"
	"fmt"
	"html/template"
	"net/url"
	"strings"
	"time"

	"github.com/af-project/af/internal/elide"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/units"
)

// FailedTask is a task that did not complete, as the owner sees it.
type FailedTask struct {
	TaskID string
	Name   string
	// State is failed (the job's code) or exception (infrastructure).
	State taskdef.TaskState
	// Reason is the last run's reasonResolved.
	Reason string
	// Message is the last run's message, for people.
	Message string
	LogURL  string
}

// GraphSummaryForMail is what the owner's email says about a graph.
type GraphSummaryForMail struct {
	GraphID    string
	Name       string
	Owner      string
	State      taskdef.GraphState
	MonitorURL string
	// ResultURL is the job result (the reducer's result artifact); empty
	// when there is none.
	ResultURL string
	Failed    []FailedTask
	// FailedTotal is how many tasks did not complete when Failed was cut
	// short; zero means len(Failed). Canceled tasks are not among them.
	FailedTotal int
	// Canceled counts the tasks a cancel of the graph ended
	// (exception/canceled): the email says so once rather than listing
	// each.
	Canceled int
	Duration time.Duration
	Files    int64
	Bytes    int64
}

// MaxFailedListed bounds the failed tasks an email lists; the monitor page
// has the rest.
const MaxFailedListed = 50

// maxNameRunes bounds the job name in the subject and body.
const maxNameRunes = 100

// maxMessageBytes bounds each failed task's message in the email.
const maxMessageBytes = 1200

// FromStatus summarises a resolved graph for the email. baseURL is where
// `af serve` is reached by people (its monitor_url); links are built under
// it. Files and bytes count what the mappers' last runs read.
func FromStatus(gs taskdef.GraphStatus, baseURL string) GraphSummaryForMail {
	base := strings.TrimSuffix(baseURL, "/")
	s := GraphSummaryForMail{
		GraphID:    gs.GraphID,
		Name:       gs.Name,
		Owner:      gs.Owner,
		State:      gs.State,
		MonitorURL: base + "/graphs/" + url.PathEscape(gs.GraphID),
	}
	if gs.ResultTaskID != "" {
		s.ResultURL = ArtifactURL(base, gs.ResultTaskID, taskdef.ResultArtifact)
	}
	if gs.Resolved != nil {
		s.Duration = gs.Resolved.Sub(gs.Created)
	}
	for _, t := range gs.Tasks {
		var last *taskdef.Run
		if len(t.Runs) > 0 {
			last = &t.Runs[len(t.Runs)-1]
		}
		if t.Kind == taskdef.KindMapper && last != nil {
			s.Files += last.Stats.Files
			s.Bytes += last.Stats.Bytes
		}
		if t.State != taskdef.StateFailed && t.State != taskdef.StateException {
			continue
		}
		if t.State == taskdef.StateException && last != nil && last.ReasonResolved == taskdef.ReasonCanceled {
			s.Canceled++
			continue
		}
		s.FailedTotal++
		if len(s.Failed) >= MaxFailedListed {
			continue
		}
		ft := FailedTask{TaskID: t.TaskID, Name: t.Name, State: t.State, LogURL: ArtifactURL(base, t.TaskID, taskdef.LiveLogArtifact)}
		if last != nil {
			ft.Reason, ft.Message = last.ReasonResolved, last.Message
		}
		s.Failed = append(s.Failed, ft)
	}
	return s
}

// AddQuery appends query (e.g. "cap=...", the graph's read capability) to
// every link of the email: the monitor page, the result and the logs.
func (s *GraphSummaryForMail) AddQuery(query string) {
	if query == "" {
		return
	}
	add := func(u string) string {
		if u == "" {
			return u
		}
		if strings.Contains(u, "?") {
			return u + "&" + query
		}
		return u + "?" + query
	}
	s.MonitorURL = add(s.MonitorURL)
	s.ResultURL = add(s.ResultURL)
	for i := range s.Failed {
		s.Failed[i].LogURL = add(s.Failed[i].LogURL)
	}
}

// ArtifactURL is the public link of a task's latest artifact.
func ArtifactURL(base, taskID, name string) string {
	return strings.TrimSuffix(base, "/") + "/api/v1/tasks/" + url.PathEscape(taskID) + "/artifacts/" + name
}

// Compose writes the owner's email for a graph summary: subject
// "[af] <job name>: completed" (or failed, or canceled), a plain-text body
// and an HTML alternative with the same content. A canceled graph says so
// once, with how many tasks the cancel stopped, and lists only the tasks
// that failed for another reason.
func Compose(s GraphSummaryForMail) Message {
	outcome := "completed"
	if s.State != taskdef.GraphCompleted {
		outcome = string(s.State)
		if outcome == "" {
			outcome = "failed"
		}
	}
	// The name is cut shorter than a whole subject may be so the outcome
	// always shows.
	name := cleanLimit(s.Name, maxNameRunes)
	if name == "" {
		name = s.GraphID
	}
	failedTotal := s.FailedTotal
	if failedTotal < len(s.Failed) {
		failedTotal = len(s.Failed)
	}

	headline := outcome
	if s.State == taskdef.GraphCanceled {
		headline = "was canceled"
	}
	var t strings.Builder
	fmt.Fprintf(&t, "Your af job %q %s.\n\n", name, headline)
	fmt.Fprintf(&t, "Graph:    %s\n", s.GraphID)
	if s.Duration > 0 {
		fmt.Fprintf(&t, "Duration: %s\n", s.Duration.Round(time.Second))
	}
	if s.Files > 0 || s.Bytes > 0 {
		fmt.Fprintf(&t, "Input:    %d files, %s\n", s.Files, units.Bytes(s.Bytes))
	}
	fmt.Fprintf(&t, "\nMonitor:  %s\n", s.MonitorURL)
	if s.ResultURL != "" && s.State == taskdef.GraphCompleted {
		fmt.Fprintf(&t, "Result:   %s\n", s.ResultURL)
	}
	if s.Canceled > 0 {
		fmt.Fprintf(&t, "\n%s\n", canceledLine(s))
	}
	if failedTotal > 0 {
		fmt.Fprintf(&t, "\n%d task(s) did not complete:\n", failedTotal)
		for _, f := range s.Failed {
			fmt.Fprintf(&t, "\n- %s (%s): %s", oneLine(f.Name), f.TaskID, f.State)
			if f.Reason != "" && f.Reason != string(f.State) {
				fmt.Fprintf(&t, ", %s", f.Reason)
			}
			t.WriteString("\n")
			if msg := truncate(f.Message); msg != "" {
				for _, line := range strings.Split(msg, "\n") {
					fmt.Fprintf(&t, "    %s\n", line)
				}
			}
			fmt.Fprintf(&t, "  log: %s\n", f.LogURL)
		}
		if more := failedTotal - len(s.Failed); more > 0 {
			fmt.Fprintf(&t, "\n...and %d more; see the monitor page.\n", more)
		}
		t.WriteString("\nA task that failed ran your job's code and it exited with an error; a task in exception\nwas stopped by the infrastructure (worker lost, deadline, cancellation).\n")
	}

	var h bytes.Buffer
	_ = htmlBody.Execute(&h, struct {
		GraphSummaryForMail
		DisplayName string
		Outcome     string
		Headline    string
		CanceledMsg string
		FailedTotal int
		More        int
		Input       string
		Duration    string
	}{
		GraphSummaryForMail: s,
		DisplayName:         name,
		Outcome:             outcome,
		Headline:            headline,
		CanceledMsg:         canceledLine(s),
		FailedTotal:         failedTotal,
		More:                failedTotal - len(s.Failed),
		Input:               inputLine(s),
		Duration:            durationLine(s),
	})

	return Message{
		To:      s.Owner,
		Subject: fmt.Sprintf("[af] %s: %s", name, outcome),
		Text:    t.String(),
		HTML:    h.String(),
	}
}

// canceledLine is the one sentence about a cancel, or "".
func canceledLine(s GraphSummaryForMail) string {
	if s.Canceled == 0 {
		return ""
	}
	return fmt.Sprintf("The graph was canceled: %d task(s) that had not completed were stopped (exception/canceled). To run them, `af rerun %s --failed`, or submit the job again.", s.Canceled, s.GraphID)
}

func inputLine(s GraphSummaryForMail) string {
	if s.Files == 0 && s.Bytes == 0 {
		return ""
	}
	return fmt.Sprintf("%d files, %s", s.Files, units.Bytes(s.Bytes))
}

func durationLine(s GraphSummaryForMail) string {
	if s.Duration <= 0 {
		return ""
	}
	return s.Duration.Round(time.Second).String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func truncate(s string) string {
	s = strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n"))
	// A long one keeps its head and its tail: a traceback's last frames
	// (the user's file and line) are at the end.
	return elide.Middle(s, maxMessageBytes)
}

// safeURL lets only http(s) links become hrefs; anything else renders as
// "#" (html/template does the same, this makes the rule explicit).
func safeURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return "#"
	}
	return s
}

var htmlBody = template.Must(template.New("mail").Funcs(template.FuncMap{
	"truncate": truncate,
	"safeURL":  safeURL,
}).Parse(`<!doctype html>
<html><body style="font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; font-size: 14px; color: #1f2328;">
<p>Your af job <b>{{.DisplayName}}</b> <b style="color: {{if eq .Outcome "completed"}}#1a7f37{{else if eq .Outcome "canceled"}}#59636e{{else}}#cf222e{{end}}">{{.Headline}}</b>.</p>
<table style="border-collapse: collapse;">
<tr><td style="padding-right: 12px; color: #59636e;">Graph</td><td><code>{{.GraphID}}</code></td></tr>
{{- if .Duration}}<tr><td style="padding-right: 12px; color: #59636e;">Duration</td><td>{{.Duration}}</td></tr>{{end}}
{{- if .Input}}<tr><td style="padding-right: 12px; color: #59636e;">Input</td><td>{{.Input}}</td></tr>{{end}}
</table>
<p><a href="{{safeURL .MonitorURL}}">Open the monitor page</a>
{{- if and .ResultURL (eq .Outcome "completed")}} &middot; <a href="{{safeURL .ResultURL}}">Download the result</a>{{end}}</p>
{{- if .CanceledMsg}}
<p>{{.CanceledMsg}}</p>
{{- end}}
{{- if .FailedTotal}}
<p>{{.FailedTotal}} task(s) did not complete:</p>
<ul>
{{- range .Failed}}
<li><b>{{.Name}}</b> (<code>{{.TaskID}}</code>): {{.State}}{{if and .Reason (ne .Reason (printf "%s" .State))}}, {{.Reason}}{{end}} &middot; <a href="{{safeURL .LogURL}}">log</a>
{{- with truncate .Message}}<pre style="margin: 4px 0; white-space: pre-wrap;">{{.}}</pre>{{end}}</li>
{{- end}}
</ul>
{{- if gt .More 0}}<p>...and {{.More}} more; see the monitor page.</p>{{end}}
{{- end}}
</body></html>
`))

// ComposeLate is the owner's alert that a scheduled run has not
// completed within its schedule's expect-within: "[af] <run name> is
// late", with how far it got and the monitor link. It is plain text only:
// an alert, not a report.
func ComposeLate(s GraphSummaryForMail, dueBy time.Time) Message {
	name := cleanLimit(s.Name, maxNameRunes)
	if name == "" {
		name = s.GraphID
	}
	var t strings.Builder
	fmt.Fprintf(&t, "Your scheduled af run %q had not completed by %s, when its schedule expected it.\n\n", name, dueBy.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&t, "Graph:    %s\n", s.GraphID)
	fmt.Fprintf(&t, "State:    %s\n", s.State)
	if s.Files > 0 || s.Bytes > 0 {
		fmt.Fprintf(&t, "Input:    %d files, %s\n", s.Files, units.Bytes(s.Bytes))
	}
	fmt.Fprintf(&t, "\nMonitor:  %s\n", s.MonitorURL)
	t.WriteString("\nA run waits when no worker is free (see the monitor's workers) or when an earlier run of the\nschedule is still going (its --max-active); you get this alert once per run.\n")
	return Message{
		To:      s.Owner,
		Subject: fmt.Sprintf("[af] %s is late", name),
		Text:    t.String(),
	}
}
