package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/af-project/af/internal/registry"
	"github.com/af-project/af/internal/schedule"
	"github.com/af-project/af/internal/submit"
)

// pinScheduledImage resolves a scheduled run's job image once, when the
// run is made, so every task of the run (and its sealed credentials) names
// the same image however the tag moves while it runs:
//
//   - NAME@sha256:… is kept (Source "digest").
//   - A registry name (REGISTRY/NAME:TAG, its first part a host) is asked
//     of that registry, with the credentials of schedules.docker_config
//     (default Docker's own config dir), and pinned to NAME@sha256:<the
//     manifest digest> (Source "registry"). Each run asks again, so a push
//     to the tag reaches the next run.
//   - An image id sha256:… is kept (Source "image-id"); any other name is a
//     local engine's image, which af serve has no engine to ask, and is kept
//     as given (Source "unpinned"). af schedule create pins such a name to
//     its image id on the submitter's host.
//
// A registry it cannot reach, or one that answers 5xx, is the machine's
// fault: a plain error, and the scheduler launches the run again. A tag the
// registry does not have, or credentials it refuses, is the schedule's: a
// *schedule.Refusal naming the image and how to fix it.
func (s *Server) pinScheduledImage(ctx context.Context, image string) (submit.ImagePin, error) {
	dir := s.cfg.Schedules.DockerConfig
	if dir == "" {
		dir = registry.DefaultConfigDir()
	}
	// No Docker engine: a local name stays unpinned, as af submit
	// --no-image-check leaves it.
	pin, err := (&submit.Submitter{RegistryConfig: dir}).PinImage(ctx, image)
	switch {
	case err == nil:
		return pin, nil
	case errors.Is(err, submit.ErrInput):
		return submit.ImagePin{}, &schedule.Refusal{Msg: fmt.Sprintf("%v: set the schedule's image with `af schedule update NAME --image IMAGE`", err)}
	case errors.Is(err, registry.ErrNotFound):
		return submit.ImagePin{}, &schedule.Refusal{Msg: fmt.Sprintf("image %s is not at its registry (%v): push the tag (docker push %s), or point the schedule at an image that is there (af schedule update NAME --image IMAGE)", image, err, image)}
	case errors.Is(err, registry.ErrUnauthorized):
		domain := image
		if ref, perr := registry.Parse(image); perr == nil {
			domain = ref.Domain
		}
		return submit.ImagePin{}, &schedule.Refusal{Msg: fmt.Sprintf("image %s: the registry refused af serve (%v): af serve reads registry credentials from %s (schedules.docker_config): put credentials for %s in its auths (DOCKER_CONFIG=%s docker login %s)", image, err, filepath.Join(dir, "config.json"), domain, dir, domain)}
	}
	// A config af serve cannot read, a registry it cannot reach or one
	// that answers 5xx: the machine's, retried.
	return submit.ImagePin{}, fmt.Errorf("pin the run's image: %w", err)
}
