package runner

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	cerrdefs "github.com/containerd/errdefs"
)

// ErrNoImageFile is ReadImageFile's answer when the image has nothing at
// the path.
var ErrNoImageFile = errors.New("no such file in the image")

// ErrNotImageFile is ReadImageFile's answer when the path is not a regular
// file (a directory, a link, a device).
var ErrNotImageFile = errors.New("not a regular file in the image")

// ErrImageFileTooLarge is ReadImageFile's answer when the file is larger
// than the caller allows.
var ErrImageFileTooLarge = errors.New("file in the image is too large")

// ReadImageFile copies one regular file, at most maxBytes long, out of an
// image through a created, never started container (ImageFileConfig), and
// removes the container on every path. Each Docker call has the runner's
// call timeout; the container's deadline label is two call timeouts away.
// The image must be on the engine (PullImage fetches one first).
func (r *Runner) ReadImageFile(ctx context.Context, image, path string, maxBytes int64) ([]byte, error) {
	// The deadline covers both calls that use the container (create, then
	// copy), so no reaper removes it while it is being read.
	cfg, host, err := ImageFileConfig(image, r.opts.WorkerID, time.Now().Add(2*r.opts.CallTimeout))
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	defer cancel()
	created, err := r.docker.ContainerCreate(cctx, cfg, host, nil, nil, "")
	if err != nil {
		return nil, fmt.Errorf("read %s from image %s: create container: %w", path, image, err)
	}
	defer r.remove(ctx, created.ID, r.log.With("container", shortID(created.ID), "image", image))

	// The copy's stream is read under its own call timeout too: an engine
	// that stalls mid-archive does not hold the caller.
	rctx, rcancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	defer rcancel()
	rc, _, err := r.docker.CopyFromContainer(rctx, created.ID, path)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("image %s: %s: %w", image, path, ErrNoImageFile)
		}
		return nil, fmt.Errorf("read %s from image %s: %w", path, image, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("image %s: %s: %w", image, path, ErrNotImageFile)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s from image %s: %w", path, image, err)
	}
	if h.Typeflag != tar.TypeReg {
		// The archive of a path holds that path first: anything
		// else than a regular file is refused, links included.
		return nil, fmt.Errorf("image %s: %s: %w", image, path, ErrNotImageFile)
	}
	data, err := io.ReadAll(io.LimitReader(tr, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s from image %s: %w", path, image, err)
	}
	if int64(len(data)) > maxBytes {
		return nil, fmt.Errorf("image %s: %s is over %d bytes: %w", image, path, maxBytes, ErrImageFileTooLarge)
	}
	return data, nil
}
