package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
)

// TestScheduleImagePin runs `af schedule create` and `af schedule update
// --image` against a running server: a local engine image is pinned to
// its image id (said on stderr, not under -q), a registry name stays a
// tag (each run resolves it), --no-image-check keeps a local name
// unpinned, and an image this host does not have is a usage error naming
// it.
func TestScheduleImagePin(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t, "af/os-count-go")
	out, err := exec.Command("docker", "image", "inspect", "-f", "{{.Id}}", "af/os-count-go").Output()
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(string(out))
	c := clustertest.Start(t, clustertest.Options{})
	set, err := synth.Generate(synth.Spec{
		Reasons: []string{"saved-session"}, Channels: []string{"nightly"}, Versions: []string{"30.0a1"},
		BuildIDs: []string{"20140301030201"}, Days: []string{"20140307"}, FilesPerPartition: 1, DocsPerFile: 1, Seed: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Upload(context.Background(), c.MinIO.S3, clustertest.InputBucket, set.Files); err != nil {
		t.Fatal(err)
	}
	remote := []string{"--queue", c.URL, "--token", c.SubmitToken}
	af := func(args ...string) (string, string, int) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(append(args, remote...), &stdout, &stderr)
		return stdout.String(), stderr.String(), code
	}
	if _, errOut, code := af("index", "build", "--bucket", clustertest.InputBucket); code != 0 {
		t.Fatalf("index build: exit %d: %s", code, errOut)
	}
	image := func(name string) string {
		t.Helper()
		out, errOut, code := af("schedule", "show", name, "--json")
		if code != 0 {
			t.Fatalf("schedule show %s: exit %d: %s", name, code, errOut)
		}
		var st taskdef.ScheduleStatus
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatal(err)
		}
		return st.Image
	}
	const tmpl = "../filters/filter_template.json"

	_, errOut, code := af("schedule", "create", "daily", "--cron", "5 16 * * *", tmpl, "af/os-count-go")
	if code != 0 {
		t.Fatalf("create: exit %d: %s", code, errOut)
	}
	if got := image("daily"); got != id {
		t.Errorf("schedule image %q; want af/os-count-go's image id %s", got, id)
	}
	for _, w := range []string{"pinned to " + id, "until `af schedule update daily --image af/os-count-go` re-pins it"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("create's stderr lacks %q:\n%s", w, errOut)
		}
	}

	// -q: the same pin, nothing on stderr.
	if _, errOut, code := af("schedule", "update", "daily", "--image", "af/os-count-go", "-q"); code != 0 || errOut != "" || image("daily") != id {
		t.Errorf("update --image -q: exit %d, stderr %q, image %s; want 0, nothing, %s", code, errOut, image("daily"), id)
	}

	// A registry name stays a tag: each run resolves it.
	reg := "127.0.0.1:5999/team/job:v1"
	_, errOut, code = af("schedule", "update", "daily", "--image", reg)
	if code != 0 || image("daily") != reg || !strings.Contains(errOut, "stays a tag") || !strings.Contains(errOut, "reaches the next run") {
		t.Errorf("update --image %s: exit %d, image %s, stderr %q; want the tag kept and said to be resolved per run", reg, code, image("daily"), errOut)
	}

	// --no-image-check: a local name is kept, and said to be unpinned.
	_, errOut, code = af("schedule", "create", "loose", "--cron", "@daily", "--no-image-check", tmpl, "af/os-count-go")
	if code != 0 || image("loose") != "af/os-count-go" || !strings.Contains(errOut, "not pinned") {
		t.Errorf("create --no-image-check: exit %d, image %s, stderr %q; want af/os-count-go kept, said unpinned", code, image("loose"), errOut)
	}

	// An image this host does not have: exit 2, named, nothing created.
	_, errOut, code = af("schedule", "create", "missing", "--cron", "@daily", tmpl, "af-test/no-such-image-for-schedule")
	if code != exitUsage || !strings.Contains(errOut, "af-test/no-such-image-for-schedule") || !strings.Contains(errOut, "build it") {
		t.Errorf("create with a missing image: exit %d, stderr %q; want 2 naming it and how to build it", code, errOut)
	}
	if _, _, code := af("schedule", "show", "missing"); code != exitUsage {
		t.Errorf("schedule show missing: exit %d; want 2 (not created)", code)
	}
}
