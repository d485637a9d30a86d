package worker_test

// Crafted-graph tests of issue 11 (items 3 and 4), against real MinIO, the
// queue server and the Docker engine: a sealed CREDENTIALS value copied
// out of one graph's public task definition, and an envelope sealed with
// the public pool key that names the attacker's endpoint.

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
)

// otherPartition is data in a sibling channel (beta) of smallData's
// nightly one: in the input bucket, but never selected by graph A.
func otherPartition(t *testing.T, seed uint64) *synth.Set {
	t.Helper()
	set, err := synth.Generate(synth.Spec{
		Prefix: "v2", Reasons: []string{"saved-session"}, Channels: []string{"beta"}, Versions: []string{"28.0a1"},
		BuildIDs: []string{"20131029030201"}, Days: []string{"20131029"}, FilesPerPartition: 2,
		DocsPerFile: 10, Formats: []string{"gz"}, Seed: seed,
	})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// graphWithBlob is a graph over files carrying blob as its credentials,
// as anyone holding a submit token can post.
func graphWithBlob(t *testing.T, graphID string, files []taskdef.InputFile, blob string) taskdef.Graph {
	t.Helper()
	g, err := submit.BuildGraph(submit.GraphOptions{
		GraphID: graphID, Name: "crafted", Owner: "mallory@example.com", Image: "af/os-count",
		Bucket: clustertest.InputBucket, Prefix: "v2/", Schema: layout.Telemetry().Fields, Files: files,
		SealedCredentials: blob, MaxRunTime: 5 * time.Minute, Deadline: 30 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// wantRefused checks that the task ended in exception/malformed-payload
// with every piece of want in its message, and no secret.
func wantRefused(t *testing.T, c *clustertest.Cluster, taskID string, want []string, secrets ...string) {
	t.Helper()
	waitUntil(t, 90*time.Second, "task "+taskID+" resolves", func() (bool, string) {
		ts := taskStatus(t, c, taskID)
		return ts.State != taskdef.StatePending && ts.State != taskdef.StateRunning && ts.State != taskdef.StateUnscheduled, string(ts.State)
	})
	ts := taskStatus(t, c, taskID)
	r := lastRun(ts)
	if ts.State != taskdef.StateException || r.ReasonResolved != taskdef.ReasonMalformedPayload {
		t.Fatalf("task %s: %s/%s (%s), want exception/malformed-payload", taskID, ts.State, r.ReasonResolved, r.Message)
	}
	for _, w := range want {
		if !strings.Contains(r.Message, w) {
			t.Errorf("message %q lacks %q", r.Message, w)
		}
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(r.Message, s) {
			t.Errorf("message quotes a secret: %q", r.Message)
		}
	}
	if r.Stats.Files != 0 {
		t.Errorf("refused task read %d files", r.Stats.Files)
	}
}

// TestCopiedCredentialsRefused is attack 3: graph A's sealed credentials,
// copied into a new graph B over A's own inputs, into a task added to
// graph A itself (A') that reads a file A's filter never selected, and
// into another task added to graph A that reads only A's own inputs but
// runs another image (the attacker's code), are refused before any S3
// request; the worker then runs graph A.
func TestCopiedCredentialsRefused(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t, "af/os-count", "af/os-count-go")
	c := clustertest.Start(t, clustertest.Options{})
	setA := smallData(t, 3, 20, 31)
	filesA := upload(t, c, setA)
	filesOther := upload(t, c, otherPartition(t, 32))
	gA := graphFor(t, c, "af/os-count", filesA)
	blob := gA.Tasks[0].Task.Payload.Env[taskdef.EnvCredentials]
	opened, err := creds.Open(blob, c.Key, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	gB := graphWithBlob(t, taskdef.NewID(), filesA, blob)
	createGraph(t, c, gB)
	c.StartWorker(t, uniqueID("copied"), clustertest.WorkerOptions{Capacity: 1})
	t.Run("copied into graph B", func(t *testing.T) {
		wantRefused(t, c, mapperIDs(gB)[0], []string{"minted for graph " + gA.GraphID, "belongs to graph " + gB.GraphID, "resubmit"},
			opened.SecretAccessKey, opened.SessionToken)
	})

	// Graph A runs; a task added to it (the queue's PUT /tasks/{id}
	// takes a graph id) reuses A's blob for a file in a sibling channel.
	createGraph(t, c, gA)
	aPrime := gA.Tasks[0].Task
	aPrime.Payload.Inputs = []taskdef.InputFile{filesA[0], filesOther[0]}
	aPrime.Metadata.Name = "A' mapper"
	aPrimeID := taskdef.NewID()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Submit.CreateTask(ctx, aPrimeID, aPrime); err != nil {
		t.Fatal(err)
	}
	t.Run("input outside the scope in graph A'", func(t *testing.T) {
		wantRefused(t, c, aPrimeID, []string{filesOther[0].Key, "graph " + gA.GraphID, "none of the", "key prefixes"},
			opened.SecretAccessKey, opened.SessionToken)
	})

	// A'' is in graph A and reads only files A selected, but runs
	// another image: whoever added it would get A's data in their code.
	aOther := gA.Tasks[0].Task
	aOther.Payload.Image = "af/os-count-go"
	aOther.Payload.Inputs = []taskdef.InputFile{filesA[0]}
	aOther.Metadata.Name = "A'' mapper"
	aOtherID := taskdef.NewID()
	if _, err := c.Submit.CreateTask(ctx, aOtherID, aOther); err != nil {
		t.Fatal(err)
	}
	t.Run("another image in graph A''", func(t *testing.T) {
		wantRefused(t, c, aOtherID, []string{"minted for image af/os-count,", "this task runs image af/os-count-go", "af submit"},
			opened.SecretAccessKey, opened.SessionToken)
	})
	t.Run("the worker serves graph A", func(t *testing.T) {
		waitUntil(t, 90*time.Second, "graph A's reducer completes", func() (bool, string) {
			ts := taskStatus(t, c, reducerID(gA))
			return ts.State == taskdef.StateCompleted, string(ts.State)
		})
		rc, err := c.Submit.GetArtifact(context.Background(), reducerID(gA), -1, taskdef.ResultArtifact)
		if got, want := readAll(t, rc, err), synth.FormatOSCounts(setA.CountByOS(nil)); got != want {
			t.Fatalf("graph A result\n%s\nwant\n%s", got, want)
		}
	})
}

// TestForgedEndpointRefused is attack 4: an envelope sealed with the
// public pool key (anyone can fetch it) naming a loopback listener as the
// S3 endpoint. The worker refuses it naming both endpoints, the listener
// sees no connection at all, and the worker runs the next graph.
func TestForgedEndpointRefused(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t, "af/os-count")
	c := clustertest.Start(t, clustertest.Options{})
	set := smallData(t, 2, 20, 33)
	files := upload(t, c, set)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			conn.Close()
		}
	}()
	evil := "http://" + ln.Addr().String()

	graphID := taskdef.NewID()
	keys := make([]string, len(files))
	for i, f := range files {
		keys[i] = f.Key
	}
	forged := creds.Credentials{
		AccessKeyID: "AKIAFORGEDFORGED", SecretAccessKey: "forged-secret-value-0123456789", SessionToken: "forged-token",
		Region: "us-east-1", Endpoint: evil, Expiration: time.Now().Add(time.Hour),
		Bucket: clustertest.InputBucket, Prefix: "v2/", Prefixes: []string{"v2/"}, GraphID: graphID, Image: "af/os-count",
	}
	if err := forged.Permits(creds.Use{GraphID: graphID, Image: "af/os-count", Bucket: clustertest.InputBucket, Prefix: "v2/", Keys: keys}); err != nil {
		t.Fatal(err) // the forgery is otherwise in scope: only the endpoint is wrong
	}
	blob, err := creds.Seal(forged, c.Pub)
	if err != nil {
		t.Fatal(err)
	}
	gF := graphWithBlob(t, graphID, files, blob)
	createGraph(t, c, gF)
	c.StartWorker(t, uniqueID("endpoint"), clustertest.WorkerOptions{Capacity: 1})
	for _, id := range mapperIDs(gF) {
		wantRefused(t, c, id, []string{"S3 endpoint " + evil, "reads S3 only at " + c.MinIO.Endpoint},
			forged.SecretAccessKey, forged.SessionToken)
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("the forged endpoint received %d connection(s)", n)
	}

	g := graphFor(t, c, "af/os-count", files)
	createGraph(t, c, g)
	c.WaitGraph(t, g.GraphID, 90*time.Second)
	if gs := graphStatus(t, c, g.GraphID); gs.State != taskdef.GraphCompleted {
		t.Fatalf("next graph %s, want completed", gs.State)
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("the forged endpoint received %d connection(s)", n)
	}
}
