package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/taskdef"
)

// docsIn sums the counts of an os-count result ("OS<TAB>count" lines):
// the documents the job read.
func docsIn(t *testing.T, result string) int64 {
	t.Helper()
	var n int64
	for line := range strings.SplitSeq(strings.TrimSpace(result), "\n") {
		_, c, ok := strings.Cut(line, "\t")
		v, err := strconv.ParseInt(c, 10, 64)
		if !ok || err != nil {
			t.Fatalf("result line %q is not OS<TAB>count", line)
		}
		n += v
	}
	return n
}

// commas formats n as the monitor page does (en-US: 1,600).
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// runAF runs af and returns its exit code, stdout and stderr.
func runAF(t *testing.T, cmd *exec.Cmd) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &stdout
	}
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// submitJSON is the part of `af submit --json`'s object the test reads
// (README's "Scripting af" documents all of it).
type submitJSON struct {
	GraphID    string              `json:"graphId"`
	MonitorURL string              `json:"monitorUrl"`
	State      taskdef.GraphState  `json:"state"`
	Mappers    int                 `json:"mappers"`
	Files      int                 `json:"files"`
	Totals     taskdef.GraphTotals `json:"totals"`
	Result     struct {
		TaskID string  `json:"taskId"`
		Bytes  int64   `json:"bytes"`
		File   string  `json:"file"`
		Text   *string `json:"text"`
		URL    string  `json:"url"`
	} `json:"result"`
}

// TestScriptingAF: through a real cluster (MinIO, af serve, Docker
// workers), `af submit --wait -q > out` leaves only the result in out
// and nothing on stderr; --json prints one object whose counts are the
// generated data's (the mappers' input, the reducer's apart); -o writes
// the result to a file; -q without --wait prints only the graph id; `af
// status` says the input's true counts; `af graphs` lists and filters.
func TestScriptingAF(t *testing.T) {
	t.Parallel()
	afBin, workerBin := binaries(t)
	clustertest.RequireImages(t, "af/os-count")
	c := clustertest.Start(t, clustertest.Options{})
	want, selected := filterData(t, c)
	docs := docsIn(t, want)
	startWorkerProcess(t, c, workerBin, "script-w1")
	startWorkerProcess(t, c, workerBin, "script-w2")
	dir := t.TempDir()
	submit := func(args ...string) *exec.Cmd {
		return afCmd(c, afBin, append([]string{"submit", "filters/Filter.json", "af/os-count", "--max-files-per-task", "2"}, args...)...)
	}
	mappers := (selected + 1) / 2

	t.Run("--wait -q > out", func(t *testing.T) {
		outPath := filepath.Join(dir, "out")
		out, err := os.Create(outPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := submit("--name", "scripted quiet", "--wait", "-q")
		cmd.Stdout = out
		code, _, stderr := runAF(t, cmd)
		out.Close()
		got, err := os.ReadFile(outPath)
		if err != nil {
			t.Fatal(err)
		}
		if code != 0 || string(got) != want {
			t.Fatalf("af submit --wait -q > out: exit %d; out holds\n%s\nwant only the result\n%s\nstderr:\n%s", code, got, want, stderr)
		}
		if stderr != "" {
			t.Errorf("-q wrote to stderr:\n%s", stderr)
		}
	})

	t.Run("--wait --json -o FILE", func(t *testing.T) {
		resPath := filepath.Join(dir, "counts.tsv")
		code, stdout, stderr := runAF(t, submit("--name", "scripted json", "--wait", "--json", "-o", resPath))
		if code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		if strings.Count(stdout, "\n") != 1 {
			t.Errorf("--json printed more than one line:\n%s", stdout)
		}
		var js submitJSON
		if err := json.Unmarshal([]byte(stdout), &js); err != nil {
			t.Fatalf("--json output is not one JSON object: %v\n%s", err, stdout)
		}
		got, err := os.ReadFile(resPath)
		if err != nil || string(got) != want {
			t.Fatalf("-o %s holds %q (%v), want the result %q", resPath, got, err, want)
		}
		if matches, _ := filepath.Glob(filepath.Join(dir, ".counts.tsv.*")); len(matches) != 0 {
			t.Errorf("-o left its temporary files: %v", matches)
		}
		in, red := js.Totals.Input, js.Totals.Reducer
		checks := []struct {
			what      string
			got, want int64
		}{
			{"files posted", int64(js.Files), int64(selected)},
			{"mappers posted", int64(js.Mappers), int64(mappers)},
			{"input files read", in.Files, int64(selected)},
			{"input files selected", in.FilesAll, int64(selected)},
			{"input records", in.Records, docs},
			{"mapper tasks", int64(in.Tasks), int64(mappers)},
			{"reducer's inputs (mapper outputs)", red.Inputs, int64(mappers)},
			{"reducer's lines out", red.Lines, int64(strings.Count(want, "\n"))},
			{"result bytes", js.Result.Bytes, int64(len(want))},
		}
		for _, ch := range checks {
			if ch.got != ch.want {
				t.Errorf("--json %s = %d, want %d", ch.what, ch.got, ch.want)
			}
		}
		if js.State != taskdef.GraphCompleted || js.Result.File != resPath || js.Result.Text != nil || js.MonitorURL != c.URL+"/graphs/"+js.GraphID {
			t.Errorf("--json: state %s, result file %q, text %v, monitor %q", js.State, js.Result.File, js.Result.Text, js.MonitorURL)
		}
		for _, w := range []string{"graph " + js.GraphID + " posted", "monitor: " + js.MonitorURL, "wrote " + resPath} {
			if !strings.Contains(stderr, w) {
				t.Errorf("stderr lacks %q:\n%s", w, stderr)
			}
		}

		// af status tells the same truth: the input is the mappers'
		// files and records, the reducer's counts are apart.
		code, status, serr := runAF(t, afCmd(c, afBin, "status", js.GraphID))
		if code != 0 {
			t.Fatalf("af status: %d %s", code, serr)
		}
		for _, w := range []string{
			fmt.Sprintf("input: %d/%d files", selected, selected),
			fmt.Sprintf(" %d records, ", docs),
			fmt.Sprintf("reducer: %d mapper output(s)", mappers),
		} {
			if !strings.Contains(status, w) {
				t.Errorf("af status lacks %q:\n%s", w, status)
			}
		}
	})

	t.Run("--wait --json carries the result", func(t *testing.T) {
		code, stdout, stderr := runAF(t, submit("--name", "scripted inline", "--wait", "--json", "-q"))
		var js submitJSON
		if err := json.Unmarshal([]byte(stdout), &js); code != 0 || err != nil {
			t.Fatalf("exit %d, %v\nstdout:\n%s\nstderr:\n%s", code, err, stdout, stderr)
		}
		if js.Result.Text == nil || *js.Result.Text != want || js.Result.TaskID == "" || !strings.HasSuffix(js.Result.URL, "/artifacts/public/result.txt") {
			t.Fatalf("--json result %+v, want the text %q", js.Result, want)
		}
		if stderr != "" {
			t.Errorf("--json -q wrote to stderr:\n%s", stderr)
		}
	})

	t.Run("-q without --wait, then af graphs", func(t *testing.T) {
		code, stdout, stderr := runAF(t, submit("--name", "scripted id only", "-q"))
		id := strings.TrimSuffix(stdout, "\n")
		if code != 0 || !graphIDPattern.MatchString("graph "+id+" posted") || strings.ContainsAny(id, " \n") {
			t.Fatalf("af submit -q: exit %d, stdout %q, want only the graph id\nstderr:\n%s", code, stdout, stderr)
		}
		code, res, serr := runAF(t, afCmd(c, afBin, "result", "--wait", id))
		if code != 0 || res != want {
			t.Fatalf("af result --wait %s: exit %d\n%s\n%s", id, code, res, serr)
		}
		code, list, serr := runAF(t, afCmd(c, afBin, "graphs", "--name", "SCRIPTED", "--state", "completed", "--json"))
		if code != 0 {
			t.Fatalf("af graphs: %d %s", code, serr)
		}
		var gl taskdef.GraphList
		if err := json.Unmarshal([]byte(list), &gl); err != nil {
			t.Fatalf("af graphs --json: %v\n%s", err, list)
		}
		var names []string
		for _, g := range gl.Graphs {
			names = append(names, g.Name)
		}
		if got := strings.Join(names, ","); got != "scripted id only,scripted inline,scripted json,scripted quiet" {
			t.Errorf("af graphs --name SCRIPTED --state completed listed %q", got)
		}
		code, table, _ := runAF(t, afCmd(c, afBin, "graphs", "--state", "running,failed"))
		if code != 0 || strings.Contains(table, "scripted") || !strings.HasPrefix(table, "GRAPH") {
			t.Errorf("af graphs --state running,failed: exit %d\n%s", code, table)
		}
	})
}
