package localrun_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/filter"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/localrun"
	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/testbin"
)

func TestMain(m *testing.M) { testbin.Main(m) }

// nightly selects the nightly channel's files of the test data.
const nightly = `{"version": 1, "dimensions": [
  {"field_name": "reason", "allowed_values": ["saved-session"]},
  {"field_name": "appName", "allowed_values": "*"},
  {"field_name": "appUpdateChannel", "allowed_values": ["nightly"]},
  {"field_name": "appVersion", "allowed_values": "*"},
  {"field_name": "appBuildID", "allowed_values": "*"},
  {"field_name": "submission_date", "allowed_values": {"min": "20131029"}}
]}`

// testData is synthetic telemetry under the prefix v2/ in every format,
// with bad lines, written to a data dir.
type testData struct {
	set    *synth.Set
	dir    string
	filter string // path of the nightly filter
	// selected are the files the filter selects, in key order.
	selected []synth.File
}

func (d testData) expected(files []synth.File) string {
	keys := map[string]bool{}
	for _, f := range files {
		keys[f.Key] = true
	}
	return synth.FormatOSCounts(d.set.CountByOS(func(f synth.File) bool { return keys[f.Key] }))
}

func makeData(t *testing.T, seed uint64) testData {
	t.Helper()
	set, err := synth.Generate(synth.Spec{
		Prefix: "v2/", Reasons: []string{"saved-session", "idle-daily"}, Channels: []string{"nightly", "beta"}, Versions: []string{"28.0a1"},
		BuildIDs: []string{"20131029030201"}, Days: []string{"20131029", "20131030"}, FilesPerPartition: 2,
		DocsPerFile: 40, HistogramSize: 2, Formats: []string{"gz", "xz", "lzma", "zst", "bz2", ""}, BadLineEvery: 17, Seed: seed,
	})
	if err != nil {
		t.Fatal(err)
	}
	d := testData{set: set, dir: filepath.Join(t.TempDir(), "data")}
	if err := synth.WriteDir(d.dir, set.Files); err != nil {
		t.Fatal(err)
	}
	d.filter = filepath.Join(t.TempDir(), "nightly.json")
	if err := os.WriteFile(d.filter, []byte(nightly), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := filter.Parse("nightly", []byte(nightly), layout.Telemetry())
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range set.Files {
		if f.Match(file.Dims) {
			d.selected = append(d.selected, file)
		}
	}
	slices.SortFunc(d.selected, func(a, b synth.File) int { return strings.Compare(a.Key, b.Key) })
	if len(d.selected) == 0 || len(d.selected) == len(set.Files) {
		t.Fatalf("the filter selects %d of %d files: the test needs some of them", len(d.selected), len(set.Files))
	}
	return d
}

// testImage builds a job image of testdata/NAME with a tag of this run
// alone and removes it when the test ends.
func testImage(t *testing.T, name string) string {
	t.Helper()
	clustertest.RequireImages(t, "af/python")
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tag := "af-test/localrun-" + name + ":" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "build", "-q", "--label", "af.test=localrun", "-t", tag, filepath.Join("testdata", name)).CombinedOutput(); err != nil {
		t.Fatalf("docker build %s: %v\n%s", tag, err, out)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "docker", "rmi", "-f", tag).CombinedOutput(); err != nil {
			t.Logf("docker rmi %s: %v\n%s", tag, err, out)
		}
	})
	return tag
}

// clusterResult runs the image over the files on a real cluster, as af
// submit would (scoped, sealed credentials minted by MinIO's STS), and
// returns the reducer's result.
func clusterResult(t *testing.T, c *clustertest.Cluster, image string, files []synth.File) string {
	t.Helper()
	ctx := context.Background()
	var inputs []taskdef.InputFile
	for _, f := range files {
		inputs = append(inputs, taskdef.InputFile{Key: f.Key, Size: int64(len(f.Body))})
	}
	graphID := taskdef.NewID()
	sc, err := submit.SealCredentials(ctx, c.MinIO.Config, c.Pub, submit.CredentialsRequest{
		GraphID: graphID, Image: image, Bucket: clustertest.InputBucket, Prefix: "v2/", Schema: layout.Telemetry().Fields, Files: inputs, TTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	g, err := submit.BuildGraph(submit.GraphOptions{
		GraphID: graphID, Name: "localrun " + image, Owner: "analyst@example.com", Image: image,
		Bucket: clustertest.InputBucket, Prefix: "v2/", Schema: layout.Telemetry().Fields, Files: inputs,
		MaxFilesPerTask: 3, SealedCredentials: sc.Sealed, MaxRunTime: 5 * time.Minute, Deadline: 30 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	c.WaitGraph(t, graphID, 3*time.Minute)
	gs, err := c.Submit.Graph(ctx, graphID)
	if err != nil {
		t.Fatal(err)
	}
	if gs.State != taskdef.GraphCompleted {
		c.LogTaskLogs(t, graphID)
		t.Fatalf("cluster graph %s, want completed", gs.State)
	}
	rc, err := c.Submit.GetArtifact(ctx, g.Tasks[len(g.Tasks)-1].TaskID, -1, taskdef.ResultArtifact)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLocalRunMatchesCluster: af run --local's result over a data dir is
// the cluster's over the same files in S3, for the Python and the Go
// example and for a job that imports numpy; both are what the data says.
func TestLocalRunMatchesCluster(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t, "af/os-count", "af/os-count-go")
	d := makeData(t, 14)
	c := clustertest.Start(t, clustertest.Options{})
	if err := synth.Upload(context.Background(), c.MinIO.S3, clustertest.InputBucket, d.set.Files); err != nil {
		t.Fatal(err)
	}
	c.StartWorker(t, "w-localrun", clustertest.WorkerOptions{Capacity: 2})
	want := d.expected(d.selected)
	for _, tc := range []struct{ name, image string }{
		{"python", "af/os-count"},
		{"go", "af/os-count-go"},
		{"numpy", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			image := tc.image
			if image == "" {
				image = testImage(t, "numpy-job")
			}
			ctx := context.Background()
			sel, err := localrun.Select(ctx, localrun.Source{DataDir: d.dir, Prefix: "v2"}, d.filter, []byte(nightly), t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, f := range sel.Files {
				keys = append(keys, f.Key)
			}
			var wantKeys []string
			for _, f := range d.selected {
				wantKeys = append(wantKeys, f.Key)
			}
			if !slices.Equal(keys, wantKeys) {
				t.Fatalf("selected %q, want %q", keys, wantKeys)
			}
			var result, progress bytes.Buffer
			sum, err := localrun.Run(ctx, localrun.Options{Image: image, Selection: sel, Mappers: 2, Parallel: 2, Result: &result, Progress: &progress})
			if err != nil {
				if strings.Contains(err.Error(), "No module named 'numpy'") {
					t.Fatalf("af/python has no numpy, which issue 14 adds to it (Debian's python3-numpy in images/python/Dockerfile); rebuild it with `make images`: %v", err)
				}
				t.Fatalf("local run: %v\n%s", err, progress.String())
			}
			if sum.Mappers != 2 {
				t.Errorf("%d mappers, want 2 (--mappers 2)", sum.Mappers)
			}
			if result.String() != want {
				t.Fatalf("local result\n%s\nwant\n%s\nprogress:\n%s", result.String(), want, progress.String())
			}
			// The workers' counts: every document in, the bad lines dropped.
			var in, bad int64
			for _, tr := range sum.Tasks[:sum.Mappers] {
				in += tr.Result.Stats.RecordsIn
				bad += tr.Result.Stats.BadLines
			}
			var docs, badLines int
			for _, f := range d.selected {
				docs += f.Docs
				badLines += f.BadLines
			}
			if in != int64(docs) || bad != int64(badLines) {
				t.Errorf("records in %d, bad lines %d; want %d, %d", in, bad, docs, badLines)
			}
			if got := clusterResult(t, c, image, d.selected); got != result.String() {
				t.Fatalf("cluster result\n%s\nlocal result\n%s", got, result.String())
			}
		})
	}
}

// runAF runs the af binary with env added to this process's environment.
func runAF(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testbin.Build(t, "af"), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// TestAfRunLocal drives `af run --local` as a user does: the result alone
// on stdout; a job fault gives the worker's message naming the user's
// file and line, and exit 1; a filter that selects nothing says so.
func TestAfRunLocal(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t, "af/os-count")
	d := makeData(t, 15)
	syntaxImage := testImage(t, "syntax-error-job")
	symlinkImage := testImage(t, "symlink-output-job")
	// --job-dir: the example's own job.py, and the same with a syntax
	// error, mounted over the image's /job: the run reads the mounted file.
	goodJob, badJob := t.TempDir(), t.TempDir()
	jobPy, err := os.ReadFile(filepath.Join("..", "..", "images", "os-count", "job.py"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(goodJob, "job.py"), jobPy, 0o644); err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(jobPy), "def map(key, dims, value, context):", "def map(key, dims, value, context)", 1)
	if broken == string(jobPy) {
		t.Fatal("the example's job.py has no map signature to break")
	}
	if err := os.WriteFile(filepath.Join(badJob, "job.py"), []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	none := filepath.Join(t.TempDir(), "none.json")
	if err := os.WriteFile(none, []byte(strings.Replace(nightly, `["nightly"]`, `["esr"]`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		stdout     string
		stderrHas  []string
		stderrNot  []string
		wantStdout bool
	}{
		{
			name: "python job", args: []string{"run", "--local", "af/os-count", "--filter", d.filter, "--data-dir", d.dir, "--prefix", "v2"},
			code: 0, stdout: d.expected(d.selected), wantStdout: true,
			stderrHas: []string{"2 mapper task(s) + 1 reducer", "[mapper 1/2]", "[reducer]", "af_helper: map done", "completed in"},
		},
		{
			name: "syntax error", args: []string{"run", "--local", syntaxImage, "--filter", d.filter, "--data-dir", d.dir, "--prefix", "v2", "-q"},
			code: 1, wantStdout: true,
			stderrHas: []string{"mapper 1/2 failed: the job exited with code 1: af_helper: /job/job.py line 4: SyntaxError: expected ':'", `File "/job/job.py", line 4`, "def map(key, dims, value, context)"},
			stderrNot: []string{"[mapper 1/2]"},
		},
		{
			// The job's output is hostile: checked as a worker checks it.
			name: "symlink output", args: []string{"run", "--local", symlinkImage, "--filter", d.filter, "--data-dir", d.dir, "--prefix", "v2", "-q"},
			code: 1, wantStdout: true,
			stderrHas: []string{"mapper 1/2 failed: /scratch/output is a symlink; a job must write a regular file"},
			stderrNot: []string{"root:"},
		},
		{
			name: "nothing selected", args: []string{"run", "--local", "af/os-count", "--filter", none, "--data-dir", d.dir, "--prefix", "v2"},
			code: 1, wantStdout: true,
			stderrHas: []string{"the filter selects no files in data dir " + d.dir + " under prefix v2/", fmt.Sprintf("%d files listed, none of them selected", len(d.set.Files))},
		},
		{
			name: "no prefix", args: []string{"run", "--local", "af/os-count", "--filter", d.filter, "--data-dir", d.dir},
			code: 1, wantStdout: true,
			stderrHas: []string{"the filter selects no files in data dir " + d.dir, fmt.Sprintf("all %d files listed are outside the layout", len(d.set.Files)), "give it with --prefix"},
		},
		{
			name: "job dir", args: []string{"run", "--local", "af/os-count", "--filter", d.filter, "--data-dir", d.dir, "--prefix", "v2", "--job-dir", goodJob, "-q"},
			code: 0, stdout: d.expected(d.selected), wantStdout: true,
		},
		{
			name: "job dir with an edit that breaks it", args: []string{"run", "--local", "af/os-count", "--filter", d.filter, "--data-dir", d.dir, "--prefix", "v2", "--job-dir", badJob, "-q"},
			code: 1, wantStdout: true,
			stderrHas: []string{"/job/job.py line", "SyntaxError"},
		},
		{
			name: "job dir that is no directory", args: []string{"run", "--local", "af/os-count", "--filter", d.filter, "--data-dir", d.dir, "--job-dir", filepath.Join(goodJob, "job.py")},
			code: 2, stderrHas: []string{"is not a directory"},
		},
		{
			name: "no --local", args: []string{"run", "af/os-count", "--filter", d.filter, "--data-dir", d.dir},
			code: 2, stderrHas: []string{"af run needs --local"},
		},
		{
			name: "no source", args: []string{"run", "--local", "af/os-count", "--filter", d.filter},
			code: 2, stderrHas: []string{"give --data-dir DIR"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runAF(t, []string{"AF_BUCKET="}, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if tc.wantStdout && stdout != tc.stdout {
				t.Errorf("stdout %q, want %q", stdout, tc.stdout)
			}
			for _, s := range tc.stderrHas {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			for _, s := range tc.stderrNot {
				if strings.Contains(stderr, s) {
					t.Errorf("stderr has %q:\n%s", s, stderr)
				}
			}
		})
	}
}

type sampleDoc struct {
	File  string          `json:"file"`
	Dims  []string        `json:"dims"`
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// checkSample checks `af sample --json` output: n documents, each from a
// selected file with that file's dims, its value a document of the file.
func checkSample(t *testing.T, d testData, stdout string, n int) []sampleDoc {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), n, stdout)
	}
	byKey := map[string]synth.File{}
	for _, f := range d.selected {
		byKey[f.Key] = f
	}
	var docs []sampleDoc
	for _, l := range lines {
		var doc sampleDoc
		if err := json.Unmarshal([]byte(l), &doc); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		f, ok := byKey[doc.File]
		if !ok {
			t.Fatalf("document of %s, which the filter does not select", doc.File)
		}
		if !slices.Equal(doc.Dims, f.Dims) {
			t.Errorf("dims %q, want %q", doc.Dims, f.Dims)
		}
		var v struct {
			Info struct{ AppUpdateChannel string } `json:"info"`
		}
		if err := json.Unmarshal(doc.Value, &v); err != nil || v.Info.AppUpdateChannel != "nightly" {
			t.Errorf("value %s: %v", doc.Value, err)
		}
		if doc.Key == "" || strings.Contains(doc.Key, "\t") {
			t.Errorf("key %q", doc.Key)
		}
		docs = append(docs, doc)
	}
	return docs
}

// TestAfSample: documents as a mapper gets them, readable and as JSON.
func TestAfSample(t *testing.T) {
	t.Parallel()
	d := makeData(t, 16)
	t.Run("json", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, code := runAF(t, nil, "sample", d.filter, "-n", "6", "--json", "--data-dir", d.dir, "--prefix", "v2")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		docs := checkSample(t, d, stdout, 6)
		files := map[string]bool{}
		for _, doc := range docs {
			files[doc.File] = true
		}
		// Six documents from the selection's files, spread over them.
		if len(files) != min(6, len(d.selected)) {
			t.Errorf("documents from %d files, want %d", len(files), min(6, len(d.selected)))
		}
	})
	t.Run("readable", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, code := runAF(t, nil, "sample", d.filter, "--data-dir", d.dir, "--prefix", "v2", "-n", "1")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		first := d.selected[0]
		for _, s := range []string{
			"== file 1 of 1: " + first.Key,
			`dims[2] appUpdateChannel     "nightly"`,
			`dims[0] reason               "saved_session"`,
			"key:   ", "value: {", `"appUpdateChannel": "nightly"`,
		} {
			if !strings.Contains(stdout, s) {
				t.Errorf("output lacks %q:\n%s", s, stdout)
			}
		}
	})
}

// TestS3Sample: with --bucket, af lists and reads S3 with the user's own
// AWS settings (here MinIO's root keys in the standard environment): af
// sample, and af run --local over --sample N files, the first and the
// last of the selection in key order for N = 2.
func TestS3Sample(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t, "af/os-count")
	d := makeData(t, 17)
	m := miniotest.Start(t, "telemetry")
	if err := synth.Upload(context.Background(), m.S3, "telemetry", d.set.Files); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"AWS_ENDPOINT_URL=" + m.Endpoint, "AWS_ACCESS_KEY_ID=" + miniotest.RootUser, "AWS_SECRET_ACCESS_KEY=" + miniotest.RootPassword,
		"AWS_REGION=" + awsconf.DefaultRegion, "AWS_PROFILE=", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AF_BUCKET=telemetry",
	}
	t.Run("run", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, code := runAF(t, env, "run", "--local", "af/os-count", "--filter", d.filter, "--prefix", "v2", "--sample", "2")
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, stderr)
		}
		sample := []synth.File{d.selected[0], d.selected[len(d.selected)-1]}
		if want := d.expected(sample); stdout != want {
			t.Fatalf("result %q, want %q (of %s and %s)\n%s", stdout, want, sample[0].Key, sample[1].Key, stderr)
		}
		for _, s := range []string{fmt.Sprintf("a sample of 2 of the %d files", len(d.selected)), "from s3://telemetry/v2/"} {
			if !strings.Contains(stderr, s) {
				t.Errorf("stderr lacks %q:\n%s", s, stderr)
			}
		}
	})
	t.Run("sample", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, code := runAF(t, env, "sample", d.filter, "--prefix", "v2", "-n", "3", "--json")
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, stderr)
		}
		checkSample(t, d, stdout, 3)
	})
}
