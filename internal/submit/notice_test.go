package submit

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

func TestNoWorkerNotice(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { x := t0.Add(d); return &x }
	graph := func(w *taskdef.WorkerActivity, states ...taskdef.TaskState) taskdef.GraphStatus {
		gs := taskdef.GraphStatus{GraphID: "g", State: taskdef.GraphRunning, Created: t0, Workers: w}
		for _, s := range states {
			gs.Tasks = append(gs.Tasks, taskdef.TaskStatus{State: s})
		}
		return gs
	}
	none := &taskdef.WorkerActivity{Since: t0.Add(-time.Hour), LiveWindowSeconds: 50}
	polling := &taskdef.WorkerActivity{Since: t0.Add(-time.Hour), LiveWorkers: 2, LiveWindowSeconds: 50, LastPoll: at(40 * time.Second), LastClaim: at(-time.Minute)}
	for _, tc := range []struct {
		name string
		gs   taskdef.GraphStatus
		now  time.Duration
		want []string // nil: no notice
	}{
		{"no workers, 31 s", graph(none, taskdef.StatePending, taskdef.StateUnscheduled), 31 * time.Second,
			[]string{"no worker has claimed a task for 31s", "none has asked af serve for work in the last 50s", "start a worker", "worker --queue"}},
		{"no workers, not yet", graph(none, taskdef.StatePending), 29 * time.Second, nil},
		{"workers poll but claim nothing", graph(polling, taskdef.StatePending, taskdef.StatePending), 45 * time.Second,
			[]string{"2 worker(s) ask af serve for work, but none has claimed a task for 45s", "2 pending task(s)", "their log says why"}},
		{"a task runs", graph(none, taskdef.StateRunning, taskdef.StatePending), time.Hour, nil},
		{"a recent claim elsewhere", graph(&taskdef.WorkerActivity{Since: t0, LiveWorkers: 1, LastClaim: at(50 * time.Second)}, taskdef.StatePending), 60 * time.Second, nil},
		{"an old server that sends no activity", graph(nil, taskdef.StatePending), time.Hour, nil},
		{"resolved", func() taskdef.GraphStatus {
			g := graph(none, taskdef.StateFailed)
			g.State = taskdef.GraphFailed
			return g
		}(), time.Hour, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := NoWorkerNotice(tc.gs, t0.Add(tc.now), 30*time.Second)
			if tc.want == nil && got != "" {
				t.Fatalf("notice %q, want none", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("notice lacks %q:\n%s", w, got)
				}
			}
		})
	}
}

// The notice is written once per idle spell, on a line of its own.
func TestWriteNoWorkerNoticeOncePerSpell(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	gs := taskdef.GraphStatus{State: taskdef.GraphRunning, Created: t0, Workers: &taskdef.WorkerActivity{Since: t0, LiveWindowSeconds: 50},
		Tasks: []taskdef.TaskStatus{{State: taskdef.StatePending}}}
	var w bytes.Buffer
	said := ""
	for s := 0; s < 120; s += 5 {
		said = writeNoWorkerNotice(&w, false, gs, t0.Add(time.Duration(s)*time.Second), said)
	}
	if n := strings.Count(w.String(), "\n"); n != 1 || !strings.HasPrefix(w.String(), "af: no worker has claimed a task for 30s") {
		t.Fatalf("wrote %d lines:\n%s", n, w.String())
	}
}
