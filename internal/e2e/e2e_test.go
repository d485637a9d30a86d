package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/testbin"

	"github.com/af-project/af/internal/browsertest"
	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/decompress"
	"github.com/af-project/af/internal/filter"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
)

func TestMain(m *testing.M) { testbin.Main(m) }

// binaries builds af and worker once per test binary.
func binaries(t *testing.T) (af, worker string) {
	t.Helper()
	return testbin.Build(t, "af"), testbin.Build(t, "worker")
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// filterData makes telemetry where the original AF Filter.json selects
// some files and not others, uploads it and builds the queue's index.
func filterData(t *testing.T, c *clustertest.Cluster) (want string, selected int) {
	t.Helper()
	set, err := synth.Generate(synth.Spec{
		Reasons: []string{"saved-session", "idle-daily", "android-anr-report"}, Channels: []string{"nightly", "beta"},
		Versions: []string{"30.0a1"}, BuildIDs: []string{"20140301030201", "20140115030201"},
		Days: []string{"20140307", "20140308", "20140309"}, FilesPerPartition: 1, DocsPerFile: 20,
		HistogramSize: 2, Formats: []string{"gz", "xz", "lzma", "zst"}, Seed: 99,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Upload(context.Background(), c.MinIO.S3, clustertest.InputBucket, set.Files); err != nil {
		t.Fatal(err)
	}
	schemaPath := filepath.Join(repoRoot(), "filters", "telemetry_schema.json")
	schemaJSON, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	schema, err := layout.LoadSchema(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit.IndexBuild(context.Background(), taskdef.IndexBuildRequest{Bucket: clustertest.InputBucket, Schema: schemaJSON}); err != nil {
		t.Fatal(err)
	}
	f, err := filter.ParseFile(filepath.Join(repoRoot(), "filters", "Filter.json"), schema)
	if err != nil {
		t.Fatal(err)
	}
	counts := set.CountByOS(func(file synth.File) bool {
		if f.Match(file.Dims) {
			selected++
			return true
		}
		return false
	})
	if selected == 0 || selected == len(set.Files) {
		t.Fatalf("the data set must have files the filter selects and files it does not (%d of %d)", selected, len(set.Files))
	}
	return synth.FormatOSCounts(counts), selected
}

// startWorkerProcess runs the real worker binary against the cluster.
func startWorkerProcess(t *testing.T, c *clustertest.Cluster, bin, id string) {
	t.Helper()
	startWorker(t, c, bin, id, nil, nil, true)
}

// startWorker runs the worker binary with extra flags and environment;
// checkGzip asserts at its end that it logged the gzip decoder it used.
func startWorker(t *testing.T, c *clustertest.Cluster, bin, id string, args, env []string, checkGzip bool) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--queue", c.URL, "--key", c.KeyPath, "--worker-id", id, "--worker-group", "e2e",
		"--scratch", filepath.Join(c.Dir, "scratch-"+id),
		"--grace", "5s"}, args...)...)
	// The worker finds MinIO through the standard AWS_ENDPOINT_URL (the
	// flag's default): it reads S3 only at its own endpoint.
	cmd.Env = append(append(os.Environ(), "AF_TOKEN="+c.WorkToken, "AWS_ENDPOINT_URL="+c.MinIO.Endpoint), env...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		// A build with ISA-L must use it in the real process: a worker
		// that quietly fell back to Go's gzip would pass every other check.
		want := "gzip=" + string(decompress.GzipGo)
		if decompress.BuiltWithISAL {
			want = "gzip=" + string(decompress.GzipISAL)
		}
		if checkGzip && !strings.Contains(logs.String(), want) {
			t.Errorf("worker %s did not log %s at start", id, want)
		}
		if t.Failed() {
			t.Logf("worker %s log:\n%s", id, logs.String())
		}
	})
}

func afCmd(c *clustertest.Cluster, bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), c.MinIO.Env()...)
	cmd.Env = append(cmd.Env, "AF_QUEUE_URL="+c.URL, "AF_TOKEN="+c.SubmitToken)
	return cmd
}

var graphIDPattern = regexp.MustCompile(`graph ([A-Za-z0-9_-]{8,64}) posted`)

func TestSubmitWaitEndToEnd(t *testing.T) {
	t.Parallel()
	afBin, workerBin := binaries(t)
	clustertest.RequireImages(t, "af/os-count")
	c := clustertest.Start(t, clustertest.Options{})
	want, selected := filterData(t, c)
	startWorkerProcess(t, c, workerBin, "e2e-w1")
	startWorkerProcess(t, c, workerBin, "e2e-w2")

	cmd := afCmd(c, afBin, "submit", "filters/Filter.json", "af/os-count", "--owner", "analyst@example.com",
		"--name", "os count e2e", "--max-files-per-task", "2", "--wait")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("af submit --wait: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	// With --wait only the result goes to stdout; what was posted and
	// the links go to stderr with the progress.
	out := stderr.String()
	m := graphIDPattern.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no graph id on stderr:\n%s", out)
	}
	graphID := m[1]
	if !strings.Contains(out, fmt.Sprintf("over %d files", selected)) {
		t.Errorf("output does not say it selected %d files:\n%s", selected, out)
	}
	// It says what the credentials can read and until when.
	if !regexp.MustCompile(`credentials can read \d+ prefix\(es\) at the \w+ level under s3://telemetry/\S*, until 20\d\d-`).MatchString(out) {
		t.Errorf("output does not say what the credentials read:\n%s", out)
	}
	monitorURL := c.URL + "/graphs/" + graphID
	if !strings.Contains(out, "monitor: "+monitorURL) {
		t.Errorf("output lacks the monitor URL %s:\n%s", monitorURL, out)
	}
	if stdout.String() != want {
		t.Fatalf("af submit --wait printed\n%s\nwant only the result\n%s", stdout.String(), want)
	}
	if !strings.Contains(stderr.String(), "tasks ") {
		t.Errorf("no progress on stderr:\n%s", stderr.String())
	}

	// af result and af status agree afterwards.
	res, err := afCmd(c, afBin, "result", graphID).Output()
	if err != nil || string(res) != want {
		t.Fatalf("af result: %v\n%s", err, res)
	}

	// af logs prints a task's log: the worker's lines and the job's own.
	gs, err := c.Submit.Graph(context.Background(), graphID)
	if err != nil {
		t.Fatal(err)
	}
	logs, err := afCmd(c, afBin, "logs", gs.ResultTaskID).CombinedOutput()
	if err != nil || !strings.Contains(string(logs), "[af-worker") || !strings.Contains(string(logs), "result: completed") {
		t.Fatalf("af logs %s: %v\n%s", gs.ResultTaskID, err, logs)
	}
	status, err := afCmd(c, afBin, "status", graphID).CombinedOutput()
	if err != nil || !strings.Contains(string(status), "completed") {
		t.Fatalf("af status: %v\n%s", err, status)
	}

	msgs := c.SMTP.WaitFor(t, 1, time.Minute)
	if !strings.Contains(msgs[0].Text, monitorURL) {
		t.Fatalf("email lacks the monitor link:\n%s", msgs[0].Text)
	}
	// The emailed link carries the graph's read capability: it opens the
	// page without signing in (reads are closed to anonymous callers).
	link := regexp.MustCompile(regexp.QuoteMeta(monitorURL) + `\?cap=[^\s"<>]+`).FindString(msgs[0].Text)
	if link == "" {
		t.Fatalf("email's monitor link has no read capability:\n%s", msgs[0].Text)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), graphID) || !strings.Contains(string(page), `id="app"`) {
		t.Fatalf("monitor link: %s\n%.500s", resp.Status, page)
	}
}

func TestSubmitRefusesBadInputAndPostsNothing(t *testing.T) {
	t.Parallel()
	afBin, _ := binaries(t)
	clustertest.RequireImages(t, "af/os-count")
	c := clustertest.Start(t, clustertest.Options{})
	filterData(t, c)
	dir := t.TempDir()
	nothing := filepath.Join(dir, "nothing.json")
	if err := os.WriteFile(nothing, []byte(`{"version":1,"dimensions":[{"field_name":"reason","allowed_values":"no-such-reason"},{"field_name":"appName","allowed_values":"*"},{"field_name":"appUpdateChannel","allowed_values":"*"},{"field_name":"appVersion","allowed_values":"*"},{"field_name":"appBuildID","allowed_values":"*"},{"field_name":"submission_date","allowed_values":"*"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.json")
	if err := os.WriteFile(broken, []byte("{\"version\": 1,\n \"dimensions\": [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  []string
		want string
		code int // README's exit codes: 2 usage or input, 3 infrastructure
	}{
		{"filter selects nothing", []string{"submit", nothing, "af/os-count"}, nil, "selects no files", 2},
		{"filter not JSON", []string{"submit", broken, "af/os-count"}, nil, "broken.json", 2},
		{"image the workers cannot have", []string{"submit", "filters/Filter.json", "af/no-such-image"}, nil, "af/no-such-image is not on this host", 2},
		{"queue unreachable", []string{"submit", "filters/Filter.json", "af/os-count", "--queue", "http://127.0.0.1:1"}, nil, "is `af serve` running", 3},
		{"STS unreachable", []string{"submit", "filters/Filter.json", "af/os-count"}, []string{"AWS_ENDPOINT_URL=http://127.0.0.1:1"}, "mint the job's S3 credentials", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := afCmd(c, afBin, tc.args...)
			cmd.Env = append(cmd.Env, tc.env...) // the last of a name wins
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("af %v succeeded:\n%s", tc.args, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("af %v said\n%s\nwant it to mention %q", tc.args, out, tc.want)
			}
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != tc.code {
				t.Fatalf("af %v: %v, want exit %d", tc.args, err, tc.code)
			}
		})
	}
	// --dry-run prints the graph and posts nothing.
	out, err := afCmd(c, afBin, "submit", "filters/Filter.json", "af/os-count", "--dry-run", "--owner", "a@example.com").Output()
	if err != nil {
		t.Fatalf("af submit --dry-run: %v", err)
	}
	var g taskdef.Graph
	if err := json.Unmarshal(out, &g); err != nil || len(g.Tasks) < 2 || g.Owner != "a@example.com" {
		t.Fatalf("--dry-run printed no graph (%v):\n%.400s", err, out)
	}
	if strings.Contains(string(out), miniotest.RootPassword) {
		t.Fatal("--dry-run output carries a plaintext credential")
	}
	graphs, err := c.Submit.Graphs(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(graphs) != 0 {
		t.Fatalf("a refused submit posted %d graphs", len(graphs))
	}
}

func TestMonitorPageFollowsARunningGraph(t *testing.T) {
	t.Parallel()
	afBin, workerBin := binaries(t)
	clustertest.RequireImages(t, "af/os-count")
	c := clustertest.Start(t, clustertest.Options{})
	want, _ := filterData(t, c)
	out, err := afCmd(c, afBin, "submit", "filters/Filter.json", "af/os-count", "--owner", "analyst@example.com",
		"--name", "os count, watched", "--max-files-per-task", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("af submit: %v\n%s", err, out)
	}
	m := graphIDPattern.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no graph id in:\n%s", out)
	}
	graphID := m[1]

	b := browsertest.Start(t)
	tab := b.NewTab(t)
	const wait = 3 * time.Minute
	// Reads need an identity: sign in with the submit token first.
	if err := tab.Navigate(c.URL+"/signin?next=/graphs/"+graphID, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := tab.Eval(`document.getElementById('signin-token').value = '`+c.SubmitToken+`'; true`, nil); err != nil {
		t.Fatal(err)
	}
	if err := tab.Click(`#signin-submit`, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := tab.WaitFor(`location.pathname === '/graphs/`+graphID+`'`, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// Nothing runs yet: every mapper is pending.
	if err := tab.WaitFor(`document.querySelectorAll('#tasks .trow[data-state="pending"]').length >= 1`, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := tab.Eval(`window.__noReload = 'same page'; true`, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.Screenshot("monitor-pending"); err != nil {
		t.Fatal(err)
	}
	startWorkerProcess(t, c, workerBin, "watched-w1")
	// Tasks change state live, without a reload.
	if err := tab.WaitFor(`document.querySelectorAll('#tasks .trow[data-state="completed"]').length >= 1`, wait); err != nil {
		t.Fatal(err)
	}
	if err := tab.WaitFor(`document.getElementById('app').dataset.live === 'false'`, wait); err != nil {
		t.Fatal(err)
	}
	var marker string
	if err := tab.Eval(`window.__noReload`, &marker); err != nil || marker != "same page" {
		t.Fatalf("the page reloaded (marker %q, %v)", marker, err)
	}
	var bars int
	if err := tab.Eval(`document.querySelectorAll('#gantt rect.gbar').length`, &bars); err != nil {
		t.Fatal(err)
	}
	gs, err := c.Submit.Graph(context.Background(), graphID)
	if err != nil {
		t.Fatal(err)
	}
	runs := 0
	for _, ts := range gs.Tasks {
		runs += len(ts.Runs)
	}
	if gs.State != taskdef.GraphCompleted || bars != runs {
		t.Fatalf("graph %s with %d runs; the Gantt chart shows %d bars", gs.State, runs, bars)
	}
	if err := tab.WaitFor(`document.getElementById('result-text').dataset.loaded === 'true'`, wait); err != nil {
		t.Fatal(err)
	}
	var shown string
	if err := tab.Eval(`document.getElementById('result-text').textContent`, &shown); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(shown) != strings.TrimSpace(want) {
		t.Fatalf("page shows result\n%s\nwant\n%s", shown, want)
	}
	// The page's counts are the input's (the mappers' records), with the
	// reducer's own apart, not added to them.
	var detail string
	if err := tab.Eval(`document.getElementById('progress-detail').textContent`, &detail); err != nil {
		t.Fatal(err)
	}
	wantDetail := commas(docsIn(t, want)) + " records read · "
	if !strings.Contains(detail, wantDetail) || !strings.Contains(detail, " · reducer: ") || !strings.HasSuffix(detail, fmt.Sprintf("→ %d lines out", strings.Count(want, "\n"))) {
		t.Errorf("the page's counts say %q, want %q and the reducer's apart", detail, wantDetail)
	}
	if _, err := tab.Screenshot("monitor-completed"); err != nil {
		t.Fatal(err)
	}
	// Follow the reducer's result link.
	if err := tab.Click(`#tasks .trow[data-task-id="`+gs.ResultTaskID+`"] a.result-link`, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := tab.WaitFor(`location.pathname.endsWith('/artifacts/public/result.txt') || location.host !== '`+strings.TrimPrefix(c.URL, "http://")+`'`, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	var text string
	if err := tab.Eval(`document.body.innerText`, &text); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(text) != strings.TrimSpace(want) {
		t.Fatalf("result link shows\n%s\nwant\n%s", text, want)
	}
}
