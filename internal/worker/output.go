package worker

// This file: a run's directory and the job's output in it.

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/af-project/af/internal/jobspec"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/scratchdir"
	"github.com/af-project/af/internal/taskdef"
)

// taskDir is a run's directory, <ScratchRoot>/<taskId>-<runId> (private
// to the worker), with two dirs in it: job, bind-mounted as the job's
// /scratch and written by the job, and work, the worker's own (the sorted
// output, sort spill files, the reducer's inputs), which the job cannot
// reach, so it cannot plant links among the files the worker writes.
type taskDir struct {
	root, job, work string
	// scratch is job, opened before the container starts; the job's
	// output is only ever opened through it.
	scratch *scratchdir.Dir
}

func (w *Worker) prepareTaskDir(c taskdef.Claim) (*taskDir, error) {
	root := filepath.Join(w.cfg.ScratchRoot, c.TaskID+"-"+strconv.Itoa(c.RunID))
	// RemoveAll follows no link: it unlinks them.
	_ = os.RemoveAll(root)
	td := &taskDir{root: root, job: filepath.Join(root, "job"), work: filepath.Join(root, "work")}
	for _, d := range []string{root, td.work} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return td, err
		}
	}
	uid, gid, err := runner.ParseUser(jobspec.UserID)
	if err != nil {
		return td, err
	}
	if _, _, err := runner.PrepareScratch(td.job, uid, gid); err != nil {
		return td, err
	}
	td.scratch, err = scratchdir.Open(td.job, runner.ScratchMount)
	return td, err
}

func (td *taskDir) close() {
	if td.scratch != nil {
		td.scratch.Close()
	}
	_ = os.RemoveAll(td.root)
}

// openOutput opens the job's output, refusing anything but a regular
// file within the scratch limit: the job's fault, a failure with a
// message that says what it found.
func (w *Worker) openOutput(td *taskDir) (*os.File, int64, *outcome) {
	f, size, err := td.scratch.OpenRegular(runner.OutputName, max(w.cfg.MaxScratchBytes, 0))
	if err != nil {
		var ue *scratchdir.UnsafeError
		if errors.As(err, &ue) {
			o := failed("%v", ue)
			return nil, 0, &o
		}
		o := exception(taskdef.ReasonInternalError, "open the job's output: %v", err)
		return nil, 0, &o
	}
	return f, size, nil
}

// ctxReader stops a long read (sorting or counting a large output) once
// the run is canceled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// uploadFile uploads a file of the worker's own dir.
func (w *Worker) uploadFile(ctx context.Context, c taskdef.Claim, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return w.cfg.Queue.Claimed(c).UploadArtifact(ctx, name, "text/plain; charset=utf-8", f, fi.Size())
}
