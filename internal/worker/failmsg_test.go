package worker

import (
	"strings"
	"testing"

	"github.com/af-project/af/internal/jobspec"
	"github.com/af-project/af/internal/taskdef"
)

func TestFailureMessage(t *testing.T) {
	t.Parallel()
	tb := "af_helper: map failed on record 1 of k.gz (document d):\nTraceback (most recent call last):\n  File \"/job/job.py\", line 3, in map\nValueError: bad\n"
	goPanic := "afjob: map failed: panic: runtime error: index out of range [3] with length 3\ngoroutine 1 [running]:\n" +
		strings.Repeat("main.f()\n\t/src/main.go:10 +0x1d\n", 10)
	for _, tc := range []struct {
		name, runner, out, want string
	}{
		{"no output", "the job exited with code 1", "", "the job exited with code 1"},
		{"blank output", "the job exited with code 1", "\n \n", "the job exited with code 1"},
		{"traceback: exception first", "the job exited with code 1", tb,
			"the job exited with code 1: ValueError: bad (at /job/job.py line 3)\n" + strings.TrimSpace(tb)},
		{"go panic: the panic, not its stack", "the job exited with code 1", goPanic,
			"the job exited with code 1: afjob: map failed: panic: runtime error: index out of range [3] with length 3 (at /src/main.go:10)\n" + lastLines(strings.TrimSpace(goPanic), 12)},
		{"one line", "the job exited with code 2", "af_helper: no map()\n",
			"the job exited with code 2: af_helper: no map()\naf_helper: no map()"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := failureMessage(tc.runner, tc.out); got != tc.want {
				t.Fatalf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestOutputTailKeepsTheEndFromALineStart(t *testing.T) {
	t.Parallel()
	o := &outputTail{max: 64}
	for i := 0; i < 100; i++ {
		_, _ = o.Write([]byte(strings.Repeat("x", 9) + "\n"))
	}
	_, _ = o.Write([]byte("last line\n"))
	got := o.String()
	if len(got) > 64 || !strings.HasSuffix(got, "last line\n") || !strings.HasPrefix(got, "xxxxxxxxx\n") {
		t.Fatalf("tail %q", got)
	}
}

func TestUserLocation(t *testing.T) {
	t.Parallel()
	helperFrames := strings.Repeat("  File \"/usr/lib/python3/dist-packages/af_helper.py\", line 120, in load_module\n    spec.loader.exec_module(mod)\n", 3)
	for _, tc := range []struct{ name, out, want string }{
		{"python syntax error", "af_helper: importing /job/job.py failed:\nTraceback (most recent call last):\n" + helperFrames +
			"  File \"<frozen importlib._bootstrap_external>\", line 936, in exec_module\n  File \"/job/job.py\", line 7\n    def map(key dims):\n            ^^^^\nSyntaxError: invalid syntax\n", "/job/job.py line 7"},
		{"python error inside the library", "Traceback (most recent call last):\n" + helperFrames + "  File \"/job/job.py\", line 12, in map\n    json.loads(v)\n" +
			"  File \"/usr/lib/python3.11/json/__init__.py\", line 346, in loads\nValueError: x\n", "/job/job.py line 12"},
		{"helper only", "Traceback (most recent call last):\n" + helperFrames + "OSError: x\n", "/usr/lib/python3/dist-packages/af_helper.py line 120"},
		{"go panic in the standard library", "afjob: map failed: panic: strconv: bad\ngoroutine 1 [running]:\nruntime/debug.Stack()\n\t/usr/lib/go/src/runtime/debug/stack.go:26 +0x5e\n" +
			"github.com/af-project/af/sdk/afjob.Run.func1()\n\t/src/sdk/afjob/afjob.go:250 +0x4d\nstrconv.Atoi(...)\n\t/usr/lib/go/src/strconv/atoi.go:1 +0x1\n" +
			"main.mapFn({0x1, 0x2})\n\t/src/images/os-count-go/main.go:33 +0x1d\n", "/src/images/os-count-go/main.go:33"},
		{"go module package", "panic: x\n\ngoroutine 1 [running]:\nexample.com/job/count.Map(...)\n\t/build/count/map.go:9 +0x1\n", "/build/count/map.go:9"},
		{"no frames", "af_helper: the job module has no map(key, dims, value, context) function\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := userLocation(tc.out); got != tc.want {
				t.Fatalf("userLocation = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStartFailure(t *testing.T) {
	t.Parallel()
	py := jobspec.Spec{Language: jobspec.Python, Mapper: "/job/job.py", Reducer: "/job/job.py"}
	goSpec := jobspec.Spec{Language: jobspec.Go, Mapper: "/job/os-cont", Reducer: "/job/job.py"}
	for _, tc := range []struct {
		name string
		spec jobspec.Spec
		kind taskdef.Kind
		code int
		out  string
		want []string // the message names the field, the file and the fix
	}{
		{"started: the job's own failure", py, taskdef.KindMapper, 1, "Traceback ...\nValueError: x\n", nil},
		{"a job that prints tini's words later started", goSpec, taskdef.KindMapper, 1, "afjob: map starting\n[FATAL tini (7)] exec /job/os-cont failed: No such file or directory\n", nil},
		{"no python3 (a Go image under language: python)", py, taskdef.KindMapper, 127, "[FATAL tini (7)] exec python3 failed: No such file or directory\n",
			[]string{"the image has no python3", "language: go in /etc/analysis-tools.yml", "FROM af/python", "exit 127"}},
		{"mapper not found", goSpec, taskdef.KindMapper, 127, "[FATAL tini (7)] exec /job/os-cont failed: No such file or directory\n",
			[]string{"the job's mapper /job/os-cont was not found in the image", "check mapper: in /etc/analysis-tools.yml", "CGO_ENABLED=0"}},
		{"a Python module under language: go", goSpec, taskdef.KindReducer, 126, "[FATAL tini (8)] exec /job/job.py failed: Permission denied\n",
			[]string{"the job's reducer /job/job.py cannot be executed", "reducer: in /etc/analysis-tools.yml", "a Python module needs language: python"}},
		{"exec format error", goSpec, taskdef.KindMapper, 1, "[FATAL tini (7)] exec /job/os-cont failed: Exec format error\n",
			[]string{"not a program this worker can run (exec format error)", "language: python", "linux"}},
		{"AF's form names script:", jobspec.Spec{Language: jobspec.Go, Mapper: "/x", Original: true}, taskdef.KindMapper, 127, "[FATAL tini (7)] exec /x failed: No such file or directory\n",
			[]string{"the job's script /x", "check script: in"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := startFailure(tc.spec, tc.kind, tc.code, tc.out)
			if tc.want == nil && got != "" {
				t.Fatalf("got %q, want none (the job started)", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("message lacks %q:\n%s", w, got)
				}
			}
		})
	}
}

// A task's message names no directory of the worker's host.
func TestHostPathsLeaveNoHostPath(t *testing.T) {
	t.Parallel()
	w := &Worker{cfg: Config{ScratchRoot: "/srv/af/scratch", StateDir: "/srv/af/scratch/.state"}}
	got := w.hostPaths("the worker's scratch dir: open /srv/af/scratch/t1/job/in.fifo: no such file; run record /srv/af/scratch/.state/t1.json")
	if strings.Contains(got, "/srv/af") || !strings.Contains(got, "$SCRATCH_ROOT/t1/job/in.fifo") || !strings.Contains(got, "$STATE_DIR/t1.json") {
		t.Fatalf("got %q", got)
	}
}
