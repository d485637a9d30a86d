package worker_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
)

// TestJobGraphInEveryLayout runs os-count over the same documents stored
// in telemetry-2's all-directory layout and in Hive-style partitions: the
// credentials are scoped to those layouts' prefixes (dt=… included) by
// MinIO's STS, the workers read the payload's layout, and the result is
// the documents' counts.
func TestJobGraphInEveryLayout(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t, "af/os-count")
	c := clustertest.Start(t, clustertest.Options{})
	set, err := synth.Generate(synth.Spec{
		Prefix: "x", Reasons: []string{"saved-session"}, Channels: []string{"nightly", "beta"}, Versions: []string{"44.0a1"},
		BuildIDs: []string{"20150927150205"}, Days: []string{"20150928", "20150929"}, FilesPerPartition: 2,
		DocsPerFile: 40, HistogramSize: 2, Formats: []string{"gz", ""}, Seed: 14,
	})
	if err != nil {
		t.Fatal(err)
	}
	t2 := layout.Schema{Fields: []string{"submissionDate", "sourceName", "sourceVersion", "docType", "appName", "appUpdateChannel", "appVersion", "appBuildId"},
		Places: slices.Repeat([]layout.Place{layout.InDirectory}, 8)}
	hive := layout.Schema{Fields: []string{"dt", "hour"}, Places: []layout.Place{layout.InKeyValue, layout.InKeyValue}}
	cfg, err := awsconf.Load(context.Background(), awsconf.Options{
		Endpoint: c.MinIO.Endpoint, Region: awsconf.DefaultRegion, AccessKeyID: "afrootuser", SecretAccessKey: "afrootpassword-test-only",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		prefix string
		schema layout.Schema
		key    func(i int, f synth.File) string
	}{
		{"telemetry-2", "telemetry-2/", t2, func(i int, f synth.File) string {
			// dims: reason, app, channel, version, build id, date.
			d := f.Dims
			return t2.KeyFor("telemetry-2", []string{d[5], "telemetry", "4", d[0], d[1], d[2], d[3], d[4]}, fmt.Sprintf("%s%06d.%03d_ip-172-31-25-174%s", d[5], i, i, ext(f.Key)))
		}},
		{"hive", "events/", hive, func(i int, f synth.File) string {
			d := f.Dims
			return hive.KeyFor("events", []string{d[5][:4] + "-" + d[5][4:6] + "-" + d[5][6:], fmt.Sprintf("%02d", i%3)}, fmt.Sprintf("part-%05d.json%s", i, ext(f.Key)))
		}},
	} {
		files := slices.Clone(set.Files)
		var inputs []taskdef.InputFile
		for i := range files {
			files[i].Key = tc.key(i, files[i])
			if _, err := tc.schema.Parse(tc.prefix, files[i].Key); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			inputs = append(inputs, taskdef.InputFile{Key: files[i].Key, Size: int64(len(files[i].Body))})
		}
		if err := synth.Upload(context.Background(), c.MinIO.S3, clustertest.InputBucket, files); err != nil {
			t.Fatal(err)
		}
		graphID := taskdef.NewID()
		sc, err := submit.SealCredentials(context.Background(), cfg, c.Pub, submit.CredentialsRequest{
			GraphID: graphID, Image: "af/os-count", Bucket: clustertest.InputBucket, Prefix: tc.prefix,
			Schema: tc.schema.Fields, Layout: tc.schema.Layout(), Files: inputs, TTL: time.Hour,
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range sc.Scope.Prefixes {
			if tc.name == "hive" && !strings.Contains(p, "/dt=") {
				t.Errorf("%s: scope prefix %q", tc.name, p)
			}
		}
		g, err := submit.BuildGraph(submit.GraphOptions{
			GraphID: graphID, Name: "layout " + tc.name, Owner: "analyst@example.com", Image: "af/os-count",
			Bucket: clustertest.InputBucket, Prefix: tc.prefix, Schema: tc.schema.Fields, Layout: tc.schema.Layout(), Files: inputs,
			MaxFilesPerTask: 3, SealedCredentials: sc.Sealed, MaxRunTime: 5 * time.Minute, Deadline: 30 * time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Submit.CreateGraph(context.Background(), g); err != nil {
			t.Fatal(err)
		}
		if tc.name == "telemetry-2" {
			c.StartWorker(t, "w-layouts", clustertest.WorkerOptions{Capacity: 2})
		}
		c.WaitGraph(t, g.GraphID, 120*time.Second)
		gs, err := c.Submit.Graph(context.Background(), g.GraphID)
		if err != nil {
			t.Fatal(err)
		}
		if gs.State != taskdef.GraphCompleted {
			t.Fatalf("%s: graph %s, want completed; tasks: %+v", tc.name, gs.State, gs.Tasks)
		}
		rc, err := c.Submit.GetArtifact(context.Background(), reducerID(g), -1, taskdef.ResultArtifact)
		if got, want := readAll(t, rc, err), synth.FormatOSCounts(set.CountByOS(nil)); got != want {
			t.Fatalf("%s: result\n%s\nwant\n%s", tc.name, got, want)
		}
	}
}

// ext is a key's compression extension with its dot, or "".
func ext(key string) string {
	if c := layout.CompressionOf(key); c != layout.None {
		return "." + string(c)
	}
	return ""
}
