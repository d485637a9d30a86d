package worker_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
)

// jobData generates telemetry in every format the issue names and uploads
// it to the cluster's input bucket.
func jobData(t *testing.T, c *clustertest.Cluster, seed uint64) (*synth.Set, []taskdef.InputFile) {
	t.Helper()
	set, err := synth.Generate(synth.Spec{
		Prefix: "v2", Reasons: []string{"saved-session"}, Channels: []string{"nightly", "beta"}, Versions: []string{"28.0a1"},
		BuildIDs: []string{"20131029030201"}, Days: []string{"20131029", "20131030"}, FilesPerPartition: 2,
		DocsPerFile: 60, HistogramSize: 4, Formats: []string{"gz", "xz", "lzma", "zst"}, BadLineEvery: 25, Seed: seed,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Upload(context.Background(), c.MinIO.S3, clustertest.InputBucket, set.Files); err != nil {
		t.Fatal(err)
	}
	var files []taskdef.InputFile
	for _, f := range set.Files {
		files = append(files, taskdef.InputFile{Key: f.Key, Size: int64(len(f.Body))})
	}
	return set, files
}

// graphFor mints real scoped credentials with MinIO's STS, seals them to
// the pool key and builds the job's graph.
func graphFor(t *testing.T, c *clustertest.Cluster, image string, files []taskdef.InputFile) taskdef.Graph {
	t.Helper()
	cfg, err := awsconf.Load(context.Background(), awsconf.Options{
		Endpoint: c.MinIO.Endpoint, Region: awsconf.DefaultRegion, AccessKeyID: "afrootuser", SecretAccessKey: "afrootpassword-test-only",
	})
	if err != nil {
		t.Fatal(err)
	}
	graphID := taskdef.NewID()
	sc, err := submit.SealCredentials(context.Background(), cfg, c.Pub, submit.CredentialsRequest{
		GraphID: graphID, Image: image, Bucket: clustertest.InputBucket, Prefix: "v2/", Schema: layout.Telemetry().Fields, Files: files, TTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	cr, err := creds.Open(sc.Sealed, c.Key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	g, err := submit.BuildGraph(submit.GraphOptions{
		GraphID: graphID, Name: "os-count test", Owner: "analyst@example.com", Image: image,
		Bucket: clustertest.InputBucket, Prefix: "v2/", Schema: layout.Telemetry().Fields, Files: files,
		MaxFilesPerTask: 3, SealedCredentials: sc.Sealed, MaxRunTime: 5 * time.Minute, Deadline: 30 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(mustJSON(t, g), cr.SecretAccessKey) || strings.Contains(mustJSON(t, g), cr.SessionToken) {
		t.Fatal("the graph definition carries a plaintext credential")
	}
	return g
}

func reducerID(g taskdef.Graph) string {
	for _, gt := range g.Tasks {
		if gt.Task.Payload.Kind == taskdef.KindReducer {
			return gt.TaskID
		}
	}
	return ""
}

func readAll(t *testing.T, rc io.ReadCloser, err error) string {
	t.Helper()
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

func TestJobGraphEndToEnd(t *testing.T) {
	t.Parallel()
	for _, image := range []string{"af/os-count", "af/os-count-go"} {
		t.Run(strings.TrimPrefix(image, "af/"), func(t *testing.T) {
			t.Parallel()
			clustertest.RequireImages(t, image)
			c := clustertest.Start(t, clustertest.Options{})
			set, files := jobData(t, c, 11)
			g := graphFor(t, c, image, files)
			if _, err := c.Submit.CreateGraph(context.Background(), g); err != nil {
				t.Fatal(err)
			}
			c.StartWorker(t, "w1-"+g.GraphID[:6], clustertest.WorkerOptions{Capacity: 1})
			c.StartWorker(t, "w2-"+g.GraphID[:6], clustertest.WorkerOptions{Capacity: 1})
			c.WaitGraph(t, g.GraphID, 90*time.Second)

			gs, err := c.Submit.Graph(context.Background(), g.GraphID)
			if err != nil {
				t.Fatal(err)
			}
			if gs.State != taskdef.GraphCompleted {
				t.Fatalf("graph %s, want completed; tasks: %+v", gs.State, gs.Tasks)
			}
			want := synth.FormatOSCounts(set.CountByOS(nil))
			rc, err := c.Submit.GetArtifact(context.Background(), reducerID(g), -1, taskdef.ResultArtifact)
			got := readAll(t, rc, err)
			if got != want {
				t.Fatalf("result\n%s\nwant\n%s", got, want)
			}
			// Run metadata carries the counts.
			docs, _, raw := set.Totals()
			var in, bad, rawSeen int64
			for _, ts := range gs.Tasks {
				last := ts.Runs[len(ts.Runs)-1]
				if ts.Kind == taskdef.KindMapper {
					in += last.Stats.RecordsIn
					bad += last.Stats.BadLines
					rawSeen += last.Stats.RawBytes
				}
			}
			wantBad := 0
			for _, f := range set.Files {
				wantBad += f.BadLines
			}
			if in != int64(docs) || bad != int64(wantBad) || rawSeen != raw {
				t.Fatalf("mapper stats: records in %d bad %d raw %d, want %d %d %d", in, bad, rawSeen, docs, wantBad, raw)
			}

			// The owner's email, with links that work.
			msgs := c.SMTP.WaitFor(t, 1, time.Minute)
			m := msgs[0]
			if !strings.Contains(m.Subject, "completed") || !strings.Contains(m.Subject, "os-count test") {
				t.Fatalf("subject %q", m.Subject)
			}
			if len(m.To) == 0 || m.To[0] != "analyst@example.com" {
				t.Fatalf("email to %v", m.To)
			}
			monitorURL := c.URL + "/graphs/" + g.GraphID
			if !strings.Contains(m.Text, monitorURL) {
				t.Fatalf("email body lacks the monitor link %s:\n%s", monitorURL, m.Text)
			}
			for _, line := range strings.Fields(m.Text) {
				if strings.HasPrefix(line, c.URL) {
					resp, err := http.Get(line)
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("link %s: %s", line, resp.Status)
					}
					if strings.Contains(line, "result.txt") && string(body) != want {
						t.Fatalf("result link %s gave %q", line, body)
					}
				}
			}
		})
	}
}
