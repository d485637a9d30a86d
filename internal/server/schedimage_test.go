package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/registrytest"
	"github.com/af-project/af/internal/schedule"
	"github.com/af-project/af/internal/taskdef"
)

// pushTiny builds a one-file image FROM scratch holding body, tags it tag,
// pushes it to the registry and returns the manifest digest the push
// printed.
func pushTiny(t *testing.T, reg *registrytest.Server, tag, body string) string {
	t.Helper()
	registrytest.Build(t, tag, "scratch", map[string]string{"/f": body})
	return reg.Push(t, tag)
}

// runImages is the payload image of every task of a graph, and the image
// its mappers' sealed credentials were minted for.
func runImages(t *testing.T, e *env, key *creds.PrivateKey, graphID string) (tasks, sealed []string) {
	t.Helper()
	g, err := e.admin.Graph(ctxT(t), graphID)
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range g.Tasks {
		def, err := e.admin.TaskDefinition(ctxT(t), ts.TaskID)
		if err != nil {
			t.Fatal(err)
		}
		tasks = append(tasks, def.Payload.Image)
		if blob := def.Payload.Env[taskdef.EnvCredentials]; blob != "" {
			c, err := creds.Open(blob, key, e.clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			sealed = append(sealed, c.Image)
		}
	}
	if len(tasks) < 2 || len(sealed) == 0 {
		t.Fatalf("graph %s: task images %v, sealed %v; want mappers and a reducer", graphID, tasks, sealed)
	}
	return tasks, sealed
}

func allAre(list []string, want string) bool {
	for _, s := range list {
		if s != want {
			return false
		}
	}
	return true
}

// TestScheduledRunPinsRegistryImage: a schedule naming REGISTRY/NAME:TAG
// (a real registry with basic auth, its credentials in
// schedules.docker_config) makes a run whose every task, and the
// credentials sealed for it, name NAME@sha256:<the pushed digest>; after
// the tag is pushed to another image the next run has the new digest and
// the first run's tasks are unchanged. A tag the registry does not have
// refuses the run, naming the image and how to fix it.
func TestScheduledRunPinsRegistryImage(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	e, _ := scheduleEnv(t, func(c *Config) { c.Schedules.DockerConfig = reg.DockerConfig })
	key, err := creds.LoadPrivateKey(filepath.Join(filepath.Dir(e.cfg.PoolKey), creds.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	name := reg.Host + "/af-test/sched-pin"
	nonce := fmt.Sprint(time.Now().UnixNano())
	first := pushTiny(t, reg, name+":daily", "first "+nonce)

	for _, spec := range []taskdef.ScheduleSpec{
		{Name: "pinned", Cron: "5 16 * * *", Template: json.RawMessage(dailyTemplate), Image: name + ":daily"},
		{Name: "no-tag", Cron: "5 16 * * *", Template: json.RawMessage(dailyTemplate), Image: name + ":never-pushed"},
	} {
		if _, err := e.submit.CreateSchedule(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Advance(4*time.Hour + 5*time.Minute) // the tick for the 28th
	_, _ = e.srv.scheduler.Pass(ctx)

	runs, err := e.submit.ScheduleRuns(ctx, "pinned")
	if err != nil {
		t.Fatal(err)
	}
	if len(runs.Runs) != 1 || runs.Runs[0].RunState != "launched" {
		t.Fatalf("runs %+v; want one launched", runs.Runs)
	}
	if runs.Schedule.Image != name+":daily" {
		t.Errorf("the schedule's image became %q; want the tag %s:daily kept (each run resolves it)", runs.Schedule.Image, name)
	}
	run1 := runs.Runs[0].GraphID
	want1 := name + "@" + first
	if tasks, sealed := runImages(t, e, key, run1); !allAre(tasks, want1) || !allAre(sealed, want1) {
		t.Fatalf("run 1: task images %v, sealed credentials' images %v; want every one %s", tasks, sealed, want1)
	}

	refused, err := e.submit.ScheduleRuns(ctx, "no-tag")
	if err != nil {
		t.Fatal(err)
	}
	if len(refused.Runs) != 1 || refused.Runs[0].RunState != "refused" || refused.Runs[0].GraphID != "" ||
		!strings.Contains(refused.Runs[0].Message, name+":never-pushed") || !strings.Contains(refused.Runs[0].Message, "push") {
		t.Fatalf("runs of the unknown tag %+v; want one refused naming %s:never-pushed and saying to push it", refused.Runs, name)
	}

	// The tag moves; the next run (a backfill for the 27th) runs the new
	// image, the first run still the old one.
	second := pushTiny(t, reg, name+":daily", "second "+nonce)
	if second == first {
		t.Fatalf("the second push has the first's digest %s", first)
	}
	if _, err := e.submit.Backfill(ctx, "pinned", taskdef.BackfillRequest{From: "20260227", To: "20260227"}); err != nil {
		t.Fatal(err)
	}
	_, _ = e.srv.scheduler.Pass(ctx)
	runs, err = e.submit.ScheduleRuns(ctx, "pinned")
	if err != nil {
		t.Fatal(err)
	}
	var run2 string
	for _, r := range runs.Runs {
		if r.Kind == "backfill" && r.RunState == "launched" {
			run2 = r.GraphID
		}
	}
	if run2 == "" {
		t.Fatalf("runs %+v; want the backfill for the 27th launched", runs.Runs)
	}
	want2 := name + "@" + second
	if tasks, sealed := runImages(t, e, key, run2); !allAre(tasks, want2) || !allAre(sealed, want2) {
		t.Errorf("run 2: task images %v, sealed %v; want every one %s (the tag's new digest)", tasks, sealed, want2)
	}
	if tasks, sealed := runImages(t, e, key, run1); !allAre(tasks, want1) || !allAre(sealed, want1) {
		t.Errorf("run 1 after the push: task images %v, sealed %v; want every one still %s", tasks, sealed, want1)
	}
}

// TestPinScheduledImage: how each kind of image name is pinned, and which
// registry errors refuse the run (the schedule's fault) or are retried
// (the machine's), against a fake registry answering each status.
func TestPinScheduledImage(t *testing.T) {
	t.Parallel()
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/manifests/ok"):
			w.Header().Set("Docker-Content-Digest", digest)
			w.WriteHeader(http.StatusOK)
		case strings.HasSuffix(r.URL.Path, "/manifests/missing"):
			w.WriteHeader(http.StatusNotFound)
		case strings.HasSuffix(r.URL.Path, "/manifests/denied"):
			w.WriteHeader(http.StatusForbidden)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(fake.Close)
	host := strings.TrimPrefix(fake.URL, "http://")
	// A loopback port nothing listens on: the registry is unreachable.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	s := &Server{cfg: Config{Schedules: ScheduleConfig{DockerConfig: t.TempDir()}}}
	imageID := "sha256:" + strings.Repeat("ab", 32)

	for _, tc := range []struct {
		image, ref, source string
		refused            []string // a Refusal whose message holds these
		retried            bool     // a plain error
	}{
		{image: "af/os-count", ref: "af/os-count", source: "unpinned"},
		{image: "af/os-count:v2", ref: "af/os-count:v2", source: "unpinned"},
		{image: imageID, ref: imageID, source: "image-id"},
		{image: "af/os-count@" + digest, ref: "af/os-count@" + digest, source: "digest"},
		{image: host + "/team/job:ok", ref: host + "/team/job@" + digest, source: "registry"},
		{image: host + "/team/job:missing", refused: []string{host + "/team/job:missing", "push"}},
		{image: host + "/team/job:denied", refused: []string{host + "/team/job:denied", "schedules.docker_config", "docker login"}},
		{image: host + "/team/job:broken", retried: true},
		{image: closed + "/team/job:ok", retried: true},
		{image: "Not An Image", refused: []string{"Not An Image", "--image"}},
	} {
		pin, err := s.pinScheduledImage(ctxT(t), tc.image)
		var ref *schedule.Refusal
		switch {
		case tc.refused != nil:
			if !errors.As(err, &ref) {
				t.Errorf("%s: %+v, %v; want a refusal", tc.image, pin, err)
				continue
			}
			for _, w := range tc.refused {
				if !strings.Contains(ref.Msg, w) {
					t.Errorf("%s: refusal %q does not say %q", tc.image, ref.Msg, w)
				}
			}
		case tc.retried:
			if err == nil || errors.As(err, &ref) {
				t.Errorf("%s: %+v, %v; want a plain error (retried)", tc.image, pin, err)
			}
		default:
			if err != nil || pin.Ref != tc.ref || pin.Source != tc.source || pin.Asked != tc.image {
				t.Errorf("%s: %+v, %v; want ref %s, source %s", tc.image, pin, err, tc.ref, tc.source)
			}
		}
	}
}
