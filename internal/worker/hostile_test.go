package worker_test

// Hostile jobs against the worker's scratch handling (issue 11, attacks 1,
// 2 and the scratch part of 8), all on real components: the job images
// testdata/hostile-scratch (FROM af/python, built as
// af-test/hostile-scratch-python:<hash>) and testdata/hostile-scratch-go
// (static, FROM scratch: af-test/hostile-scratch-go:<hash>) attack through
// /scratch as the task's env says, and each test then checks the attack was refused with
// a message, leaked nothing, and left the worker serving the next task.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
)

// Env names the hostile job reads (testdata/hostile-scratch/job.py).
const (
	envAttack     = "AF_TEST_ATTACK"
	envAttackTask = "AF_TEST_ATTACK_TASK"
	envCanary     = "AF_TEST_CANARY"
	envPlant      = "AF_TEST_PLANT"
	envFillFiles  = "AF_TEST_FILL_FILES"
	envFillBytes  = "AF_TEST_FILL_BYTES"
)

// hostileScratchImage builds the hostile-scratch job in lang (testdata/
// hostile-scratch FROM af/python, or testdata/hostile-scratch-go FROM
// scratch).
func hostileScratchImage(t *testing.T, lang string) string {
	t.Helper()
	return jobImage(t, "hostile-scratch", lang)
}

// canaryFile writes a random secret to a host file outside every scratch
// dir, as the pool's key or /etc/shadow would be.
func canaryFile(t *testing.T) (path, secret string) {
	t.Helper()
	var b [16]byte
	_, _ = rand.Read(b[:])
	secret = "CANARY-" + hex.EncodeToString(b[:])
	path = filepath.Join(t.TempDir(), "host-secret")
	// A line a mapper's output parser would take, so a worker that read
	// it would publish it.
	if err := os.WriteFile(path, []byte(secret+"\t1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, secret
}

// getPage fetches a URL of af serve with the admin token.
func getPage(t *testing.T, c *clustertest.Cluster, url string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(b)
}

// assertNoLeak searches everything a graph's readers can see for secret:
// the task and graph status, every artifact of every run, the worker's and
// server's logs, the owner's emails, and the monitor page with its JSON.
func assertNoLeak(t *testing.T, c *clustertest.Cluster, graphID, secret string) {
	t.Helper()
	gs := graphStatus(t, c, graphID)
	places := map[string]string{
		"graph status":       mustJSON(t, gs),
		"logs":               c.Logs.String(),
		"monitor page":       getPage(t, c, c.URL+"/graphs/"+graphID),
		"monitor graph JSON": getPage(t, c, c.URL+"/api/v1/graphs/"+graphID),
	}
	for _, ts := range gs.Tasks {
		places["task "+ts.Name] = mustJSON(t, taskStatus(t, c, ts.TaskID))
		for _, r := range ts.Runs {
			list, err := c.Submit.Artifacts(context.Background(), ts.TaskID, r.RunID)
			if err != nil {
				t.Fatal(err)
			}
			places["artifacts of "+ts.Name] = mustJSON(t, list)
			for _, a := range list.Artifacts {
				rc, err := c.Submit.GetArtifact(context.Background(), ts.TaskID, r.RunID, a.Name)
				places[fmt.Sprintf("%s run %d artifact %s", ts.Name, r.RunID, a.Name)] = readAll(t, rc, err)
			}
		}
	}
	for i, m := range c.SMTP.Messages() {
		places[fmt.Sprintf("email %d", i)] = m.Subject + "\n" + m.Text + "\n" + m.HTML + "\n" + string(m.Data)
	}
	for where, text := range places {
		if strings.Contains(text, secret) {
			t.Errorf("the host file's secret leaked into the %s", where)
		}
	}
}

// normalGraphCompletes submits an af/os-count graph and waits for the
// worker (the one that just met the attack) to complete it correctly.
func normalGraphCompletes(t *testing.T, c *clustertest.Cluster, seed uint64) {
	t.Helper()
	set := smallData(t, 3, 10, seed)
	g := graphFor(t, c, "af/os-count", upload(t, c, set))
	createGraph(t, c, g)
	c.WaitGraph(t, g.GraphID, 2*time.Minute)
	if gs := graphStatus(t, c, g.GraphID); gs.State != taskdef.GraphCompleted {
		c.LogTaskLogs(t, g.GraphID)
		t.Fatalf("the next, normal graph: %s, want completed", gs.State)
	}
	if got, want := result(t, c, g), synth.FormatOSCounts(set.CountByOS(nil)); got != want {
		t.Fatalf("the next graph's result\n%s\nwant\n%s", got, want)
	}
}

// attackedTasks checks every task of kind failed in one run with want in
// its message, and returns them.
func attackedTasks(t *testing.T, gs taskdef.GraphStatus, kind taskdef.Kind, want string) []taskdef.TaskStatus {
	t.Helper()
	var hit []taskdef.TaskStatus
	for _, ts := range gs.Tasks {
		if ts.Kind != kind {
			continue
		}
		hit = append(hit, ts)
		r := lastRun(ts)
		if ts.State != taskdef.StateFailed || len(ts.Runs) != 1 {
			t.Errorf("attacked %s %s: %s, runs %+v; want one failed run", kind, ts.Name, ts.State, ts.Runs)
		}
		if !strings.Contains(r.Message, want) {
			t.Errorf("attacked %s %s: message %q, want %q", kind, ts.Name, r.Message, want)
		}
	}
	if len(hit) == 0 {
		t.Fatalf("no %s in the graph", kind)
	}
	return hit
}

type hostileCase struct {
	lang string
	kind taskdef.Kind
}

// hostileCases are the jobs that attack through their output: Python and
// Go, mapper and reducer.
func hostileCases() []hostileCase {
	var cs []hostileCase
	for _, lang := range []string{"python", "go"} {
		for _, kind := range []taskdef.Kind{taskdef.KindMapper, taskdef.KindReducer} {
			cs = append(cs, hostileCase{lang, kind})
		}
	}
	return cs
}

// TestHostileSymlinkOutputIsRefused: attack 1. A mapper or a reducer
// replaces /scratch/output with a symlink to a host file and plants
// symlinks at the names the worker's own files once had in /scratch.
func TestHostileSymlinkOutputIsRefused(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t, "af/os-count")
	for _, tc := range hostileCases() {
		kind := tc.kind
		t.Run(tc.lang+"/"+string(kind), func(t *testing.T) {
			t.Parallel()
			image := hostileScratchImage(t, tc.lang)
			c := clustertest.Start(t, clustertest.Options{})
			canary, secret := canaryFile(t)
			plant := filepath.Join(t.TempDir(), "planted")
			task := "map"
			if kind == taskdef.KindReducer {
				task = "reduce"
			}
			set := smallData(t, 6, 20, 31)
			g := withEnv(graphFor(t, c, image, upload(t, c, set)), map[string]string{
				envAttack: "symlink-output", envAttackTask: task, envCanary: canary, envPlant: plant,
			})
			createGraph(t, c, g)
			c.StartWorker(t, uniqueID("symlink"), clustertest.WorkerOptions{Capacity: 1})
			c.WaitGraph(t, g.GraphID, 2*time.Minute)

			gs := graphStatus(t, c, g.GraphID)
			if gs.State != taskdef.GraphFailed {
				t.Fatalf("graph %s, want failed", gs.State)
			}
			attackedTasks(t, gs, kind, "/scratch/output is a symlink; a job must write a regular file")
			if kind == taskdef.KindReducer {
				for _, ts := range gs.Tasks {
					if ts.Kind == taskdef.KindMapper && ts.State != taskdef.StateCompleted {
						t.Errorf("mapper %s: %s, want completed", ts.Name, ts.State)
					}
				}
			}
			c.SMTP.WaitFor(t, 1, time.Minute)
			assertNoLeak(t, c, g.GraphID, secret)
			if _, err := os.Lstat(plant); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the worker wrote through a planted symlink: %s exists (%v)", plant, err)
			}
			if b, err := os.ReadFile(canary); err != nil || !strings.HasPrefix(string(b), secret) {
				t.Errorf("the host file changed: %q %v", b, err)
			}
			normalGraphCompletes(t, c, 32)
		})
	}
}

// TestHostileFIFOOutputFailsAtOnce: attack 2. A job leaving a FIFO at
// /scratch/output fails at once, and its worker slot serves the next task.
func TestHostileFIFOOutputFailsAtOnce(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t, "af/os-count")
	for _, tc := range hostileCases() {
		kind := tc.kind
		t.Run(tc.lang+"/"+string(kind), func(t *testing.T) {
			t.Parallel()
			image := hostileScratchImage(t, tc.lang)
			c := clustertest.Start(t, clustertest.Options{})
			task := "map"
			if kind == taskdef.KindReducer {
				task = "reduce"
			}
			set := smallData(t, 3, 20, 33)
			g := withEnv(graphFor(t, c, image, upload(t, c, set)), map[string]string{envAttack: "fifo-output", envAttackTask: task})
			createGraph(t, c, g)
			c.StartWorker(t, uniqueID("fifo"), clustertest.WorkerOptions{Capacity: 1})
			c.WaitGraph(t, g.GraphID, 2*time.Minute)
			gs := graphStatus(t, c, g.GraphID)
			if gs.State != taskdef.GraphFailed {
				t.Fatalf("graph %s, want failed", gs.State)
			}
			for _, ts := range attackedTasks(t, gs, kind, "/scratch/output is a FIFO; a job must write a regular file") {
				r := lastRun(ts)
				if r.Started == nil || r.Resolved == nil || r.Resolved.Sub(*r.Started) > time.Minute {
					t.Errorf("the FIFO output's run: started %v, resolved %v; want it failed within a minute", r.Started, r.Resolved)
				}
			}
			normalGraphCompletes(t, c, 34)
		})
	}
}

// TestHostileJobNeverOpeningItsInputIsFreed: a job that never opens its
// input FIFO holds its slot only until `af cancel`, maxRunTime or the
// worker's shutdown.
func TestHostileJobNeverOpeningItsInputIsFreed(t *testing.T) {
	t.Parallel()
	image := hostileScratchImage(t, "python")
	clustertest.RequireImages(t, "af/os-count")
	start := func(t *testing.T, c *clustertest.Cluster, maxRunTime int) (taskdef.Graph, []string) {
		set := smallData(t, 3, 20, 35)
		g := withEnv(graphFor(t, c, image, upload(t, c, set)), map[string]string{envAttack: "no-input", envAttackTask: "map"})
		if maxRunTime > 0 {
			for i := range g.Tasks {
				g.Tasks[i].Task.Payload.MaxRunTime = maxRunTime
			}
		}
		createGraph(t, c, g)
		return g, mapperIDs(g)
	}
	t.Run("af cancel", func(t *testing.T) {
		t.Parallel()
		c := clustertest.Start(t, clustertest.Options{Lease: 3 * time.Second})
		g, mappers := start(t, c, 0)
		id := uniqueID("cancel")
		c.StartWorker(t, id, clustertest.WorkerOptions{Capacity: 1})
		waitRunningInContainer(t, c, id, mappers)
		if _, err := c.Submit.CancelGraph(context.Background(), g.GraphID); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, time.Minute, "the canceled task's container is gone", func() (bool, string) {
			n := len(jobContainers(t, id))
			return n == 0, fmt.Sprintf("%d containers", n)
		})
		normalGraphCompletes(t, c, 36)
	})
	t.Run("maxRunTime", func(t *testing.T) {
		t.Parallel()
		c := clustertest.Start(t, clustertest.Options{})
		g, _ := start(t, c, 3)
		c.StartWorker(t, uniqueID("maxrun"), clustertest.WorkerOptions{Capacity: 1})
		c.WaitGraph(t, g.GraphID, 2*time.Minute)
		attackedTasks(t, graphStatus(t, c, g.GraphID), taskdef.KindMapper, "max run time exceeded")
		normalGraphCompletes(t, c, 37)
	})
	t.Run("worker shutdown", func(t *testing.T) {
		t.Parallel()
		c := clustertest.Start(t, clustertest.Options{})
		_, mappers := start(t, c, 0)
		id := uniqueID("shutdown")
		w := c.StartWorker(t, id, clustertest.WorkerOptions{Capacity: 1, Grace: time.Second})
		task := waitRunningInContainer(t, c, id, mappers)
		stopped := make(chan error, 1)
		sent := time.Now()
		go func() { stopped <- w.Stop() }()
		select {
		case err := <-stopped:
			if err != nil {
				t.Fatalf("worker stop: %v", err)
			}
		case <-time.After(45 * time.Second):
			t.Fatal("the worker did not stop within 45 s of shutdown with a 1 s grace")
		}
		t.Logf("stopped in %s", time.Since(sent))
		r := taskStatus(t, c, task).Runs[0]
		if r.State != taskdef.StateException || r.ReasonResolved != taskdef.ReasonWorkerShutdown {
			t.Errorf("the stopped run: %s/%s, want exception/%s", r.State, r.ReasonResolved, taskdef.ReasonWorkerShutdown)
		}
		if n := len(jobContainers(t, id)); n != 0 {
			t.Errorf("the stopped worker left %d containers", n)
		}
	})
}

// TestHostileScratchFillIsStopped: attack 8's disk part. A job writing
// past the worker's --max-scratch-bytes is stopped and failed, and the
// worker serves the next task.
func TestHostileScratchFillIsStopped(t *testing.T) {
	t.Parallel()
	image := hostileScratchImage(t, "python")
	clustertest.RequireImages(t, "af/os-count")
	for _, tc := range []struct {
		name         string
		files, bytes int
	}{
		// Each file under the 8 MiB per-file limit, 12 MiB in all; then
		// the job sleeps, so only the watcher can end it.
		{"many files, then sleeps", 3, 4 << 20},
		// The kernel stops the file a byte past the limit (EFBIG), the
		// job exits 1, and the last look at /scratch says why.
		{"one file past the limit", 1, 12 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := clustertest.Start(t, clustertest.Options{})
			set := smallData(t, 3, 20, 38)
			g := withEnv(graphFor(t, c, image, upload(t, c, set)), map[string]string{
				envAttack: "fill", envAttackTask: "map", envFillFiles: fmt.Sprint(tc.files), envFillBytes: fmt.Sprint(tc.bytes),
			})
			createGraph(t, c, g)
			id := uniqueID("fill")
			c.StartWorker(t, id, clustertest.WorkerOptions{Capacity: 1, MaxScratchBytes: 8 << 20})
			c.WaitGraph(t, g.GraphID, 2*time.Minute)
			attackedTasks(t, graphStatus(t, c, g.GraphID), taskdef.KindMapper,
				"the job wrote more than 8.0 MiB to /scratch (the worker's --max-scratch-bytes); write less or ask the operator")
			if n := len(jobContainers(t, id)); n != 0 {
				t.Errorf("%d containers left", n)
			}
			normalGraphCompletes(t, c, 39)
		})
	}
}
