package worker

// This file: tasks run without a queue (af run --local), through the same
// code as a claimed run from the payload check to the job's output.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/af-project/af/internal/decompress"
	"github.com/af-project/af/internal/jobspec"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/taskdef"
)

// Local runs a graph's tasks on this host the way a worker runs claimed
// ones: the same payload checks, job spec, scratch dir, locked-down
// container, input framing and decompression, mapper sort, reducer merge,
// output checks and failure messages. Only where inputs come from and
// results go differ: a mapper reads its inputs through the task's
// ObjectGetter (a local directory, or the user's own S3 client; no sealed
// credentials), and results are written to the task's Output instead of
// being uploaded. It holds no queue, key or state dir.
type Local struct{ w *Worker }

// NewLocal checks cfg and fills its defaults as New does; Queue, Key and
// StateDir are not used.
func NewLocal(cfg Config) (*Local, error) {
	w, err := newWorker(cfg)
	if err != nil {
		return nil, err
	}
	return &Local{w: w}, nil
}

// Spec reads the image's job spec (/etc/analysis-tools.yml) as a worker
// does. An image missing from this host's engine, or a missing or bad
// spec, is an error that says what to do.
func (l *Local) Spec(ctx context.Context, image string) (jobspec.Spec, error) {
	s, err := l.w.specs.get(ctx, image)
	var missing *imageMissingError
	if errors.As(err, &missing) {
		return s, fmt.Errorf("image %s is not on this host's Docker engine: build it (`docker build -t %s .` in the job's directory, or `make images` for the examples) or `docker load` it", image, image)
	}
	return s, err
}

// LocalTask is one task of a graph to run locally.
type LocalTask struct {
	// TaskID names the task (its container's name and labels); a
	// taskdef.NewID.
	TaskID string
	// Task is the task as af submit would post it (its payload above all);
	// a mapper's needs no CREDENTIALS.
	Task taskdef.Task
	// Objects reads a mapper's inputs (Task.Payload.Bucket's keys).
	Objects ObjectGetter
	// Inputs are a reducer's: the mappers' sorted outputs, in order.
	Inputs []LocalInput
	// Output receives the result: a mapper's sorted key/value lines, or
	// the reducer's job result. It is written only when the task
	// completed.
	Output io.Writer
	// Log receives the task's log as it is written: the worker's lines
	// and the job's output. Nil discards.
	Log io.Writer
}

// LocalInput is one mapper's output, an input of a local reducer.
type LocalInput struct {
	// TaskID is the mapper's, named in merge errors.
	TaskID string
	// Path is the file holding its sorted output.
	Path string
}

// LocalResult is how a local task ended, as a worker would report it.
type LocalResult struct {
	// State is completed, failed (the job's fault) or exception.
	State taskdef.TaskState
	// Reason is an exception's reason.
	Reason  string
	Message string
	Stats   taskdef.Stats
}

// Run runs one task to its end.
func (l *Local) Run(ctx context.Context, t LocalTask) LocalResult {
	w := l.w
	tlog := &taskLog{clock: w.clock, tee: t.Log}
	p := t.Task.Payload
	tlog.logf("local run of task %s (%s %q, image %s)", t.TaskID, p.Kind, t.Task.Metadata.Name, p.Image)
	start := w.clock.Now()
	c := taskdef.Claim{TaskID: t.TaskID, Task: t.Task}
	progress := &progressSource{}
	out := w.executeWith(ctx, c, tlog, progress, func(spec jobspec.Spec, td *taskDir) outcome {
		if p.Kind == taskdef.KindMapper {
			return w.localMapper(ctx, c, spec, td, tlog, progress, t)
		}
		return w.localReducer(ctx, c, spec, td, tlog, progress, t)
	})
	if ctx.Err() != nil && out.state != taskdef.StateCompleted {
		out = exception(taskdef.ReasonCanceled, "interrupted before the task finished")
		out.stats = progress.stats()
	}
	tlog.logf("result: %s%s after %s: %s", out.state, suffix(out.reason), w.clock.Now().Sub(start).Round(time.Millisecond), out.message)
	return LocalResult{State: out.state, Reason: out.reason, Message: out.message, Stats: out.stats}
}

func (w *Worker) localMapper(ctx context.Context, c taskdef.Claim, spec jobspec.Spec, td *taskDir, tlog *taskLog, progress *progressSource, t LocalTask) outcome {
	f, err := w.newFeeder(c.Task.Payload, spec, tlog)
	if err != nil {
		return exception(taskdef.ReasonMalformedPayload, "%v", err)
	}
	f.s3 = t.Objects
	if f.s3 == nil && len(c.Task.Payload.Inputs) > 0 {
		return exception(taskdef.ReasonInternalError, "local mapper has inputs and nothing to read them with")
	}
	out, sorted := w.mapInputs(ctx, c, spec, td, tlog, progress, f)
	if sorted == "" {
		return out
	}
	sf, err := os.Open(sorted)
	if err == nil {
		_, err = io.Copy(t.Output, sf)
		sf.Close()
	}
	if err != nil {
		o := exception(taskdef.ReasonInternalError, "write the mapper's output: %v", err)
		o.stats = out.stats
		return o
	}
	return out
}

func (w *Worker) localReducer(ctx context.Context, c taskdef.Claim, spec jobspec.Spec, td *taskDir, tlog *taskLog, progress *progressSource, t LocalTask) outcome {
	tlog.logf("reducer: merging the results of %d mapper tasks; job %s %v", len(t.Inputs), spec.Language, spec.Command(c.Task.Payload.Kind))
	paths := make([]string, len(t.Inputs))
	ids := make([]string, len(t.Inputs))
	var bytesIn int64
	for i, in := range t.Inputs {
		fi, err := os.Stat(in.Path)
		if err != nil {
			return exception(taskdef.ReasonInternalError, "result of task %s: %v", in.TaskID, err)
		}
		paths[i], ids[i] = in.Path, in.TaskID
		bytesIn += fi.Size()
	}
	out, output, size := w.reduceInputs(ctx, c, spec, td, tlog, progress, paths, ids, bytesIn)
	if output == nil {
		return out
	}
	defer output.Close()
	if _, err := io.Copy(t.Output, io.NewSectionReader(output, 0, size)); err != nil {
		o := exception(taskdef.ReasonInternalError, "write the job result: %v", err)
		o.stats = out.stats
		return o
	}
	tlog.logf("reducer output: %d lines", out.stats.RecordsOut)
	return out
}

// Feed writes the inputs of a mapper payload to out in the framed format
// (internal/records) exactly as a worker streams them into a mapper's
// container: in the payload's file order, each file decompressed by its
// extension, its bad lines dropped. It is what `af sample` shows. Bad
// files and lines are told to logf and never end the feed; an error is
// one of reading the objects or of writing out.
func Feed(ctx context.Context, p taskdef.Payload, objects ObjectGetter, out io.Writer, logf func(format string, args ...any)) error {
	open, err := decompress.NewOpener(decompress.GzipAuto)
	if err != nil {
		return err
	}
	f := &feeder{
		s3: objects, bucket: p.Bucket, prefix: p.Prefix, schema: layout.Schema{Fields: p.Schema}, parallel: 4,
		policy: inputPolicy{maxBadFiles: math.MaxInt64, maxBadLineRatio: 1},
		open:   open, logLine: logf, retry: s3Retry{},
	}
	if len(p.Schema) == 0 {
		f.schema = layout.Telemetry()
	}
	return f.feed(ctx, p.Inputs, out)
}
