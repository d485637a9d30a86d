package worker

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/jobspec"
	"github.com/af-project/af/internal/runner"
)

// jobS3 is the S3 client a mapper reads its inputs with: the job's
// credentials, used only at this worker's own endpoint. The envelope's
// endpoint must be that one (anything else is a submitter pointing the
// worker, which runs outside the job's network sandbox, at a host of its
// choosing); its region is used only when the worker names none, and
// Open has checked its shape.
func (w *Worker) jobS3(ctx context.Context, cr creds.Credentials) (*s3.Client, error) {
	mine := w.cfg.S3.Endpoint
	theirs := cr.Endpoint
	if theirs != "" {
		n, err := awsconf.NormalizeEndpoint(theirs)
		if err != nil {
			return nil, err
		}
		theirs = n
	}
	if theirs != mine {
		return nil, fmt.Errorf("they were minted for S3 endpoint %s, and this worker reads S3 only at %s (its --s3-endpoint, AF_WORKER_S3_ENDPOINT or AWS configuration); submit with the pool's own S3 endpoint (AWS_ENDPOINT_URL) or run the job on workers configured for that one",
			endpointName(theirs), endpointName(mine))
	}
	cr.Endpoint = mine
	if w.cfg.S3.Region != "" {
		cr.Region = w.cfg.S3.Region
	}
	cfg, err := cr.AWSConfig(ctx)
	if err != nil {
		return nil, err
	}
	return awsconf.PinnedS3(cfg, mine), nil
}

// endpointName shows an endpoint in messages ("" is AWS).
func endpointName(ep string) string {
	if ep == "" {
		return "AWS S3 (no endpoint)"
	}
	return ep
}

// imageMissingError says the task's image is not on this worker.
type imageMissingError struct{ image, worker string }

func (e *imageMissingError) Error() string {
	return fmt.Sprintf("image %s is not on worker %s: build it there with `make images`, or `docker save` it and `docker load` it on every worker host (af never pulls from a registry)", e.image, e.worker)
}

// badSpecError is an image whose analysis-tools.yml is missing or wrong.
type badSpecError struct{ err error }

func (e *badSpecError) Error() string { return e.err.Error() }
func (e *badSpecError) Unwrap() error { return e.err }

// specCache reads /etc/analysis-tools.yml out of job images, once per
// image id: a tag moved to a new build gets its new spec.
type specCache struct {
	docker   *client.Client
	workerID string
	timeout  time.Duration

	mu    sync.Mutex
	specs map[string]jobspec.Spec // by image id
}

func newSpecCache(d *client.Client, workerID string) *specCache {
	return &specCache{docker: d, workerID: workerID, timeout: 30 * time.Second, specs: map[string]jobspec.Spec{}}
}

func (c *specCache) get(ctx context.Context, image string) (jobspec.Spec, error) {
	ictx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	insp, err := c.docker.ImageInspect(ictx, image)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return jobspec.Spec{}, &imageMissingError{image: image, worker: c.workerID}
		}
		return jobspec.Spec{}, fmt.Errorf("inspect image %s: %w", image, err)
	}
	c.mu.Lock()
	s, ok := c.specs[insp.ID]
	c.mu.Unlock()
	if ok {
		return s, nil
	}
	data, err := c.readFile(ctx, image, jobspec.Path)
	if err != nil {
		return jobspec.Spec{}, err
	}
	s, err = jobspec.Parse(image+":"+jobspec.Path, data)
	if err != nil {
		return jobspec.Spec{}, &badSpecError{err: err}
	}
	c.mu.Lock()
	c.specs[insp.ID] = s
	c.mu.Unlock()
	return s, nil
}

// readFile copies one file out of an image through a created, never
// started container, so nothing of the image runs.
func (c *specCache) readFile(ctx context.Context, image, path string) ([]byte, error) {
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	created, err := c.docker.ContainerCreate(cctx, &container.Config{
		Image: image,
		// Images FROM scratch have no command; this one never runs.
		Cmd:             []string{"/af-spec-reader-never-runs"},
		NetworkDisabled: true,
		Labels: map[string]string{
			runner.LabelManaged: "true", runner.LabelWorkerID: c.workerID, runner.LabelTaskID: "spec-reader",
			// Should this worker die before removing it, any worker's
			// reaper does.
			runner.LabelDeadline: runner.FormatDeadline(time.Now().Add(c.timeout)),
		},
	}, &container.HostConfig{NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		return nil, fmt.Errorf("read %s from image %s: %w", path, image, err)
	}
	defer func() {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer rcancel()
		_ = c.docker.ContainerRemove(rctx, created.ID, container.RemoveOptions{Force: true})
	}()
	rc, _, err := c.docker.CopyFromContainer(cctx, created.ID, path)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, &badSpecError{err: fmt.Errorf("image %s has no %s: a job image must say how to run the job there (see analysis-tools.yml in the af repository)", image, path)}
		}
		return nil, fmt.Errorf("read %s from image %s: %w", path, image, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, &badSpecError{err: fmt.Errorf("image %s: %s is not a file", image, path)}
		}
		if err != nil {
			return nil, fmt.Errorf("read %s from image %s: %w", path, image, err)
		}
		if h.Typeflag == tar.TypeReg {
			return io.ReadAll(io.LimitReader(tr, 1<<20))
		}
	}
}
