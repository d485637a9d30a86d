package images_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/extsort"
	"github.com/af-project/af/internal/jobspec"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/taskdef"
)

// runLocked runs one task of img through internal/runner, the worker's
// locked-down container config (no network, read-only root, user 10001, no
// capabilities, the scratch dir alone writable), and returns the job's
// output file.
func runLocked(t *testing.T, img string, kind taskdef.Kind, input []byte) string {
	t.Helper()
	d, err := runner.NewDockerClient()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r, err := runner.New(d, runner.Options{WorkerID: "images-test"})
	if err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	if err := os.Chmod(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "job")
	if _, _, err := runner.PrepareScratch(dir, afUID, afUID); err != nil {
		t.Fatal(err)
	}
	spec := specOf(t, img)
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := r.Run(ctx, runner.Spec{
		TaskID: "images-" + string(kind), Kind: kind, Image: img, Entrypoint: []string{}, Cmd: spec.Command(kind),
		ScratchDir: dir, Input: runner.InputFIFO, User: jobspec.UserID, MaxRunTime: 2 * time.Minute,
	}, runner.Streams{Stdin: bytes.NewReader(input), Stdout: &log, Stderr: &log})
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", img, kind, err, log.String())
	}
	if res.Outcome != runner.OutcomeSucceeded {
		t.Fatalf("%s %s: %s\n%s", img, kind, res.Message, log.String())
	}
	out, err := os.ReadFile(filepath.Join(dir, runner.OutputName))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestPythonImageHasNumpyAndPandas: af/python carries numpy and pandas, and
// a job imports them in the worker's locked-down container.
func TestPythonImageHasNumpyAndPandas(t *testing.T) {
	t.Parallel()
	requireImage(t, "af/python")
	out, stderr, err := docker(t, nil, "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp",
		"--user", jobspec.UserID, "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--label", "af.test=images",
		"af/python", "python3", "-c", "import numpy, pandas; print(numpy.__version__, pandas.__version__, int(numpy.arange(4).sum()), int(pandas.Series([1, 2]).sum()))")
	if err != nil {
		t.Fatalf("import numpy, pandas in af/python: %v\n%s", err, stderr)
	}
	f := strings.Fields(out)
	if len(f) != 4 || !strings.HasPrefix(f[0], "1.") || !strings.HasPrefix(f[1], "1.") || f[2] != "6" || f[3] != "3" {
		t.Errorf("af/python: numpy and pandas printed %q, want their versions (Debian bookworm's 1.x) and 6 3", out)
	}
}

// TestExampleImageWithPackages builds images/example-numpy (README's image
// that adds packages: FROM af/python, a vendored pure-Python module, no
// network at build time) and runs its job, which uses numpy, pandas and
// the vendored module, as a mapper and a reducer through internal/runner.
func TestExampleImageWithPackages(t *testing.T) {
	t.Parallel()
	requireImage(t, "af/python")
	img := fmt.Sprintf("af-test/example-numpy:%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "docker", "build", "-q", "--network", "none", "--label", "af.test=images", "-t", img, "example-numpy")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build images/example-numpy (with no network): %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", img).Run() })

	files := []inputFile{generated("gen/a.log.1.gz", 400, 11), generated("gen/b.log.2.gz", 300, 12)}
	mapped := runLocked(t, img, taskdef.KindMapper, frame(t, files))
	var sorted bytes.Buffer
	if _, err := extsort.Sort(&sorted, strings.NewReader(mapped), "mapper output", extsort.Options{Dir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	got := runLocked(t, img, taskdef.KindReducer, sorted.Bytes())

	// The same statistics, computed here.
	totals := map[string][]int64{}
	for _, f := range files {
		for _, line := range strings.Split(strings.TrimSuffix(string(f.body), "\n"), "\n") {
			_, doc, _ := strings.Cut(line, "\t")
			var d struct {
				Info       map[string]any     `json:"info"`
				Histograms map[string][]int64 `json:"histograms"`
			}
			if err := json.Unmarshal([]byte(doc), &d); err != nil {
				t.Fatal(err)
			}
			os, ok := d.Info["OS"].(string)
			if !ok {
				os = "UNKNOWN"
			}
			var sum int64
			for _, v := range d.Histograms["A"] {
				sum += v
			}
			totals[os] = append(totals[os], sum)
		}
	}
	var want []string
	for os, v := range totals {
		slices.Sort(v)
		var s int64
		for _, x := range v {
			s += x
		}
		pos := 0.9 * float64(len(v)-1)
		lo := int(math.Floor(pos))
		p90 := float64(v[lo])
		if lo+1 < len(v) {
			p90 += (pos - float64(lo)) * float64(v[lo+1]-v[lo])
		}
		want = append(want, fmt.Sprintf("%s,%d,%.2f,%d,%d", os, len(v), float64(s)/float64(len(v)), int64(p90), v[len(v)-1]/10*10))
	}
	gotLines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	slices.Sort(gotLines)
	slices.Sort(want)
	if !slices.Equal(gotLines, want) {
		t.Errorf("example-numpy's result\n%s\nwant\n%s", strings.Join(gotLines, "\n"), strings.Join(want, "\n"))
	}
}
