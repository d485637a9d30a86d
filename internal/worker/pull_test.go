package worker

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/af-project/af/internal/runner"
)

// TestMissingImageMessages: a pinned image the engine lacks is a clear,
// fixable message: without --pull it names --pull; with it, an image
// pinned by its id says it cannot be pulled, and a failed pull says why and
// where the credentials were read.
func TestMissingImageMessages(t *testing.T) {
	t.Parallel()
	d, err := runner.NewDockerClient()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rn, err := runner.New(d, runner.Options{WorkerID: "pull-test"})
	if err != nil {
		t.Fatal(err)
	}
	id := "sha256:" + strings.Repeat("0", 64)
	// Nothing listens on port 1: the pull fails at once.
	unreachable := "127.0.0.1:1/af-test/none@sha256:" + strings.Repeat("a", 64)
	tests := []struct {
		name  string
		pull  bool
		image string
		want  []string
		pulls bool
	}{
		{"no --pull", false, unreachable, []string{"is not on worker w1, which does not pull", "--pull (AF_PULL=1)", "docker load"}, false},
		{"image id, no --pull", false, id, []string{"pinned it by its image id", "docker load", "a separate build has another id"}, false},
		{"image id", true, id, []string{"pinned by its image id", "docker load", "push it to a registry"}, true},
		{"pull fails", true, unreachable, []string{"pulling it failed", "image pull failed", "127.0.0.1:1", "config.json"}, true},
		{"registry not allowed", true, "reg.example.com/x@sha256:" + strings.Repeat("a", 64), []string{"pulls only from 127.0.0.1:5000 (its --pull-from), not from reg.example.com"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newSpecCache(d, rn, "w1")
			if tt.pull {
				c.puller = &puller{docker: d, cfg: PullConfig{Enabled: true, DockerConfig: t.TempDir()}, workerID: "w1"}
				if strings.HasPrefix(tt.image, "reg.example.com/") {
					c.puller.cfg.Registries = []string{"127.0.0.1:5000"}
				}
			}
			_, err := c.get(context.Background(), tt.image)
			var pe *pullError
			if got := errors.As(err, &pe); got != tt.pulls {
				t.Errorf("err %v: a pull error %v, want %v", err, got, tt.pulls)
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to say %q", err, w)
				}
			}
		})
	}
}
