package submit

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

func files(n int, size int64) []taskdef.InputFile {
	out := make([]taskdef.InputFile, n)
	for i := range out {
		out[i] = taskdef.InputFile{Key: fmt.Sprintf("saved_session/Firefox/nightly/30.0a1/20140301000000.20140308.v2.log.%04d.gz", i), Size: size + int64(i)}
	}
	return out
}

func TestBuildGraph(t *testing.T) {
	t.Parallel()
	now := time.Date(2014, 3, 10, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		opts        GraphOptions
		wantMappers int
		wantErr     string
	}{
		{name: "files per task bound", opts: GraphOptions{Image: "af/os-count", Files: files(10, 100), MaxFilesPerTask: 3}, wantMappers: 4},
		{name: "bytes per task bound", opts: GraphOptions{Image: "af/os-count", Files: files(10, 1000), MaxLoadBytes: 2500}, wantMappers: 5},
		{name: "one big load", opts: GraphOptions{Image: "af/os-count", Files: files(10, 1)}, wantMappers: 1},
		{name: "no files", opts: GraphOptions{Image: "af/os-count"}, wantErr: "no input files"},
		{name: "etags not one per file", opts: GraphOptions{Image: "af/os-count", Files: files(3, 1), ETags: []string{"a"}}, wantErr: "1 ETags for 3 input files"},
		{name: "no image", opts: GraphOptions{Files: files(1, 1)}, wantErr: "no image"},
		{name: "env may not set credentials", opts: GraphOptions{Image: "x", Files: files(1, 1), Env: map[string]string{"credentials": "x"}}, wantErr: "af sets CREDENTIALS itself"},
		{name: "env may not set the container's output", opts: GraphOptions{Image: "x", Files: files(1, 1), Env: map[string]string{"AF_OUTPUT": "/tmp/x"}}, wantErr: "--env AF_OUTPUT: the worker sets AF_OUTPUT for the job's container (see images/README.md); remove --env AF_OUTPUT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opts.Now = now
			tc.opts.Owner = "a@example.com"
			tc.opts.SealedCredentials = "c2VhbGVk"
			tc.opts.Bucket, tc.opts.Prefix = "telemetry", "v2/"
			g, err := BuildGraph(tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			mappers, nfiles, _ := Summary(g)
			if mappers != tc.wantMappers || nfiles != len(tc.opts.Files) {
				t.Fatalf("%d mappers over %d files, want %d over %d", mappers, nfiles, tc.wantMappers, len(tc.opts.Files))
			}
			if err := taskdef.ValidID(g.GraphID); err != nil {
				t.Fatal(err)
			}
			var reducer *taskdef.GraphTask
			var mapperIDs []string
			seen := map[string]bool{}
			for i := range g.Tasks {
				gt := &g.Tasks[i]
				if seen[gt.TaskID] {
					t.Fatalf("task id %s twice", gt.TaskID)
				}
				seen[gt.TaskID] = true
				task := gt.Task
				if task.GraphID != g.GraphID || task.Metadata.Owner != "a@example.com" || task.Payload.Env[taskdef.EnvOwner] != "a@example.com" {
					t.Fatalf("task %s: graph %s owner %q env %v", gt.TaskID, task.GraphID, task.Metadata.Owner, task.Payload.Env)
				}
				if !task.Deadline.After(now) || task.Expires.Before(task.Deadline) || task.Retries != DefaultRetries {
					t.Fatalf("task %s: deadline %v expires %v retries %d", gt.TaskID, task.Deadline, task.Expires, task.Retries)
				}
				switch task.Payload.Kind {
				case taskdef.KindMapper:
					mapperIDs = append(mapperIDs, gt.TaskID)
					if task.Payload.Env[taskdef.EnvCredentials] != "c2VhbGVk" || task.Payload.Bucket != "telemetry" || task.Payload.Prefix != "v2/" {
						t.Fatalf("mapper payload %+v", task.Payload)
					}
					if tc.opts.MaxFilesPerTask > 0 && len(task.Payload.Inputs) > tc.opts.MaxFilesPerTask {
						t.Fatalf("mapper with %d files", len(task.Payload.Inputs))
					}
					for j := 1; j < len(task.Payload.Inputs); j++ {
						if task.Payload.Inputs[j].Size > task.Payload.Inputs[j-1].Size {
							t.Fatalf("mapper inputs not largest first: %+v", task.Payload.Inputs)
						}
					}
				case taskdef.KindReducer:
					reducer = gt
					if _, ok := task.Payload.Env[taskdef.EnvCredentials]; ok {
						t.Fatal("the reducer got the input credentials; it reads through the queue")
					}
				}
			}
			if reducer == nil {
				t.Fatal("no reducer")
			}
			if got := strings.Join(reducer.Task.Dependencies, " "); got != strings.Join(mapperIDs, " ") || reducer.Task.Payload.Env[taskdef.EnvInputTaskIDs] != got {
				t.Fatalf("reducer deps %q, INPUT_TASK_IDS %q, want %q", got, reducer.Task.Payload.Env[taskdef.EnvInputTaskIDs], strings.Join(mapperIDs, " "))
			}
			if reducer.Task.Requires != taskdef.RequiresAllCompleted {
				t.Fatalf("reducer requires %q", reducer.Task.Requires)
			}
			b, _ := json.Marshal(g)
			var back taskdef.Graph
			if err := json.Unmarshal(b, &back); err != nil || len(back.Tasks) != len(g.Tasks) {
				t.Fatalf("graph does not round-trip through JSON: %v", err)
			}
		})
	}
}

func TestProgressLine(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	gs := taskdef.GraphStatus{Created: created, State: taskdef.GraphRunning, Tasks: []taskdef.TaskStatus{
		{Kind: taskdef.KindMapper, State: taskdef.StateCompleted, InputBytes: 100 << 20, Runs: []taskdef.Run{{Stats: taskdef.Stats{Bytes: 100 << 20}}}},
		{Kind: taskdef.KindMapper, State: taskdef.StateRunning, InputBytes: 100 << 20, Runs: []taskdef.Run{{Stats: taskdef.Stats{Bytes: 50 << 20}}}},
		{Kind: taskdef.KindMapper, State: taskdef.StatePending, InputBytes: 50 << 20},
		{Kind: taskdef.KindReducer, State: taskdef.StateUnscheduled},
	}}
	p := ProgressOf(gs, created.Add(10*time.Second))
	if p.Done != 1 || p.Total != 4 || p.Running != 1 || p.BytesDone != 150<<20 || p.BytesAll != 250<<20 {
		t.Fatalf("progress %+v", p)
	}
	line := p.Line(true)
	for _, want := range []string{"[##############..........]", "tasks 1/4 (1 running)", "input 150.0 MiB of 250.0 MiB", "15.0 MiB/s", "ETA 7s", "10s elapsed"} {
		if !strings.Contains(line, want) {
			t.Errorf("line %q lacks %q", line, want)
		}
	}
	if strings.Contains(p.Line(false), "[") {
		t.Errorf("plain line has a bar: %q", p.Line(false))
	}
}

func TestFailedTasks(t *testing.T) {
	t.Parallel()
	gs := taskdef.GraphStatus{Tasks: []taskdef.TaskStatus{
		{TaskID: "m1", Name: "mapper 1/2", State: taskdef.StateFailed, Runs: []taskdef.Run{{ReasonResolved: "failed", Message: "ZeroDivisionError: division by zero\nTraceback ..."}}},
		{TaskID: "m2", Name: "mapper 2/2", State: taskdef.StateCompleted},
		{TaskID: "r", Name: "reducer", State: taskdef.StateException, Runs: []taskdef.Run{{ReasonResolved: "dependency-failed"}}},
	}}
	got := strings.Join(FailedTasks(gs), "\n")
	want := "mapper 1/2 (m1): failed: ZeroDivisionError: division by zero\nreducer (r): exception/dependency-failed"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

// TestBuildGraphPinsETags: each mapper carries its own files' ETags in its
// files' order (largest first), and a graph without ETags carries none.
func TestBuildGraphPinsETags(t *testing.T) {
	t.Parallel()
	in := files(10, 100)
	tags := make([]string, len(in))
	for i := range in {
		tags[i] = fmt.Sprintf("etag%02d", i)
	}
	tags[4] = "" // a file S3 gave no ETag is read unpinned
	o := GraphOptions{Image: "af/os-count", Files: in, ETags: tags, MaxFilesPerTask: 3, Now: time.Unix(1e9, 0)}
	g, err := BuildGraph(o)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i, f := range in {
		want[f.Key] = tags[i]
	}
	seen := 0
	for _, gt := range g.Tasks {
		p := gt.Task.Payload
		if p.Kind == taskdef.KindReducer {
			if p.InputETags != "" {
				t.Errorf("the reducer pins %v", p.InputETags)
			}
			continue
		}
		pins := taskdef.SplitETags(p.InputETags)
		if len(pins) != len(p.Inputs) {
			t.Fatalf("mapper %s: %d ETags for %d inputs", gt.Task.Metadata.Name, len(pins), len(p.Inputs))
		}
		for j, f := range p.Inputs {
			if pins[j] != want[f.Key] {
				t.Errorf("%s pinned to %q, want %q", f.Key, pins[j], want[f.Key])
			}
			seen++
		}
	}
	if seen != len(in) {
		t.Fatalf("%d files pinned, want %d", seen, len(in))
	}
	o.ETags = nil
	g, err = BuildGraph(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, gt := range g.Tasks {
		if gt.Task.Payload.InputETags != "" {
			t.Fatal("a graph without ETags pins some")
		}
	}
	// The record says what the graph was built from, defaults filled in.
	o.GraphID = g.GraphID
	p := RecordOf(taskdef.Provenance{MadeBy: "af submit"}, o)
	if p.GraphID != g.GraphID || p.Job.MaxFilesPerTask != 3 || p.Job.MaxLoadBytes != DefaultMaxLoadBytes || p.Job.Retries != DefaultRetries ||
		p.Job.Deadline != int(DefaultDeadline/time.Second) || p.Inputs != nil || p.ETags != nil || !p.Created.Equal(time.Unix(1e9, 0)) {
		t.Errorf("record %+v (its inputs are the graph's own, added by af serve)", p)
	}
}

// TestBuildGraphLoads: given loads, the mappers read exactly those files
// (af resubmit's same mappers); loads that do not split the files
// exactly are refused.
func TestBuildGraphLoads(t *testing.T) {
	t.Parallel()
	in := files(10, 100)
	g, err := BuildGraph(GraphOptions{Image: "af/os-count", Files: in, Loads: []int{4, 1, 5}, MaxFilesPerTask: 2})
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	next := 0
	for _, gt := range g.Tasks {
		p := gt.Task.Payload
		if p.Kind != taskdef.KindMapper {
			continue
		}
		got = append(got, len(p.Inputs))
		want := map[string]bool{}
		for _, f := range in[next : next+len(p.Inputs)] {
			want[f.Key] = true
		}
		for _, f := range p.Inputs {
			if !want[f.Key] {
				t.Errorf("mapper %d reads %s, not one of its load's files", len(got), f.Key)
			}
		}
		next += len(p.Inputs)
	}
	if fmt.Sprint(got) != "[4 1 5]" {
		t.Fatalf("mappers read %v files, want the loads [4 1 5]", got)
	}
	for _, loads := range [][]int{{4, 1}, {4, 1, 6}, {0, 10}} {
		if _, err := BuildGraph(GraphOptions{Image: "x", Files: in, Loads: loads}); err == nil || !strings.Contains(err.Error(), "split the files exactly") {
			t.Errorf("loads %v: %v", loads, err)
		}
	}
}

// TestInputsChangedError names what is gone and what was rewritten, a
// few at a time, and what to do.
func TestInputsChangedError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		gone, changed []string
		want          string
	}{
		{nil, []string{"k1"}, "of its 9 input files in s3://b/p/ 1 was rewritten (its ETag or size differs: k1), as the index"},
		{[]string{"g1", "g2", "g3", "g4", "g5"}, nil, " 5 are gone (g1, g2, g3, and 2 more), as the index"},
		{[]string{"g1"}, []string{"k1", "k2"}, " 1 is gone (g1) and 2 were rewritten (their ETag or size differs: k1, k2), as"},
	} {
		err := &InputsChangedError{GraphID: "G", Gone: tc.gone, Changed: tc.changed, Total: 9, Bucket: "b", Prefix: "p/"}
		if msg := err.Error(); !strings.Contains(msg, tc.want) || !strings.Contains(msg, "af submit") || !strings.HasPrefix(msg, "graph G cannot run exactly again") {
			t.Errorf("message %q, want %q", msg, tc.want)
		}
		if !errors.Is(err, ErrInput) || !errors.Is(err, ErrInputsChanged) {
			t.Errorf("%v is not ErrInput and ErrInputsChanged", err)
		}
	}
}
