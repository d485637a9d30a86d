// Package images_test runs the job images built by images/build.sh on the
// real Docker engine, the way the worker does: read-only root filesystem,
// tmpfs /tmp, the scratch dir bind-mounted, no network, a non-root user, no
// capabilities. It checks the helper contract end to end: framed records in,
// key/value lines out, sorted and merged by internal/extsort, reduced to the
// exact expected counts.
package images_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/af-project/af/internal/decompress"
	"github.com/af-project/af/internal/extsort"
	"github.com/af-project/af/internal/jobspec"
	"github.com/af-project/af/internal/records"
	"github.com/af-project/af/internal/taskdef"
)

const afUID = 10001

// docker runs the docker CLI with a deadline; Docker must be available.
func docker(t *testing.T, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin = stdin
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("docker %s: timed out", strings.Join(args, " "))
	}
	return o.String(), e.String(), err
}

// requireImage fails (never skips) when the image is missing.
func requireImage(t *testing.T, img string) {
	t.Helper()
	if _, stderr, err := docker(t, nil, "image", "inspect", img); err != nil {
		t.Fatalf("image %s is missing (%v: %s); build it with images/build.sh (make images)", img, err, stderr)
	}
}

// specOf reads /etc/analysis-tools.yml out of an image (FROM scratch ones
// included, so no shell in the image is assumed).
func specOf(t *testing.T, img string) jobspec.Spec {
	t.Helper()
	id, stderr, err := docker(t, nil, "create", img, "/none")
	if err != nil {
		t.Fatalf("docker create %s: %v: %s", img, err, stderr)
	}
	id = strings.TrimSpace(id)
	defer docker(t, nil, "rm", "-f", id)
	out, stderr, err := docker(t, nil, "cp", id+":"+jobspec.Path, "-")
	if err != nil {
		t.Fatalf("docker cp spec: %v: %s", err, stderr)
	}
	tr := tar.NewReader(strings.NewReader(out))
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := jobspec.Parse(img+":"+jobspec.Path, data)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// scratchDir makes a scratch dir the container's af user can write.
func scratchDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chown(dir, afUID, afUID); err != nil {
		t.Fatal(err)
	}
	return dir
}

type runOpts struct {
	img     string
	cmd     []string
	scratch string
	input   []byte // fed through a FIFO in the scratch dir, or stdin
	stdin   bool
	mounts  []string
}

// run starts a job container as the worker would and feeds it input.
func run(t *testing.T, o runOpts) (stderr string, err error) {
	t.Helper()
	args := []string{"run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp",
		"--user", jobspec.UserID, "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		"--memory", "512m", "--pids-limit", "64",
		"--label", "af.test=images",
		"-v", o.scratch + ":" + jobspec.ScratchDir,
		"-e", jobspec.EnvOutput + "=" + jobspec.OutputFile}
	for _, m := range o.mounts {
		args = append(args, "-v", m)
	}
	kind := jobspec.TaskMap
	for _, c := range o.cmd {
		if c == jobspec.TaskReduce {
			kind = jobspec.TaskReduce
		}
	}
	args = append(args, "-e", jobspec.EnvTaskKind+"="+kind)
	var stdin io.Reader
	fifoDone := make(chan error, 1)
	if o.stdin {
		args = append(args, "-i", "-e", jobspec.EnvInput+"="+jobspec.StdinInput)
		stdin = bytes.NewReader(o.input)
		fifoDone <- nil
	} else {
		fifo := filepath.Join(o.scratch, "input")
		if err := syscall.Mkfifo(fifo, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-e", jobspec.EnvInput+"="+jobspec.InputFIFO)
		go func() {
			// Opening blocks until the container opens its end.
			f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
			if err != nil {
				fifoDone <- err
				return
			}
			_, err = f.Write(o.input)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			fifoDone <- err
		}()
	}
	args = append(args, o.img)
	args = append(args, o.cmd...)
	_, stderr, err = docker(t, stdin, args...)
	if err != nil && !o.stdin {
		// Unblock the writer if the container died without opening the FIFO.
		if f, ferr := os.OpenFile(filepath.Join(o.scratch, "input"), os.O_RDONLY|syscall.O_NONBLOCK, 0); ferr == nil {
			f.Close()
		}
	}
	select {
	case werr := <-fifoDone:
		if werr != nil && err == nil {
			t.Fatalf("writing the FIFO: %v", werr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("FIFO writer stuck")
	}
	return stderr, err
}

// inputFile is one S3-like object: key, dims and decompressed body.
type inputFile struct {
	key  string
	dims []string
	body []byte
}

// realFiles are the real telemetry pings, decompressed with our own package.
func realFiles(t *testing.T) []inputFile {
	t.Helper()
	keys := map[string]string{
		"ss-ff-n-22.lzma": "saved_session/Firefox/nightly/22.0a1/20130226031002.20131011.v2.log.e28a4032eb744f089a1828ac7399e5d8.lzma",
		"ss-ff-n-28.lzma": "saved_session/Firefox/nightly/28.0a1/20131029030201.20131029.v2.log.0ab8723b6fb3455bb34b04d97482fda2.lzma",
	}
	var out []inputFile
	for name, key := range keys {
		f, err := os.Open(filepath.Join("../testdata/telemetry-pings", name))
		if err != nil {
			t.Fatal(err)
		}
		r, err := decompress.Open(key, f)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(r)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(key, "/")
		out = append(out, inputFile{key: key, dims: parts[:4], body: body})
	}
	return out
}

// generated makes n telemetry-like documents; some without info.OS, one
// with a non-string OS, one with an escaped OS name.
func generated(key string, n int, seed uint64) inputFile {
	rng := rand.New(rand.NewPCG(seed, 3))
	oses := []string{"WINNT", "Darwin", "Linux", "Android", "Windows_98"}
	var b bytes.Buffer
	for i := range n {
		switch {
		case i%97 == 5:
			fmt.Fprintf(&b, "g%d-%d\t{\"ver\":2,\"info\":{\"appName\":\"Firefox\"}}\n", seed, i)
		case i == 7:
			fmt.Fprintf(&b, "g%d-%d\t{\"info\":{\"OS\":42}}\n", seed, i)
		case i == 8:
			fmt.Fprintf(&b, "g%d-%d\t{\"info\":{\"OS\":\"\\u0057INNT\"}}\n", seed, i)
		default:
			fmt.Fprintf(&b, "g%d-%d\t{\"ver\":2,\"histograms\":{\"A\":[%d,2,3]},\"info\":{\"reason\":\"saved-session\",\"OS\":%q,\"x\":\"a\\\"}\"}}\n",
				seed, i, rng.IntN(100), oses[rng.IntN(len(oses))])
		}
	}
	return inputFile{key: key, dims: []string{"saved_session", "Firefox"}, body: b.Bytes()}
}

// expected counts info.OS the slow, obviously right way.
func expected(t *testing.T, files []inputFile) map[string]int64 {
	t.Helper()
	want := map[string]int64{}
	for _, f := range files {
		for _, line := range strings.Split(strings.TrimSuffix(string(f.body), "\n"), "\n") {
			_, doc, _ := strings.Cut(line, "\t")
			var d struct {
				Info map[string]any `json:"info"`
			}
			if err := json.Unmarshal([]byte(doc), &d); err != nil {
				t.Fatal(err)
			}
			os, ok := d.Info["OS"].(string)
			if !ok {
				os = "UNKNOWN"
			}
			want[os]++
		}
	}
	return want
}

func frame(t *testing.T, files []inputFile) []byte {
	t.Helper()
	var b bytes.Buffer
	w := records.NewWriter(&b)
	for _, f := range files {
		if err := w.BeginFile(f.key, f.dims); err != nil {
			t.Fatal(err)
		}
		if _, bad, _, err := w.CopyLines(bytes.NewReader(f.body), nil); err != nil || bad != 0 {
			t.Fatalf("framing %s: %d bad lines, %v", f.key, bad, err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func parseResult(t *testing.T, out string) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var k string
		var n int64
		name, count, ok := strings.Cut(line, "\t")
		if _, err := fmt.Sscan(count, &n); !ok || err != nil {
			t.Fatalf("result line %q is not OS<TAB>count", line)
		}
		k = name
		got[k] = n
	}
	return got
}

// TestJobImages runs each example image over two mapper loads and a reducer.
func TestJobImages(t *testing.T) {
	t.Parallel()
	loads := [][]inputFile{
		append(realFiles(t), generated("gen/a.log.1.gz", 3000, 1)),
		{generated("gen/b.log.2.zst", 2500, 2), generated("gen/c.log.3", 10, 3)},
	}
	var all []inputFile
	for _, l := range loads {
		all = append(all, l...)
	}
	want := expected(t, all)
	if want["WINNT"] < 5 || want["UNKNOWN"] < 2 {
		t.Fatalf("test data lacks variety: %v", want)
	}
	for _, tc := range []struct {
		img   string
		stdin bool
	}{{"af/os-count", false}, {"af/os-count-go", true}} {
		t.Run(tc.img, func(t *testing.T) {
			t.Parallel()
			requireImage(t, tc.img)
			spec := specOf(t, tc.img)
			var sorted []io.Reader
			var names []string
			for i, load := range loads {
				dir := scratchDir(t)
				stderr, err := run(t, runOpts{img: tc.img, cmd: spec.Command(taskdef.KindMapper), scratch: dir, input: frame(t, load), stdin: tc.stdin})
				if err != nil {
					t.Fatalf("mapper %d: %v\n%s", i, err, stderr)
				}
				if !strings.Contains(stderr, "map done") {
					t.Errorf("mapper %d log lacks the helper's summary: %s", i, stderr)
				}
				out, err := os.Open(filepath.Join(dir, "output"))
				if err != nil {
					t.Fatal(err)
				}
				var s bytes.Buffer
				if _, err := extsort.Sort(&s, out, "mapper output", extsort.Options{Dir: t.TempDir()}); err != nil {
					t.Fatal(err)
				}
				out.Close()
				sorted = append(sorted, &s)
				names = append(names, fmt.Sprint("mapper ", i))
			}
			var merged bytes.Buffer
			if _, err := extsort.NewNamedMerger(sorted, names).WriteTo(&merged); err != nil {
				t.Fatal(err)
			}
			dir := scratchDir(t)
			stderr, err := run(t, runOpts{img: tc.img, cmd: spec.Command(taskdef.KindReducer), scratch: dir, input: merged.Bytes(), stdin: tc.stdin})
			if err != nil {
				t.Fatalf("reducer: %v\n%s", err, stderr)
			}
			result, err := os.ReadFile(filepath.Join(dir, "output"))
			if err != nil {
				t.Fatal(err)
			}
			got := parseResult(t, string(result))
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("result %v, want %v", got, want)
			}
		})
	}
}

// TestPythonJobFailures checks that a job's exception fails the container
// with the traceback, and that the AF original form runs.
func TestPythonJobFailures(t *testing.T) {
	t.Parallel()
	requireImage(t, "af/python")
	jobDir := t.TempDir()
	os.Chmod(jobDir, 0o755)
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(jobDir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("raises.py", `
import json
def map(key, dims, value, context):
    doc = json.loads(value)
    if doc["n"] == 3:
        return 1 / 0
    context.write("n", doc["n"])
def reduce(key, values, context):
    context.write(key, sum(values))
`)
	write("mapper.py", `
def mapper(uuid, file, json):
    return "%s %s\n" % (json["info"].get("OS"), file.split("/")[0])
`)
	input := frame(t, []inputFile{{key: "k/1", body: []byte("a\t{\"n\":1}\nb\t{\"n\":2}\nc\t{\"n\":3}\nd\t{\"n\":4}\n")}})
	stderr, err := run(t, runOpts{img: "af/python", cmd: []string{"python3", "-m", "af_helper", "map", "/job/raises.py"},
		scratch: scratchDir(t), input: input, mounts: []string{jobDir + ":/job:ro"}})
	var ee *exec.ExitError
	if err == nil || !errorsAs(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("a mapper that raises: err = %v, want exit status 1", err)
	}
	for _, want := range []string{"Traceback (most recent call last)", "ZeroDivisionError", "record 3 of k/1 (document c)", "raises.py"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}

	// AF's original form: mapper(uuid, file, json) -> "key value" lines.
	spec, err := jobspec.Parse("af.yml", []byte("language: python\nscript: mapper.py\n"))
	if err != nil {
		t.Fatal(err)
	}
	dir := scratchDir(t)
	files := []inputFile{generated("saved_session/x.log.gz", 50, 9)}
	stderr, err = run(t, runOpts{img: "af/python", cmd: spec.Command(taskdef.KindMapper), scratch: dir,
		input: frame(t, files), mounts: []string{jobDir + ":/home/worker:ro"}})
	if err != nil {
		t.Fatalf("AF original mapper: %v\n%s", err, stderr)
	}
	out, err := os.ReadFile(filepath.Join(dir, "output"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != 50 || !strings.HasSuffix(lines[0], "\t\"saved_session\"") {
		t.Errorf("AF original output = %q, want JSON key/value pairs ending in the file's first path part", lines)
	}
}

func errorsAs(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*target = e
	}
	return ok
}

// TestImageDefaults checks what the images promise without the worker's
// flags: a non-root default user, and the helper importable offline.
func TestImageDefaults(t *testing.T) {
	t.Parallel()
	for _, img := range []string{"af/python", "af/os-count", "af/os-count-go"} {
		requireImage(t, img)
		user, _, err := docker(t, nil, "image", "inspect", "-f", "{{.Config.User}}", img)
		if err != nil || strings.TrimSpace(user) != jobspec.UserID {
			t.Errorf("%s: default user %q (%v), want %s", img, strings.TrimSpace(user), err, jobspec.UserID)
		}
	}
	out, stderr, err := docker(t, nil, "run", "--rm", "--network", "none", "--read-only", "af/os-count",
		"python3", "-c", "import af_helper, os; print(os.getuid(), af_helper.field('{\"info\":{\"OS\":\"x\"}}', 'info', 'OS'))")
	if err != nil || strings.TrimSpace(out) != "10001 x" {
		t.Errorf("af/os-count: %q, %v: %s", out, err, stderr)
	}
}
