package submit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/af-project/af/internal/registry"
	"github.com/af-project/af/internal/runner"
)

// ImagePin is how af submit pinned the job image: the reference every task
// runs (and the sealed credentials name), and where it came from.
type ImagePin struct {
	// Asked is the image as given on the command line.
	Asked string
	// Ref is what the tasks run: NAME@sha256:… (a registry's manifest
	// digest), sha256:… (the image id of an image loaded by hand on this
	// host), or Asked unchanged when it could not be pinned (Note says
	// why).
	Ref string
	// Source is "registry", "digest" (given by digest), "repo-digest" (the
	// local engine's record of the registry digest), "image-id" or
	// "unpinned".
	Source string
	// Note explains the pin for the submitter (stderr).
	Note string
}

// Pinned reports whether the tasks run a fixed image.
func (p ImagePin) Pinned() bool { return p.Source != "unpinned" }

// PinImage resolves the job image to the exact image the tasks will run,
// so a tag moved after submission changes nothing:
//
//   - NAME@sha256:… is kept as given, and so is an image id sha256:<64
//     hex> (checked on this host's engine when there is one).
//   - A name whose first part is a registry host (127.0.0.1:5000/x:tag,
//     reg.example.com/team/job) is resolved by that registry's HTTP API v2,
//     with the credentials of Docker's config (see internal/registry), to
//     NAME@sha256:<manifest digest>; workers started with --pull fetch
//     exactly that. It need not be on this host.
//   - Any other name is an image on this host's engine (built or loaded by
//     hand; af has no registry for it): it is pinned to the registry digest
//     the engine recorded for it when it has one (it was pulled), else to
//     its image id (sha256:…), which `docker save | docker load` keeps, so
//     every worker must hold the same build, not merely an image of the
//     same name.
//   - Without a Docker engine to ask (--no-image-check) such a name stays
//     unpinned, and Note says so.
func (s *Submitter) PinImage(ctx context.Context, image string) (ImagePin, error) {
	pin := ImagePin{Asked: image}
	if isImageID(image) {
		if err := s.checkImage(ctx, image); err != nil {
			return ImagePin{}, err
		}
		pin.Ref, pin.Source = image, "image-id"
		pin.Note = fmt.Sprintf("image %s is pinned by its image id", image)
		return pin, nil
	}
	ref, err := registry.Parse(image)
	if err != nil {
		return ImagePin{}, InputError(fmt.Errorf("IMAGE: %w", err))
	}
	switch {
	case ref.Digest != "":
		pin.Ref, pin.Source = image, "digest"
		pin.Note = fmt.Sprintf("image %s is pinned by its digest", image)
		return pin, nil
	case ref.ExplicitDomain:
		c := s.Registry
		if c == nil {
			conf, err := registry.LoadConfig(s.RegistryConfig)
			if err != nil {
				return ImagePin{}, fmt.Errorf("image %s: %w", image, err)
			}
			c = &registry.Client{Config: conf}
		}
		digest, err := c.Digest(ctx, ref)
		if err != nil {
			return ImagePin{}, fmt.Errorf("resolve image %s to its digest at its registry (workers pull that digest with --pull): %w", image, err)
		}
		pin.Ref, pin.Source = ref.Pinned(digest), "registry"
		pin.Note = fmt.Sprintf("image %s is %s at %s: the tasks run that digest (workers need --pull, or the image pulled by hand)", image, digest, ref.Domain)
		return pin, nil
	}
	if s.Docker == nil {
		pin.Ref, pin.Source = image, "unpinned"
		pin.Note = fmt.Sprintf("image %s is not pinned (no Docker engine asked): the workers run whatever %s is on them when each task starts", image, image)
		return pin, nil
	}
	if err := s.checkImage(ctx, image); err != nil {
		return ImagePin{}, err
	}
	info, err := runner.InspectImage(ctx, s.Docker, image)
	if err != nil {
		if errors.Is(err, runner.ErrImageNotFound) {
			return ImagePin{}, fmt.Errorf("%w: build it (`make images` for the examples) or `docker load` it", err)
		}
		return ImagePin{}, err
	}
	if d := repoDigest(info.RepoDigests, ref.Name); d != "" {
		pin.Ref, pin.Source = d, "repo-digest"
		pin.Note = fmt.Sprintf("image %s is %s (the digest it was pulled by): the tasks run that digest", image, d)
		return pin, nil
	}
	pin.Ref, pin.Source = info.ID, "image-id"
	pin.Note = fmt.Sprintf("image %s is pinned by its image id %s (it is on no registry): every worker must hold that same build (docker save | docker load), or push it to a registry and submit REGISTRY/NAME:TAG with workers started with --pull", image, info.ID)
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

// repoDigest picks the engine's NAME@sha256:… record for the repository.
func repoDigest(digests []string, name string) string {
	slices.Sort(digests)
	for _, d := range digests {
		n, _, ok := strings.Cut(d, "@")
		if !ok {
			continue
		}
		if r, err := registry.Parse(n); err == nil && r.Name == name {
			return d
		}
	}
	return ""
}
