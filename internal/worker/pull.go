package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/client"

	"github.com/af-project/af/internal/registry"
	"github.com/af-project/af/internal/runner"
)

// PullConfig is how a worker pulls job images it lacks (its --pull).
type PullConfig struct {
	// Enabled makes the worker pull a task's image from its registry when
	// the engine lacks it; otherwise the task is handed back for a worker
	// that has it.
	Enabled bool
	// DockerConfig is the directory of Docker's config.json whose auths
	// hold the registries' credentials, read at each pull ("" is
	// $DOCKER_CONFIG or ~/.docker).
	DockerConfig string
	// Timeout bounds one pull (default runner.DefaultPullTimeout).
	Timeout time.Duration
	// Registries, when set, are the only registry hosts (host[:port]) the
	// worker pulls from: a task's image is the submitter's choice, and
	// without a list the engine fetches from whatever registry it names
	// (with only that registry's own credentials).
	Registries []string
}

// pullError is a pull that failed: the worker could not get the image.
type pullError struct {
	image, worker string
	err           error
}

func (e *pullError) Error() string {
	return fmt.Sprintf("image %s is not on worker %s and pulling it failed: %v", e.image, e.worker, e.err)
}
func (e *pullError) Unwrap() error { return e.err }

// puller pulls through the runner's Docker calls with the registry's
// credentials from Docker's config.
type puller struct {
	docker   *client.Client
	cfg      PullConfig
	workerID string
}

// pull fetches image (a task's pinned NAME@sha256:… reference). An image
// pinned by its local id (sha256:…, an image loaded by hand) has no
// registry to come from.
func (p *puller) pull(ctx context.Context, image string) error {
	if strings.HasPrefix(image, "sha256:") {
		return &pullError{image: image, worker: p.workerID, err: errors.New("it is pinned by its image id (it was loaded by hand on the submitting host, not pushed to a registry), so there is nothing to pull: `docker save` it there and `docker load` it on this host, or push it to a registry and submit NAME:TAG from there")}
	}
	ref, err := registry.Parse(image)
	if err != nil {
		return &pullError{image: image, worker: p.workerID, err: err}
	}
	if len(p.cfg.Registries) > 0 && !slices.Contains(p.cfg.Registries, ref.Domain) {
		return &pullError{image: image, worker: p.workerID, err: fmt.Errorf("this worker pulls only from %s (its --pull-from), not from %s: push the image to one of those, or add %s to --pull-from", strings.Join(p.cfg.Registries, ", "), ref.Domain, ref.Domain)}
	}
	conf, err := registry.LoadConfig(p.cfg.DockerConfig)
	if err != nil {
		return &pullError{image: image, worker: p.workerID, err: err}
	}
	if err := runner.PullImage(ctx, p.docker, image, conf.For(ref.Domain).EngineHeader(), p.cfg.Timeout); err != nil {
		return &pullError{image: image, worker: p.workerID, err: fmt.Errorf("%w (the worker reads registry credentials from the auths of %s)", err, configFile(conf))}
	}
	return nil
}

func configFile(c *registry.Config) string {
	if c.Path != "" {
		return c.Path
	}
	return registry.DefaultConfigDir() + "/config.json"
}
