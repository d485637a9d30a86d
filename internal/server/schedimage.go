package server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

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
	pin := submit.ImagePin{Asked: image, Ref: image}
	if isImageID(image) {
		pin.Source = "image-id"
		pin.Note = fmt.Sprintf("image %s is pinned by its image id", image)
		return pin, nil
	}
	ref, err := registry.Parse(image)
	if err != nil {
		return submit.ImagePin{}, &schedule.Refusal{Msg: fmt.Sprintf("%v: set the schedule's image with `af schedule update NAME --image IMAGE`", err)}
	}
	switch {
	case ref.Digest != "":
		pin.Source = "digest"
		pin.Note = fmt.Sprintf("image %s is pinned by its digest", image)
		return pin, nil
	case !ref.ExplicitDomain:
		pin.Source = "unpinned"
		pin.Note = fmt.Sprintf("image %s is not pinned (af serve has no Docker engine to ask): the workers run whatever %s is on them when each task starts", image, image)
		return pin, nil
	}
	dir := s.cfg.Schedules.DockerConfig
	if dir == "" {
		dir = registry.DefaultConfigDir()
	}
	conf, err := registry.LoadConfig(dir)
	if err != nil {
		// A config af serve cannot read is its operator's to fix, not the
		// schedule's: retried.
		return submit.ImagePin{}, fmt.Errorf("schedules.docker_config: %w", err)
	}
	digest, err := (&registry.Client{Config: conf}).Digest(ctx, ref)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return submit.ImagePin{}, &schedule.Refusal{Msg: fmt.Sprintf("image %s is not at its registry (%v): push the tag (docker push %s), or point the schedule at an image that is there (af schedule update NAME --image IMAGE)", image, err, image)}
	case errors.Is(err, registry.ErrUnauthorized):
		return submit.ImagePin{}, &schedule.Refusal{Msg: fmt.Sprintf("image %s: the registry refused af serve (%v): af serve reads registry credentials from %s (schedules.docker_config): put credentials for %s in its auths (DOCKER_CONFIG=%s docker login %s)", image, err, filepath.Join(dir, "config.json"), ref.Domain, dir, ref.Domain)}
	case err != nil:
		return submit.ImagePin{}, fmt.Errorf("resolve image %s to its digest: %w", image, err)
	}
	pin.Ref, pin.Source = ref.Pinned(digest), "registry"
	pin.Note = fmt.Sprintf("image %s is %s at %s: the run's tasks run that digest", image, digest, ref.Domain)
	return pin, nil
}

// isImageID reports whether image is an engine's image id, sha256:<64 hex>.
func isImageID(image string) bool {
	h, ok := strings.CutPrefix(image, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}
