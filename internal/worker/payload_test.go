package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/taskdef"
)

var testCeilings = Ceilings{MemoryBytes: 8 << 30, CPUs: 2, Pids: 4096, RunTime: 24 * time.Hour}

func okPayload() taskdef.Payload {
	return taskdef.Payload{
		Kind: taskdef.KindMapper, Image: "af/os-count", Bucket: "telemetry",
		Inputs:     []taskdef.InputFile{{Key: "v2/a.gz", Size: 10}, {Key: "v2/b.gz", Size: 0}},
		Env:        map[string]string{"OWNER": "a@example.com", taskdef.EnvCredentials: "sealed"},
		MaxRunTime: 3600,
	}
}

// TestCheckPayload: a task cannot ask for more memory, CPUs, pids or run
// time than the worker's ceilings, nor give a number out of range; each
// refusal names the field or the ceiling and its flag.
func TestCheckPayload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(p *taskdef.Payload)
		want []string // substrings of the error; nil: accepted
	}{
		{"ok", func(p *taskdef.Payload) {}, nil},
		{"zero limits take defaults", func(p *taskdef.Payload) { p.Limits = taskdef.Limits{} }, nil},
		{"at the ceilings", func(p *taskdef.Payload) {
			p.Limits = taskdef.Limits{MemoryBytes: 8 << 30, CPUs: 2, Pids: 4096}
			p.MaxRunTime = 86400
		}, nil},
		{"reducer", func(p *taskdef.Payload) {
			p.Kind = taskdef.KindReducer
			p.Inputs = nil
			p.Env[taskdef.EnvInputTaskIDs] = "mapperAAAA mapperBBBB"
		}, nil},
		{"no image", func(p *taskdef.Payload) { p.Image = "" }, []string{"needs an image"}},
		{"bad kind", func(p *taskdef.Payload) { p.Kind = "combiner" }, []string{`kind "combiner"`}},
		{"50 GiB memory", func(p *taskdef.Payload) { p.Limits.MemoryBytes = 50 << 30 },
			[]string{"the task asks for 50GiB of memory; this worker allows at most 8GiB (--max-task-memory); submit with less"}},
		{"negative memory", func(p *taskdef.Payload) { p.Limits.MemoryBytes = -1 }, []string{"memoryBytes -1 is negative"}},
		{"tiny memory", func(p *taskdef.Payload) { p.Limits.MemoryBytes = 4096 }, []string{"below Docker's minimum of 6 MiB"}},
		{"max int64 memory", func(p *taskdef.Payload) { p.Limits.MemoryBytes = math.MaxInt64 }, []string{"--max-task-memory"}},
		{"too many cpus", func(p *taskdef.Payload) { p.Limits.CPUs = 64 }, []string{"the task asks for 64 CPUs; this worker allows at most 2 (--max-task-cpus)"}},
		{"negative cpus", func(p *taskdef.Payload) { p.Limits.CPUs = -0.5 }, []string{"cpus -0.5 is not a CPU count"}},
		{"NaN cpus", func(p *taskdef.Payload) { p.Limits.CPUs = math.NaN() }, []string{"cpus NaN"}},
		{"Inf cpus", func(p *taskdef.Payload) { p.Limits.CPUs = math.Inf(1) }, []string{"cpus +Inf"}},
		{"tiny cpus", func(p *taskdef.Payload) { p.Limits.CPUs = 0.001 }, []string{"minimum of 0.01"}},
		{"10^9 pids", func(p *taskdef.Payload) { p.Limits.Pids = 1e9 }, []string{"the task asks for 1000000000 processes; this worker allows at most 4096 (--max-task-pids)"}},
		{"negative pids", func(p *taskdef.Payload) { p.Limits.Pids = -3 }, []string{"pids -3 is negative"}},
		{"zero run time", func(p *taskdef.Payload) { p.MaxRunTime = 0 }, []string{"maxRunTime 0 must be a positive number of seconds"}},
		{"negative run time", func(p *taskdef.Payload) { p.MaxRunTime = -5 }, []string{"maxRunTime -5"}},
		{"run time over the ceiling", func(p *taskdef.Payload) { p.MaxRunTime = 86401 }, []string{"run time of 24h0m1s", "at most 24h0m0s (--max-run-time)"}},
		// 1<<62 seconds overflows time.Duration: it used to mean no limit.
		{"overflowing run time", func(p *taskdef.Payload) { p.MaxRunTime = 1 << 62 }, []string{"run time of 4611686018427387904s (over 290 years); this worker", "--max-run-time"}},
		{"max int run time", func(p *taskdef.Payload) { p.MaxRunTime = math.MaxInt }, []string{"over 290 years", "--max-run-time"}},
		{"negative input size", func(p *taskdef.Payload) { p.Inputs[1].Size = -1 }, []string{"inputs[1].size -1 is negative"}},
		{"an etag per input", func(p *taskdef.Payload) { p.InputETags = "abc 0123-4" }, nil},
		{"one input unpinned", func(p *taskdef.Payload) { p.InputETags = " 0123-4" }, nil},
		{"fewer etags than inputs", func(p *taskdef.Payload) { p.InputETags = "abc" }, []string{"inputETags has 1 entries for 2 inputs"}},
		{"a million spaces", func(p *taskdef.Payload) { p.InputETags = strings.Repeat(" ", 1e6) }, []string{"inputETags has 1000001 entries for 2 inputs"}},
		{"etag with a newline (a header)", func(p *taskdef.Payload) { p.InputETags = "abc d\r\nX-Evil:1" }, []string{"inputETags[1] must be an unquoted S3 ETag"}},
		{"quoted etag", func(p *taskdef.Payload) { p.InputETags = `"abc" d` }, []string{"inputETags[0] must be an unquoted"}},
		{"etag too long", func(p *taskdef.Payload) { p.InputETags = strings.Repeat("a", maxETagBytes+1) + " d" }, []string{"at most 128 printable"}},
		{"input sizes overflow", func(p *taskdef.Payload) { p.Inputs[0].Size, p.Inputs[1].Size = math.MaxInt64, 1 }, []string{"more than 2^63"}},
		{"empty key", func(p *taskdef.Payload) { p.Inputs[0].Key = "" }, []string{"inputs[0].key"}},
		{"long key", func(p *taskdef.Payload) { p.Inputs[0].Key = strings.Repeat("k", 1025) }, []string{"inputs[0].key must be 1 to 1024 bytes"}},
		{"too many inputs", func(p *taskdef.Payload) {
			p.Inputs = make([]taskdef.InputFile, maxInputsPerTask+1)
		}, []string{"100001 input files"}},
		{"huge schema", func(p *taskdef.Payload) { p.Schema = make([]string, 65) }, []string{"schema has 65 fields"}},
		{"too many env vars", func(p *taskdef.Payload) {
			for i := 0; len(p.Env) <= maxEnvVars; i++ {
				p.Env[fmt.Sprintf("V%d", i)] = "1"
			}
		}, []string{"variables; at most 1000"}},
		{"env value past the exec limit", func(p *taskdef.Payload) { p.Env["BIG"] = strings.Repeat("v", 128<<10) }, []string{"env.BIG is", "kernel's limit"}},
		{"env over a MiB", func(p *taskdef.Payload) {
			for _, n := range []string{"A", "B", "C", "D", "E", "F", "G", "H", "I"} {
				p.Env[n] = strings.Repeat("v", 120<<10)
			}
		}, []string{"the job's environment may be at most"}},
		{"huge credentials", func(p *taskdef.Payload) { p.Env[taskdef.EnvCredentials] = strings.Repeat("c", 1<<20+1) }, []string{"sealed credentials are at most"}},
		{"reducer bad input id", func(p *taskdef.Payload) {
			p.Kind = taskdef.KindReducer
			p.Env[taskdef.EnvInputTaskIDs] = "ok-id-0001 ../../etc"
		}, []string{"INPUT_TASK_IDS", `"../../etc"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := okPayload()
			tc.edit(&p)
			err := checkPayload(p, testCeilings)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestCeilingsLimits: zero limits take the runner's defaults, lowered to
// the ceilings.
func TestCeilingsLimits(t *testing.T) {
	t.Parallel()
	got := testCeilings.limits(taskdef.Limits{})
	if want := (taskdef.Limits{MemoryBytes: runner.DefaultMemoryBytes, CPUs: runner.DefaultCPUs, Pids: runner.DefaultPids}); got != want {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
	low := Ceilings{MemoryBytes: 512 << 20, CPUs: 0.5, Pids: 32, RunTime: time.Hour}
	if got, want := low.limits(taskdef.Limits{}), (taskdef.Limits{MemoryBytes: 512 << 20, CPUs: 0.5, Pids: 32}); got != want {
		t.Errorf("defaults under low ceilings %+v, want %+v", got, want)
	}
	asked := taskdef.Limits{MemoryBytes: 100 << 20, CPUs: 0.25, Pids: 8}
	if got := low.limits(asked); got != asked {
		t.Errorf("asked %+v, got %+v", asked, got)
	}
}

func TestCeilingsCheck(t *testing.T) {
	t.Parallel()
	if err := DefaultCeilings().Check(); err != nil {
		t.Fatalf("default ceilings: %v", err)
	}
	for _, tc := range []struct {
		edit func(*Ceilings)
		want string
	}{
		{func(c *Ceilings) { c.MemoryBytes = 1 << 20 }, "--max-task-memory 1MiB"},
		{func(c *Ceilings) { c.CPUs = 1e6 }, "--max-task-cpus 1e+06: this host has"},
		{func(c *Ceilings) { c.CPUs = math.NaN() }, "--max-task-cpus NaN"},
		{func(c *Ceilings) { c.Pids = 1e9 }, "--max-task-pids 1000000000 must be between 1 and the kernel's maximum 4194304"},
		{func(c *Ceilings) { c.Pids = -1 }, "--max-task-pids -1"},
		{func(c *Ceilings) { c.RunTime = time.Millisecond }, "--max-run-time 1ms"},
	} {
		c := DefaultCeilings()
		tc.edit(&c)
		if err := c.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%+v) = %v, want %q", c, err, tc.want)
		}
	}
	d := DefaultCeilings()
	if d.MemoryBytes <= 0 || d.MemoryBytes > DefaultMaxTaskMemory || d.Pids != DefaultMaxTaskPids || d.RunTime != DefaultMaxRunTime || d.CPUs < 1 {
		t.Errorf("default ceilings %+v", d)
	}
}

func TestParseBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"0", 0, false}, {"100", 100, false}, {"100B", 100, false}, {"8GiB", 8 << 30, false}, {"8G", 8 << 30, false},
		{"8gb", 8 << 30, false}, {"512MiB", 512 << 20, false}, {"1.5GiB", 3 << 29, false}, {"2 TiB", 2 << 40, false},
		{"4KiB", 4096, false}, {"", 0, true}, {"GiB", 0, true}, {"-1GiB", 0, true}, {"8XB", 0, true}, {"1e3", 0, true},
		{"9000000TiB", 0, true}, {"1.2.3G", 0, true},
	} {
		got, err := ParseBytes(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	for _, n := range []int64{0, 1, 1023, 1024, 6 << 20, 8 << 30, 3 << 29, 5 << 40} {
		s := FormatBytes(n)
		if got, err := ParseBytes(s); err != nil || got != n {
			t.Errorf("FormatBytes(%d) = %q reads back as %d, %v", n, s, got, err)
		}
	}
}

// FuzzCheckPayload decodes arbitrary payload JSON: whatever checkPayload
// accepts runs within the ceilings, with a positive run time that did not
// overflow, and input sizes that add up.
func FuzzCheckPayload(f *testing.F) {
	for _, s := range []string{
		`{"kind":"mapper","image":"x","maxRunTime":60}`,
		`{"kind":"mapper","image":"x","maxRunTime":4611686018427387904,"limits":{"memoryBytes":53687091200,"cpus":64,"pids":1000000000}}`,
		`{"kind":"reducer","image":"x","maxRunTime":1,"env":{"INPUT_TASK_IDS":"aaaaaaaa bbbbbbbb"}}`,
		`{"kind":"mapper","image":"x","maxRunTime":86400,"limits":{"memoryBytes":6291456,"cpus":0.01,"pids":1},"inputs":[{"key":"k","size":9223372036854775807}]}`,
		`{"kind":"mapper","image":"x","maxRunTime":-1,"limits":{"cpus":-1e308}}`,
		`{"kind":"mapper","image":"x","maxRunTime":10,"inputs":[{"key":"a","size":-1}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p taskdef.Payload
		if json.Unmarshal(data, &p) != nil {
			return
		}
		if checkPayload(p, testCeilings) != nil {
			return
		}
		l := testCeilings.limits(p.Limits)
		if l.MemoryBytes < 6<<20 || l.MemoryBytes > testCeilings.MemoryBytes || l.CPUs < 0.01 || l.CPUs > testCeilings.CPUs ||
			math.IsNaN(l.CPUs) || l.Pids < 1 || l.Pids > testCeilings.Pids {
			t.Fatalf("accepted limits %+v beyond the ceilings %+v", l, testCeilings)
		}
		d := time.Duration(p.MaxRunTime) * time.Second
		if d <= 0 || d > testCeilings.RunTime || d/time.Second != time.Duration(p.MaxRunTime) {
			t.Fatalf("accepted maxRunTime %d (%s)", p.MaxRunTime, d)
		}
		var total int64
		for _, in := range p.Inputs {
			if in.Size < 0 || total+in.Size < total {
				t.Fatalf("accepted input sizes %+v", p.Inputs)
			}
			total += in.Size
		}
		// What the runner makes of it is a valid container too.
		_, _, err := runner.ContainerConfig(runner.Spec{
			TaskID: "fuzz-task", WorkerID: "w", Kind: p.Kind, Image: p.Image, ScratchDir: "/s", Limits: l, MaxRunTime: d,
		})
		var ce *runner.ConfigError
		if err != nil && !errors.As(err, &ce) {
			t.Fatalf("the runner refuses an accepted payload as the worker's mistake: %v", err)
		}
		if ce != nil && (strings.Contains(ce.Msg, "limit") || strings.Contains(ce.Msg, "kind")) {
			t.Fatalf("the runner refuses limits checkPayload accepted: %v", err)
		}
	})
}
