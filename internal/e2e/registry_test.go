package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/registrytest"
	"github.com/af-project/af/internal/taskdef"
)

// buildLocal builds a job image FROM af/os-count with files added under
// /job (a layer of the test's own, so the engine holds it only while the
// test does) on this host's engine, with no registry, and returns its
// image id.
func buildLocal(t *testing.T, tag string, files map[string]string) string {
	t.Helper()
	inImage := make(map[string]string, len(files))
	for name, body := range files {
		inImage["/job/"+name] = body
	}
	return registrytest.Build(t, tag, "af/os-count", inImage)
}

// buildAndPush is buildLocal, then pushes the image as tag and returns its
// digest and image id.
func buildAndPush(t *testing.T, reg *registrytest.Server, tag string, files map[string]string) (digest, id string) {
	t.Helper()
	id = buildLocal(t, tag, files)
	return reg.Push(t, tag), id
}

// TestRegistryPinnedDigest: af submit resolves a registry tag to its
// digest at a real registry (Debian's docker-registry on loopback, with
// basic auth from Docker's config), the tasks and their sealed credentials
// carry NAME@sha256:…, and a worker started with --pull that lacks the
// image pulls exactly that digest, even after the tag was moved to another
// image, and computes the right result. An image loaded by hand is pinned
// by its image id.
func TestRegistryPinnedDigest(t *testing.T) {
	t.Parallel()
	afBin, workerBin := binaries(t)
	clustertest.RequireImages(t, "af/os-count")
	reg := registrytest.Start(t)
	c := clustertest.Start(t, clustertest.Options{})
	want, _ := filterData(t, c)
	ctx := context.Background()

	repo := reg.Host + "/af-e2e/os-count"
	tag := repo + ":v1"
	digestA, idA := buildAndPush(t, reg, tag, map[string]string{"marker": t.Name() + time.Now().String()})

	cmd := afCmd(c, afBin, "submit", "filters/Filter.json", tag, "--owner", "analyst@example.com", "--max-files-per-task", "2")
	cmd.Env = append(cmd.Env, "DOCKER_CONFIG="+reg.DockerConfig)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("af submit %s: %v\n%s\n%s", tag, err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), digestA) {
		t.Errorf("af submit did not say the digest it pinned (%s):\n%s", digestA, stderr.String())
	}
	m := graphIDPattern.FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no graph id in the output:\n%s", stdout.String())
	}
	graphID := m[1]
	pinned := repo + "@" + digestA
	gs, err := c.Submit.Graph(ctx, graphID)
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range gs.Tasks {
		td, err := c.Submit.TaskDefinition(ctx, ts.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		if td.Payload.Image != pinned {
			t.Fatalf("task %s runs image %q, want the pinned %s", ts.TaskID, td.Payload.Image, pinned)
		}
	}

	// The tag moves to another job (one whose result differs) after the
	// submit; then neither image is on the engine.
	digestB, idB := buildAndPush(t, reg, tag, map[string]string{"job.py": `
def map(key, dims, value, context):
    context.write("retagged", 1)
def reduce(key, values, context):
    context.write(key, sum(values))
`})
	if digestB == digestA {
		t.Fatal("the second image has the first one's digest")
	}
	reg.Docker(t, "rmi", "-f", idA, idB)
	if err := exec.Command("docker", "image", "inspect", pinned).Run(); err == nil {
		t.Fatalf("%s is still on the engine after docker rmi", pinned)
	}

	startPullingWorker(t, c, workerBin, "e2e-pull", reg.DockerConfig)
	c.WaitGraph(t, graphID, 3*time.Minute)
	res, err := afCmd(c, afBin, "result", graphID).CombinedOutput()
	if err != nil || string(res) != want {
		c.LogTaskLogs(t, graphID)
		t.Fatalf("af result: %v\n%s\nwant the pinned image's result\n%s", err, res, want)
	}
	if err := exec.Command("docker", "image", "inspect", pinned).Run(); err != nil {
		t.Errorf("the worker did not pull %s: %v", pinned, err)
	}
	_ = exec.Command("docker", "rmi", "-f", pinned).Run()

	// An image loaded by hand (no registry) is pinned by its image id.
	out, err := exec.Command("docker", "image", "inspect", "-f", "{{.Id}}", "af/os-count").Output()
	if err != nil {
		t.Fatal(err)
	}
	localID := strings.TrimSpace(string(out))
	dry := afCmd(c, afBin, "submit", "filters/Filter.json", "af/os-count", "--dry-run", "--owner", "a@example.com")
	stdout.Reset()
	stderr.Reset()
	dry.Stdout, dry.Stderr = &stdout, &stderr
	if err := dry.Run(); err != nil {
		t.Fatalf("af submit --dry-run af/os-count: %v\n%s", err, stderr.String())
	}
	var g taskdef.Graph
	if err := json.Unmarshal(stdout.Bytes(), &g); err != nil || len(g.Tasks) < 2 {
		t.Fatalf("--dry-run printed no graph (%v)", err)
	}
	for _, task := range g.Tasks {
		if task.Task.Payload.Image != localID {
			t.Fatalf("a hand-loaded af/os-count is pinned as %q, want its image id %s", task.Task.Payload.Image, localID)
		}
	}
	if !strings.Contains(stderr.String(), "pinned by its image id "+localID) {
		t.Errorf("af submit did not say it pinned the image id:\n%s", stderr.String())
	}
}

// startPullingWorker runs the worker binary with --pull and the
// registry's credentials in DOCKER_CONFIG.
func startPullingWorker(t *testing.T, c *clustertest.Cluster, bin, id, dockerConfig string) {
	t.Helper()
	startWorker(t, c, bin, id, []string{"--pull"}, []string{"DOCKER_CONFIG=" + dockerConfig}, false)
}
