package submit

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/taskdef"
)

// TestCredentialsTTL: credentials live for the graph's deadline plus the
// margin, not a flat 12 h, and never less than the deadline needs.
func TestCredentialsTTL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                  string
		ttl, deadline         time.Duration
		mode                  creds.Mode
		wantTTL, wantDeadline time.Duration
	}{
		{"default deadline", 0, DefaultDeadline, creds.ModeAssumeRole, DefaultDeadline + CredentialsMargin, DefaultDeadline},
		{"short deadline", 0, time.Hour, creds.ModeAssumeRole, time.Hour + CredentialsMargin, time.Hour},
		{"tiny deadline: STS minimum", 0, time.Minute, creds.ModeAssumeRole, creds.MinTTL, time.Minute},
		{"deadline past AssumeRole's 12 h", 0, 20 * time.Hour, creds.ModeAssumeRole, creds.MaxAssumeRoleTTL, creds.MaxAssumeRoleTTL - CredentialsMargin},
		{"federation token reaches 36 h", 0, 20 * time.Hour, creds.ModeFederationToken, 20*time.Hour + CredentialsMargin, 20 * time.Hour},
		{"explicit ttl longer", 5 * time.Hour, time.Hour, creds.ModeAssumeRole, 5 * time.Hour, time.Hour},
		{"explicit ttl shorter shortens the deadline", time.Hour, 3 * time.Hour, creds.ModeAssumeRole, time.Hour, time.Hour - CredentialsMargin},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ttl, deadline := CredentialsTTL(tc.ttl, tc.deadline, tc.mode)
			if ttl != tc.wantTTL || deadline != tc.wantDeadline {
				t.Fatalf("ttl %s deadline %s, want %s %s", ttl, deadline, tc.wantTTL, tc.wantDeadline)
			}
			if deadline+CredentialsMargin > ttl {
				t.Fatalf("deadline %s + margin outlives the credentials (%s)", deadline, ttl)
			}
		})
	}
}

// TestSealCredentialsBindsGraphAndImage: the credentials af submit seals
// (minted by a real MinIO's STS) name the graph and the job image, so the
// worker's check passes for the graph's own mappers and refuses the same
// task running another image.
func TestSealCredentialsBindsGraphAndImage(t *testing.T) {
	t.Parallel()
	s := miniotest.Start(t, "telemetry")
	pub, key, err := creds.NewKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	files := []taskdef.InputFile{
		{Key: "v2/saved_session/Firefox/nightly/30.0a1/20140301000000.20140308.v2.log.a.gz", Size: 10},
		{Key: "v2/saved_session/Firefox/release/28.0/20140201000000.20140308.v2.log.b.gz", Size: 10},
	}
	graphID := taskdef.NewID()
	req := CredentialsRequest{
		GraphID: graphID, Image: "af/os-count", Bucket: "telemetry", Prefix: "v2/", Schema: layout.Telemetry().Fields,
		Files: files, TTL: time.Hour,
	}
	ctx := context.Background()
	sc, err := SealCredentials(ctx, s.Config, pub, req)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := creds.Open(sc.Sealed, key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if cr.GraphID != graphID || cr.Image != "af/os-count" {
		t.Fatalf("sealed for graph %q image %q, want %q %q", cr.GraphID, cr.Image, graphID, "af/os-count")
	}
	g, err := BuildGraph(GraphOptions{
		GraphID: graphID, Name: "n", Owner: "a@example.com", Image: req.Image, Bucket: req.Bucket, Prefix: req.Prefix,
		Schema: req.Schema, Files: files, SealedCredentials: sc.Sealed, MaxRunTime: time.Minute, Deadline: 30 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	mappers := 0
	for _, gt := range g.Tasks {
		p := gt.Task.Payload
		if p.Kind != taskdef.KindMapper {
			continue
		}
		mappers++
		u := creds.Use{GraphID: gt.Task.GraphID, Image: p.Image, Bucket: p.Bucket, Prefix: p.Prefix}
		for _, in := range p.Inputs {
			u.Keys = append(u.Keys, in.Key)
		}
		if err := cr.Permits(u); err != nil {
			t.Fatalf("mapper %s refused: %v", gt.TaskID, err)
		}
		u.Image = "af/os-count-go"
		if err := cr.Permits(u); !errors.Is(err, creds.ErrOutOfScope) || !strings.Contains(err.Error(), "image af/os-count-go") {
			t.Fatalf("mapper %s with another image: %v", gt.TaskID, err)
		}
	}
	if mappers == 0 {
		t.Fatal("no mappers")
	}
	req.Image = ""
	if _, err := SealCredentials(ctx, s.Config, pub, req); err == nil || !strings.Contains(err.Error(), "no job image") {
		t.Fatalf("sealed without an image: %v", err)
	}
}

// TestSealCredentialsFollowTheLayout: with a key=value layout the scope's
// prefixes end after "hour=<value>/" (not at a guess of the .vN shape,
// which would grant each whole key), and every mapper's payload carries
// the layout so the worker frames the right dims.
func TestSealCredentialsFollowTheLayout(t *testing.T) {
	t.Parallel()
	s := miniotest.Start(t, "events")
	pub, key, err := creds.NewKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	files := []taskdef.InputFile{
		{Key: "logs/dt=2024-01-01/hour=03/part-0001.json.gz", Size: 10},
		{Key: "logs/dt=2024-01-01/hour=03/part-0002.json.gz", Size: 10},
		{Key: "logs/dt=2024-01-02/hour=00/part-0001.json.gz", Size: 10},
	}
	graphID := taskdef.NewID()
	req := CredentialsRequest{
		GraphID: graphID, Image: "af/os-count", Bucket: "events", Prefix: "logs/", Schema: []string{"dt", "hour"}, Layout: "kk:any",
		Files: files, TTL: time.Hour,
	}
	sc, err := SealCredentials(context.Background(), s.Config, pub, req)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"logs/dt=2024-01-01/hour=03/", "logs/dt=2024-01-02/hour=00/"}; !slices.Equal(sc.Scope.Prefixes, want) || sc.Scope.Dimension != "hour" {
		t.Fatalf("scope %+v; want %q at hour", sc.Scope, want)
	}
	cr, err := creds.Open(sc.Sealed, key, time.Now())
	if err != nil || !slices.Equal(cr.Prefixes, sc.Scope.Prefixes) {
		t.Fatalf("sealed prefixes %q, %v", cr.Prefixes, err)
	}
	g, err := BuildGraph(GraphOptions{
		GraphID: graphID, Name: "n", Owner: "a@example.com", Image: req.Image, Bucket: req.Bucket, Prefix: req.Prefix,
		Schema: req.Schema, Layout: req.Layout, Files: files, SealedCredentials: sc.Sealed, MaxRunTime: time.Minute, Deadline: 30 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, gt := range g.Tasks {
		if p := gt.Task.Payload; p.Kind == taskdef.KindMapper && (p.Layout != "kk:any" || !slices.Equal(p.Schema, req.Schema)) {
			t.Errorf("mapper %s: schema %q layout %q", gt.TaskID, p.Schema, p.Layout)
		}
	}
	req.Layout = "k:any"
	if _, err := SealCredentials(context.Background(), s.Config, pub, req); err == nil || !strings.Contains(err.Error(), "the index's layout") {
		t.Errorf("a layout that does not fit the schema: %v", err)
	}
}
