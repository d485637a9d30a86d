package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/synth"
)

// TestIndexThroughServer runs `af index build|query|stats` against a
// running queue server, which owns the index file.
func TestIndexThroughServer(t *testing.T) {
	t.Parallel()
	c := clustertest.Start(t, clustertest.Options{})
	set, err := synth.Generate(synth.Spec{
		Reasons: []string{"saved-session", "idle-daily"}, Channels: []string{"nightly"}, Versions: []string{"30.0a1"},
		BuildIDs: []string{"20140301030201"}, Days: []string{"20140307", "20140308"}, FilesPerPartition: 2, DocsPerFile: 1, Seed: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Upload(context.Background(), c.MinIO.S3, clustertest.InputBucket, set.Files); err != nil {
		t.Fatal(err)
	}
	c.MinIO.Put(t, clustertest.InputBucket, "not/in/the/layout.txt", []byte("x"))
	remote := []string{"--queue", c.URL, "--token", c.SubmitToken}

	tests := []struct {
		name    string
		args    []string
		want    []string
		wantErr string
	}{
		{name: "build", args: append([]string{"index", "build", "--bucket", clustertest.InputBucket}, remote...),
			want: []string{"8 objects (9 listed)", "added 8", "skipped 1 keys outside the layout", "not/in/the/layout.txt"}},
		{name: "query", args: append([]string{"index", "query", "../filters/Filter.json"}, remote...),
			want: []string{"saved_session/Firefox/nightly/30.0a1/20140301030201.20140308.v2.log.", "idle_daily/Firefox/nightly/30.0a1/20140301030201.20140308.v2.log."}},
		{name: "stats", args: append([]string{"index", "stats"}, remote...),
			want: []string{"objects: 8", "submission_date: 2 values", "20140307"}},
		{name: "another prefix is refused as locally", args: append([]string{"index", "build", "--prefix", "logs"}, remote...),
			wantErr: "the index holds s3://" + clustertest.InputBucket + "/ and cannot also hold s3://" + clustertest.InputBucket + "/logs/"},
		{name: "a wrong bucket is a 409 naming the indexed one", args: append([]string{"index", "build", "--bucket", "no-such-bucket"}, remote...),
			wantErr: "409 the index holds s3://" + clustertest.InputBucket + "/ and cannot also hold s3://no-such-bucket/"},
		{name: "build needs the submit role", args: []string{"index", "build", "--bucket", "x", "--queue", c.URL, "--token", c.WorkToken},
			wantErr: "token"},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if tc.wantErr != "" {
			if code == 0 || !strings.Contains(stderr.String(), tc.wantErr) {
				t.Fatalf("%s: exit %d, stderr %q; want a failure mentioning %q", tc.name, code, stderr.String(), tc.wantErr)
			}
			continue
		}
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", tc.name, code, stderr.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, w, stdout.String())
			}
		}
	}
	// The query selected exactly the Filter.json days: 2 reasons x 2 files.
	var out, errOut bytes.Buffer
	if code := run(append([]string{"index", "query", "../filters/Filter.json"}, remote...), &out, &errOut); code != 0 {
		t.Fatal(errOut.String())
	}
	if n := strings.Count(out.String(), "\n"); n != 4 {
		t.Fatalf("query printed %d lines, want 4:\n%s", n, out.String())
	}
}
