package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	cerrdefs "github.com/containerd/errdefs"
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
	if strings.HasPrefix(e.image, "sha256:") {
		return fmt.Sprintf("image %s is not on worker %s: af submit pinned it by its image id (it was built or loaded by hand where it was submitted, not pulled from a registry), so this host needs that same build: `docker save` it there and `docker load` it here (a separate build has another id), or push it to a registry and submit REGISTRY/NAME:TAG", e.image, e.worker)
	}
	return fmt.Sprintf("image %s is not on worker %s, which does not pull: start workers with --pull (AF_PULL=1) to pull images from their registry, or build it there with `make images`, or `docker save` it and `docker load` it on every worker host", e.image, e.worker)
}

// badSpecError is an image whose analysis-tools.yml is missing or wrong.
type badSpecError struct{ err error }

func (e *badSpecError) Error() string { return e.err.Error() }
func (e *badSpecError) Unwrap() error { return e.err }

// specCache reads /etc/analysis-tools.yml out of job images, once per
// image id: a tag moved to a new build gets its new spec.
type specCache struct {
	docker   *client.Client // image inspection only
	runner   *runner.Runner // reads the file
	puller   *puller        // nil: the worker does not pull
	workerID string
	timeout  time.Duration

	mu    sync.Mutex
	specs map[string]jobspec.Spec // by image id
}

// maxSpecBytes bounds the analysis-tools.yml read out of an image.
const maxSpecBytes = 1 << 20

func newSpecCache(d *client.Client, r *runner.Runner, workerID string) *specCache {
	return &specCache{docker: d, runner: r, workerID: workerID, timeout: 30 * time.Second, specs: map[string]jobspec.Spec{}}
}

func (c *specCache) get(ctx context.Context, image string) (jobspec.Spec, error) {
	ictx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	insp, err := c.docker.ImageInspect(ictx, image)
	if err != nil && cerrdefs.IsNotFound(err) && c.puller != nil {
		if perr := c.puller.pull(ctx, image); perr != nil {
			return jobspec.Spec{}, perr
		}
		pctx, pcancel := context.WithTimeout(ctx, c.timeout)
		insp, err = c.docker.ImageInspect(pctx, image)
		pcancel()
	}
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

// readFile reads one file out of an image through the runner (which
// creates every container); a file the image lacks, or one that is not a
// regular file or is too large, is the image's fault.
func (c *specCache) readFile(ctx context.Context, image, path string) ([]byte, error) {
	data, err := c.runner.ReadImageFile(ctx, image, path, maxSpecBytes)
	switch {
	case errors.Is(err, runner.ErrNoImageFile):
		return nil, &badSpecError{err: fmt.Errorf("image %s has no %s: a job image must say how to run the job there (see analysis-tools.yml in the af repository)", image, path)}
	case errors.Is(err, runner.ErrNotImageFile):
		return nil, &badSpecError{err: fmt.Errorf("image %s: %s is not a file", image, path)}
	case errors.Is(err, runner.ErrImageFileTooLarge):
		return nil, &badSpecError{err: err}
	}
	return data, err
}
