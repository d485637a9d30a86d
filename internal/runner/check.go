package runner

// This file: short check commands in a job's image (af submit compiles a
// Python job before posting it), in the same locked-down container as a
// task's but with no scratch dir and no input.

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// CheckTaskID is the LabelTaskID of the containers RunCheck creates: they
// belong to no task.
const CheckTaskID = "image-check"

// Limits of a check container.
const (
	checkMemoryBytes = 256 << 20
	checkPids        = 64
	checkOutputMax   = 64 << 10
)

// CheckConfig is the container RunCheck runs cmd in: no network, no
// capabilities, no privilege escalation, the default non-root user, a
// read-only root with a small tmpfs /tmp, memory, CPU and pids limits,
// and the runner's labels with a deadline, so any worker's reaper removes
// it should its creator die.
func CheckConfig(image, workerID string, cmd []string, deadline time.Time) (*container.Config, *container.HostConfig, error) {
	switch {
	case image == "":
		return nil, nil, configErr("no image")
	case workerID == "":
		return nil, nil, errors.New("image check has no worker id")
	case deadline.IsZero():
		return nil, nil, errors.New("image check has no deadline")
	case len(cmd) == 0:
		return nil, nil, errors.New("image check has no command")
	}
	pids := int64(checkPids)
	initProc := true
	cfg := &container.Config{
		Image: image, Entrypoint: []string{}, Cmd: cmd, User: DefaultUser,
		Env:          []string{"HOME=/tmp", "PYTHONDONTWRITEBYTECODE=1"},
		AttachStdout: true, AttachStderr: true, NetworkDisabled: true,
		Labels: map[string]string{
			LabelManaged:  "true",
			LabelTaskID:   CheckTaskID,
			LabelWorkerID: workerID,
			LabelDeadline: FormatDeadline(deadline),
		},
	}
	host := &container.HostConfig{
		NetworkMode:    "none",
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": TmpfsOptions},
		IpcMode:        container.IPCModePrivate,
		LogConfig:      container.LogConfig{Type: "none"},
		Init:           &initProc,
		OomScoreAdj:    500,
		Resources: container.Resources{
			Memory: checkMemoryBytes, MemorySwap: checkMemoryBytes,
			NanoCPUs: int64(math.Round(1e9)), PidsLimit: &pids,
		},
	}
	return cfg, host, nil
}

// CheckResult is how a check command ended: its exit code and its output
// (stdout and stderr together, the first 64 KiB).
type CheckResult struct {
	ExitCode int
	Output   string
}

// RunCheck runs cmd in image (CheckConfig) for at most timeout and
// removes the container on every path. The image must be on the engine.
func (r *Runner) RunCheck(ctx context.Context, image string, cmd []string, timeout time.Duration) (CheckResult, error) {
	var res CheckResult
	cfg, host, err := CheckConfig(image, r.opts.WorkerID, cmd, time.Now().Add(timeout+2*r.opts.CallTimeout))
	if err != nil {
		return res, err
	}
	cctx, cancel := r.call(ctx)
	created, err := r.docker.ContainerCreate(cctx, cfg, host, nil, nil, "")
	cancel()
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return res, fmt.Errorf("image %s is not on this Docker engine: %w", image, err)
		}
		return res, fmt.Errorf("check image %s: create container: %w", image, err)
	}
	log := r.log.With("container", shortID(created.ID), "image", image)
	defer r.remove(ctx, created.ID, log)
	cctx, cancel = r.call(ctx)
	hj, err := r.docker.ContainerAttach(cctx, created.ID, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	cancel()
	if err != nil {
		return res, fmt.Errorf("check image %s: attach: %w", image, err)
	}
	defer hj.Close()
	waitCtx, stopWait := context.WithTimeout(ctx, timeout)
	defer stopWait()
	waitC, waitErrC := r.docker.ContainerWait(waitCtx, created.ID, container.WaitConditionNextExit)
	out := &cappedBuffer{max: checkOutputMax}
	copied := make(chan struct{})
	go func() {
		_, _ = stdcopy.StdCopy(out, out, hj.Reader)
		close(copied)
	}()
	cctx, cancel = r.call(ctx)
	err = r.docker.ContainerStart(cctx, created.ID, container.StartOptions{})
	cancel()
	if err != nil {
		return res, fmt.Errorf("check image %s: start: %w", image, err)
	}
	select {
	case w := <-waitC:
		res.ExitCode = int(w.StatusCode)
	case err := <-waitErrC:
		r.kill(ctx, created.ID, log)
		if waitCtx.Err() != nil && ctx.Err() == nil {
			return res, fmt.Errorf("check image %s: %v did not finish within %s", image, cmd, timeout)
		}
		return res, fmt.Errorf("check image %s: wait: %w", image, err)
	}
	select {
	case <-copied:
	case <-time.After(r.opts.CallTimeout):
	}
	res.Output = out.String()
	return res, nil
}

// cappedBuffer keeps the first max bytes written to it.
type cappedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *cappedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ImageFileHead returns the first n bytes of a regular file in an image
// and its mode, through a created, never started container as
// ReadImageFile does: enough to tell a program from a script without
// copying a large binary.
func (r *Runner) ImageFileHead(ctx context.Context, image, path string, n int) ([]byte, fs.FileMode, error) {
	cfg, host, err := ImageFileConfig(image, r.opts.WorkerID, time.Now().Add(2*r.opts.CallTimeout))
	if err != nil {
		return nil, 0, err
	}
	cctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	defer cancel()
	created, err := r.docker.ContainerCreate(cctx, cfg, host, nil, nil, "")
	if err != nil {
		return nil, 0, fmt.Errorf("read %s from image %s: create container: %w", path, image, err)
	}
	defer r.remove(ctx, created.ID, r.log.With("container", shortID(created.ID), "image", image))
	rctx, rcancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	defer rcancel()
	rc, _, err := r.docker.CopyFromContainer(rctx, created.ID, path)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, 0, fmt.Errorf("image %s: %s: %w", image, path, ErrNoImageFile)
		}
		return nil, 0, fmt.Errorf("read %s from image %s: %w", path, image, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("image %s: %s: %w", image, path, ErrNotImageFile)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read %s from image %s: %w", path, image, err)
	}
	if h.Typeflag != tar.TypeReg {
		return nil, h.FileInfo().Mode(), fmt.Errorf("image %s: %s: %w", image, path, ErrNotImageFile)
	}
	head := make([]byte, n)
	k, err := io.ReadFull(tr, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("read %s from image %s: %w", path, image, err)
	}
	return head[:k], h.FileInfo().Mode(), nil
}
