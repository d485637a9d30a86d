package submit

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/units"
)

// Progress is a graph's progress at one moment.
type Progress struct {
	Done, Total         int
	Running, Failed     int
	BytesDone, BytesAll int64
	Elapsed             time.Duration
}

// ProgressOf sums a graph's tasks: input bytes processed come from each
// mapper's latest run (progress while running, final when resolved).
func ProgressOf(gs taskdef.GraphStatus, now time.Time) Progress {
	var p Progress
	p.Total = len(gs.Tasks)
	for _, t := range gs.Tasks {
		if t.State.Resolved() {
			p.Done++
		}
		switch t.State {
		case taskdef.StateRunning:
			p.Running++
		case taskdef.StateFailed, taskdef.StateException:
			p.Failed++
		}
		if t.Kind == taskdef.KindMapper {
			p.BytesAll += t.InputBytes
			if n := len(t.Runs); n > 0 {
				b := t.Runs[n-1].Stats.Bytes
				if t.State == taskdef.StateCompleted || b > t.InputBytes {
					b = t.InputBytes
				}
				p.BytesDone += b
			}
		}
	}
	end := now
	if gs.Resolved != nil {
		end = *gs.Resolved
	}
	p.Elapsed = end.Sub(gs.Created)
	return p
}

// Line renders the progress: a bar on a terminal, plain text otherwise.
func (p Progress) Line(bar bool) string {
	var b strings.Builder
	if bar {
		const width = 24
		frac := 0.0
		if p.BytesAll > 0 {
			frac = float64(p.BytesDone) / float64(p.BytesAll)
		} else if p.Total > 0 {
			frac = float64(p.Done) / float64(p.Total)
		}
		n := int(frac * width)
		b.WriteString("[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "] ")
	}
	fmt.Fprintf(&b, "tasks %d/%d", p.Done, p.Total)
	if p.Running > 0 {
		fmt.Fprintf(&b, " (%d running)", p.Running)
	}
	if p.Failed > 0 {
		fmt.Fprintf(&b, " (%d failed)", p.Failed)
	}
	fmt.Fprintf(&b, ", input %s of %s", units.Bytes(p.BytesDone), units.Bytes(p.BytesAll))
	secs := p.Elapsed.Seconds()
	if secs > 0 && p.BytesDone > 0 {
		rate := float64(p.BytesDone) / secs
		fmt.Fprintf(&b, ", %s/s", units.Bytes(int64(rate)))
		if left := p.BytesAll - p.BytesDone; left > 0 && rate > 0 {
			fmt.Fprintf(&b, ", ETA %s", time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second))
		}
	}
	fmt.Fprintf(&b, ", %s elapsed", p.Elapsed.Round(time.Second))
	return b.String()
}

// Follow polls the graph until it resolves, writing progress to w: a
// redrawn bar when tty, otherwise a line whenever the progress changes (at
// most every plainEvery).
func Follow(ctx context.Context, q *queueclient.Client, graphID string, w io.Writer, tty bool, every time.Duration) (taskdef.GraphStatus, error) {
	if every <= 0 {
		every = time.Second
	}
	plainEvery := 10 * every
	var lastLine string
	var lastPlain time.Time
	failures := 0
	notice := ""
	for {
		gs, err := q.Graph(ctx, graphID)
		if err != nil {
			if ctx.Err() != nil {
				return gs, ctx.Err()
			}
			failures++
			if failures > 30 {
				return gs, fmt.Errorf("follow graph %s: %w", graphID, err)
			}
		} else {
			failures = 0
			p := ProgressOf(gs, time.Now())
			line := p.Line(tty)
			resolved := gs.State != taskdef.GraphRunning
			switch {
			case tty:
				fmt.Fprintf(w, "\r\033[K%s", line)
				if resolved {
					fmt.Fprintln(w)
				}
			case line != lastLine && (resolved || time.Since(lastPlain) >= plainEvery || lastLine == ""):
				fmt.Fprintln(w, line)
				lastPlain = time.Now()
				lastLine = line
			}
			if resolved {
				return gs, nil
			}
			notice = writeNoWorkerNotice(w, tty, gs, time.Now(), notice)
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w)
			}
			return gs, ctx.Err()
		case <-time.After(every):
		}
	}
}

// FailedTasks lists the tasks that did not complete, with their reasons;
// the tasks a cancel stopped are one line.
func FailedTasks(gs taskdef.GraphStatus) []string {
	var out []string
	canceled := 0
	for _, t := range gs.Tasks {
		if t.State != taskdef.StateFailed && t.State != taskdef.StateException {
			continue
		}
		if n := len(t.Runs); n > 0 && t.State == taskdef.StateException && t.Runs[n-1].ReasonResolved == taskdef.ReasonCanceled {
			// A cancel is said once, not once per task.
			canceled++
			continue
		}
		reason, msg := string(t.State), ""
		if n := len(t.Runs); n > 0 {
			r := t.Runs[n-1]
			if r.ReasonResolved != "" && r.ReasonResolved != string(t.State) {
				reason += "/" + r.ReasonResolved
			}
			msg = r.Message
		}
		line := fmt.Sprintf("%s (%s): %s", t.Name, t.TaskID, reason)
		if msg != "" {
			first, _, _ := strings.Cut(strings.TrimSpace(msg), "\n")
			line += ": " + first
		}
		out = append(out, line)
	}
	if canceled > 0 {
		out = append(out, fmt.Sprintf("%d task(s) canceled with the graph; rerun them with `af rerun %s --failed`", canceled, gs.GraphID))
	}
	return out
}

// NoWorkerAfter is how long a running graph with pending tasks and none
// running waits before Follow says that no worker is claiming (af submit
// --no-worker-notice).
var NoWorkerAfter = 30 * time.Second

// NoWorkerNotice says why a graph does not move: at now it has pending
// tasks, none running, and nothing was claimed for after (or since the
// graph was created, or af serve started); gs.Workers, which af serve
// fills in, says whether any worker asks for work at all. "" when the
// graph moves or af serve sent no worker activity.
func NoWorkerNotice(gs taskdef.GraphStatus, now time.Time, after time.Duration) string {
	a := gs.Workers
	if a == nil || gs.State != taskdef.GraphRunning || after <= 0 {
		return ""
	}
	pending := 0
	last := gs.Created
	for _, t := range gs.Tasks {
		switch t.State {
		case taskdef.StateRunning:
			return ""
		case taskdef.StatePending:
			pending++
		}
		for _, r := range t.Runs {
			if r.Started != nil && r.Started.After(last) {
				last = *r.Started
			}
		}
	}
	if pending == 0 {
		return ""
	}
	if a.Since.After(last) {
		last = a.Since
	}
	if a.LastClaim != nil && a.LastClaim.After(last) {
		last = *a.LastClaim
	}
	idle := now.Sub(last)
	if idle < after {
		return ""
	}
	idle = idle.Round(time.Second)
	if a.LiveWorkers == 0 {
		return fmt.Sprintf("af: no worker has claimed a task for %s, and none has asked af serve for work in the last %ds: start a worker for this queue (worker --queue URL --token TOKEN --key af.key; see README.md), or, if workers run, they are all busy with other graphs (af graphs)", idle, a.LiveWindowSeconds)
	}
	return fmt.Sprintf("af: %d worker(s) ask af serve for work, but none has claimed a task for %s: the graph's %d pending task(s) wait behind other work (higher priority, other owners' fair share), or the workers refuse them (their log says why: a missing image, limits above their ceilings)", a.LiveWorkers, idle, pending)
}

// writeNoWorkerNotice writes NoWorkerNotice to the progress writer w,
// once per idle spell: said is the notice last written, returned as the
// new one ("" when the graph moves again).
func writeNoWorkerNotice(w io.Writer, tty bool, gs taskdef.GraphStatus, now time.Time, said string) string {
	msg := NoWorkerNotice(gs, now, NoWorkerAfter)
	if msg == "" || (said != "" && sameNotice(said, msg)) {
		return msg
	}
	if tty {
		fmt.Fprint(w, "\r\033[K")
	}
	fmt.Fprintln(w, msg)
	return msg
}

// sameNotice reports whether two notices are of the same spell (they
// differ only in the seconds they count).
func sameNotice(a, b string) bool {
	return strings.HasPrefix(a, "af: no worker") == strings.HasPrefix(b, "af: no worker")
}
