package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// ImageInspector is the Docker client's image inspection; *client.Client
// implements it.
type ImageInspector interface {
	ImageInspect(ctx context.Context, imageID string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
}

// ImagePuller is the Docker client's image pull; *client.Client
// implements it.
type ImagePuller interface {
	ImagePull(ctx context.Context, ref string, options image.PullOptions) (io.ReadCloser, error)
}

// ImageInfo is what af needs of a local image.
type ImageInfo struct {
	// ID is the image's id (sha256:… of its config), the same for the
	// same build wherever it is docker load-ed.
	ID string
	// RepoDigests are the NAME@sha256:… references it was pulled or
	// pushed as.
	RepoDigests []string
}

// ErrImageNotFound is an image the engine does not have.
var ErrImageNotFound = errors.New("no such image on this Docker engine")

// InspectTimeout bounds an image inspection.
const InspectTimeout = 30 * time.Second

// InspectImage asks the engine for a local image, within InspectTimeout.
// An image it lacks is ErrImageNotFound.
func InspectImage(ctx context.Context, d ImageInspector, ref string) (ImageInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, InspectTimeout)
	defer cancel()
	insp, err := d.ImageInspect(ctx, ref)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return ImageInfo{}, fmt.Errorf("image %s: %w", ref, ErrImageNotFound)
		}
		return ImageInfo{}, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return ImageInfo{ID: insp.ID, RepoDigests: insp.RepoDigests}, nil
}

// DefaultPullTimeout bounds an image pull when Options.PullTimeout is
// zero.
const DefaultPullTimeout = 10 * time.Minute

// ErrPull is a pull the engine or the registry refused or that failed.
var ErrPull = errors.New("image pull failed")

// maxPullMessage bounds how much of the engine's progress stream is
// read for its error.
const maxPullMessage = 64 << 10

// PullImage has the engine pull ref (NAME@sha256:… for a pinned task) from
// its registry, with registryAuth (the engine's X-Registry-Auth value, ""
// for anonymous access), within timeout (DefaultPullTimeout when zero).
// It reads the engine's progress stream to its end: a pull fails there,
// not in the call, and that error is returned wrapped in ErrPull with the
// engine's message.
func PullImage(ctx context.Context, d ImagePuller, ref, registryAuth string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultPullTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rc, err := d.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: registryAuth})
	if err != nil {
		return fmt.Errorf("%w: pull %s: %w", ErrPull, ref, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%w: pull %s: not done within %s", ErrPull, ref, timeout)
			}
			return fmt.Errorf("%w: pull %s: read the engine's progress: %w", ErrPull, ref, err)
		}
		msg := m.ErrorDetail.Message
		if msg == "" {
			msg = m.Error
		}
		if msg != "" {
			if len(msg) > maxPullMessage {
				msg = msg[:maxPullMessage]
			}
			return fmt.Errorf("%w: pull %s: %s", ErrPull, ref, strings.TrimSpace(msg))
		}
	}
}
