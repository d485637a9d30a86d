package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/taskdef"
)

// TestResubmitRunsTheSameGraphAgain: af submit records what the graph
// was made from (af provenance shows the image id it pinned, the filter,
// the job spec read from the image, the env, the options and every input
// with the ETag S3 gives it); after the image's tag moved to another job,
// af resubmit runs the pinned build over the same files and gives the
// same result, as a new graph that says whose run it repeats. A file
// rewritten behind a stale index fails the resubmitted graph at the
// worker (the tasks pin the ETags), and once the index knows, af
// resubmit refuses before posting, naming the file.
func TestResubmitRunsTheSameGraphAgain(t *testing.T) {
	t.Parallel()
	afBin, workerBin := binaries(t)
	clustertest.RequireImages(t, "af/os-count")
	c := clustertest.Start(t, clustertest.Options{})
	want, selected := filterData(t, c)
	ctx := context.Background()
	startWorkerProcess(t, c, workerBin, "resubmit-w1")
	startWorkerProcess(t, c, workerBin, "resubmit-w2")

	tag := fmt.Sprintf("af-e2e/resubmit:%d", time.Now().UnixNano())
	idA := buildLocal(t, tag, map[string]string{"marker": t.Name()})
	filterJSON, err := os.ReadFile(filepath.Join(repoRoot(), "filters", "Filter.json"))
	if err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := runAF(t, afCmd(c, afBin, "submit", "filters/Filter.json", tag, "--env", "NOTE=first run",
		"--max-files-per-task", "1", "--owner", "analyst@example.com", "--wait"))
	if code != 0 || stdout != want {
		t.Fatalf("af submit: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	m := graphIDPattern.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no graph id on stderr:\n%s", stderr)
	}
	first := m[1]

	// What it was made from.
	code, stdout, stderr = runAF(t, afCmd(c, afBin, "provenance", first, "--json"))
	if code != 0 {
		t.Fatalf("af provenance --json: exit %d\n%s", code, stderr)
	}
	var p taskdef.Provenance
	if err := json.Unmarshal([]byte(stdout), &p); err != nil {
		t.Fatal(err)
	}
	if p.GraphID != first || p.MadeBy != "af submit" || p.Image.Asked != tag || p.Image.Ref != idA || p.Image.Source != "image-id" {
		t.Errorf("provenance names graph %s made by %q, image %+v; want %s, af submit, %s pinned to %s", p.GraphID, p.MadeBy, p.Image, first, tag, idA)
	}
	compact := func(b []byte) string {
		var out bytes.Buffer
		if err := json.Compact(&out, b); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		return out.String()
	}
	if compact(p.Filter) != compact(filterJSON) || compact(p.Rendered) != compact(filterJSON) || p.FilterName != "filters/Filter.json" {
		t.Errorf("provenance filter %q (%s), want Filter.json as given", p.Filter, p.FilterName)
	}
	if !strings.Contains(p.JobSpec, "language: python") || p.Env["NOTE"] != "first run" || p.Job.MaxFilesPerTask != 1 || p.Job.Owner != "analyst@example.com" {
		t.Errorf("provenance job spec %q, env %v, job %+v", p.JobSpec, p.Env, p.Job)
	}
	if len(p.Inputs) != selected || len(p.ETags) != selected || p.Bucket != clustertest.InputBucket {
		t.Fatalf("provenance lists %d inputs and %d ETags from %s, want the %d selected", len(p.Inputs), len(p.ETags), p.Bucket, selected)
	}
	for i, in := range p.Inputs {
		head, err := c.MinIO.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(p.Bucket), Key: aws.String(in.Key)})
		if err != nil {
			t.Fatal(err)
		}
		if tag := strings.Trim(aws.ToString(head.ETag), `"`); p.ETags[i] != tag || in.Size != aws.ToInt64(head.ContentLength) {
			t.Errorf("input %s recorded as %d bytes, ETag %s; S3 has %d bytes, ETag %s", in.Key, in.Size, p.ETags[i], aws.ToInt64(head.ContentLength), tag)
		}
	}
	code, text, _ := runAF(t, afCmd(c, afBin, "provenance", first))
	if code != 0 || !strings.Contains(text, idA+" (asked "+tag+"; pinned by image-id)") || !strings.Contains(text, fmt.Sprintf("inputs:     %d files", selected)) || !strings.Contains(text, "NOTE=first run") {
		t.Errorf("af provenance:\n%s", text)
	}

	// The tag moves to a job whose result differs.
	buildLocal(t, tag, map[string]string{"job.py": `
def map(key, dims, value, context):
    context.write("retagged", 1)
def reduce(key, values, context):
    context.write(key, sum(values))
`})
	code, stdout, stderr = runAF(t, afCmd(c, afBin, "resubmit", first, "--wait"))
	if code != 0 || stdout != want {
		t.Fatalf("af resubmit %s --wait: exit %d\nstdout:\n%s\nwant the first run's result\n%s\nstderr:\n%s", first, code, stdout, want, stderr)
	}
	m = graphIDPattern.FindStringSubmatch(stderr)
	if m == nil || m[1] == first {
		t.Fatalf("af resubmit posted no new graph:\n%s", stderr)
	}
	again := m[1]
	if !strings.Contains(stderr, fmt.Sprintf("%d input files", selected)) || !strings.Contains(stderr, "unchanged in the index") {
		t.Errorf("af resubmit did not say it checked the inputs:\n%s", stderr)
	}
	q, err := c.Submit.Provenance(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	if q.MadeBy != "af resubmit" || q.ResubmitOf != first || q.Image != p.Image || q.Env["NOTE"] != "first run" || len(q.Inputs) != selected || q.Job.MaxFilesPerTask != 1 {
		t.Errorf("the resubmitted graph's record: made by %q, of %q, image %+v, env %v, %d inputs, job %+v", q.MadeBy, q.ResubmitOf, q.Image, q.Env, len(q.Inputs), q.Job)
	}
	// The same mappers, each over the same files.
	mappersOf := func(r taskdef.Provenance) []string {
		var out []string
		next := 0
		for _, n := range r.Loads {
			var keys []string
			for _, in := range r.Inputs[next : next+n] {
				keys = append(keys, in.Key)
			}
			slices.Sort(keys)
			out = append(out, strings.Join(keys, " "))
			next += n
		}
		slices.Sort(out)
		return out
	}
	if a, b := mappersOf(p), mappersOf(q); len(a) < 2 || !slices.Equal(a, b) {
		t.Errorf("the resubmitted graph's mappers read\n%q\nthe first's\n%q", b, a)
	}
	gs, err := c.Submit.Graph(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	pinned := 0
	for _, ts := range gs.Tasks {
		td, err := c.Submit.TaskDefinition(ctx, ts.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		if td.Payload.Image != idA {
			t.Errorf("task %s of the resubmitted graph runs %s, want %s", ts.TaskID, td.Payload.Image, idA)
		}
		if td.Payload.Kind == taskdef.KindMapper {
			tags := taskdef.SplitETags(td.Payload.InputETags)
			if len(tags) != len(td.Payload.Inputs) || slices.Contains(tags, "") {
				t.Errorf("mapper %s pins %d ETags for %d inputs: %q", ts.TaskID, len(tags), len(td.Payload.Inputs), td.Payload.InputETags)
			}
			pinned += len(tags)
		}
	}
	if pinned != selected {
		t.Errorf("the mappers pin %d ETags, want %d", pinned, selected)
	}

	// A file rewritten while the index still has its old version: the
	// check passes, and the worker refuses to read another version.
	key := p.Inputs[0].Key
	if _, err := c.MinIO.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(p.Bucket), Key: aws.String(key), Body: strings.NewReader("rewritten")}); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runAF(t, afCmd(c, afBin, "resubmit", first, "--wait", "--json"))
	if code != 1 {
		t.Fatalf("af resubmit after a rewrite the index does not know: exit %d, want 1 (the graph failed)\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var js submitJSON
	if err := json.Unmarshal([]byte(stdout), &js); err != nil || js.State != taskdef.GraphFailed {
		t.Fatalf("--json: %v %s", err, stdout)
	}
	failed, err := c.Submit.Graph(ctx, js.GraphID)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ts := range failed.Tasks {
		for _, r := range ts.Runs {
			if strings.Contains(r.Message, key+" is no longer the version this graph was made with") {
				found = true
			}
		}
	}
	if !found {
		c.LogTaskLogs(t, js.GraphID)
		t.Errorf("no task of graph %s failed naming %s as rewritten", js.GraphID, key)
	}

	// Once the index knows, af resubmit refuses before posting.
	if _, err := c.Submit.IndexBuild(ctx, taskdef.IndexBuildRequest{}); err != nil {
		t.Fatal(err)
	}
	before, err := c.Submit.Graphs(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runAF(t, afCmd(c, afBin, "resubmit", first))
	if code != 2 || !strings.Contains(stderr, "1 was rewritten (its ETag or size differs: "+key+")") || !strings.Contains(stderr, "af submit") {
		t.Fatalf("af resubmit of a rewritten input: exit %d, want 2 naming %s\n%s", code, key, stderr)
	}
	after, err := c.Submit.Graphs(ctx, 100)
	if err != nil || len(after) != len(before) {
		t.Fatalf("the refused resubmission posted a graph (%d graphs before, %d after): %v", len(before), len(after), err)
	}

	// A graph without a record (made by hand) says so.
	code, _, stderr = runAF(t, afCmd(c, afBin, "resubmit", "no-such-graph"))
	if code != 2 || !strings.Contains(stderr, "no-such-graph") {
		t.Errorf("af resubmit of an unknown graph: exit %d\n%s", code, stderr)
	}
	// A graph posted without a record (by hand, or by an older af) says so.
	byHand, err := submit.BuildGraph(submit.GraphOptions{Name: "by hand", Image: idA, Bucket: p.Bucket, Files: p.Inputs[:1], Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit.CreateGraph(ctx, byHand); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runAF(t, afCmd(c, afBin, "resubmit", byHand.GraphID))
	if code != 2 || !strings.Contains(stderr, "graph "+byHand.GraphID+" has no record of what it was made from") {
		t.Errorf("af resubmit of a graph without a record: exit %d\n%s", code, stderr)
	}
}
