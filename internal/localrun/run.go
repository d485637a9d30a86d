package localrun

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/worker"
)

// DefaultMappers is how many mapper tasks a local run splits its files
// into by default: more than one, so the reducer merges several mappers'
// outputs (and a combine runs per mapper) as on the cluster.
const DefaultMappers = 2

// Options are one local run.
type Options struct {
	Image     string
	Selection Selection
	// Mappers splits the files into at most this many mapper tasks; 0
	// splits them as af submit does (MaxLoadBytes, MaxFilesPerTask alone).
	Mappers         int
	MaxLoadBytes    int64
	MaxFilesPerTask int
	// Parallel is how many mappers run at once (default 1).
	Parallel   int
	Env        map[string]string
	MaxRunTime time.Duration
	Limits     taskdef.Limits
	// MaxScratchBytes bounds each task's /scratch as a worker's
	// --max-scratch-bytes does (0: the worker's default).
	MaxScratchBytes int64
	// JobDir, when set, is a directory mounted read-only at /job in place
	// of the image's (--job-dir): the job's files as they are on this
	// host, so an edit runs without a docker build. The image still gives
	// the helper, the libraries and analysis-tools.yml.
	JobDir string

	// Docker is the engine; nil connects as the worker does
	// (runner.NewDockerClient).
	Docker *client.Client
	// TmpDir holds the run's scratch dirs and mapper outputs (default the
	// system's temporary dir); the run removes what it made there.
	TmpDir string
	// Result receives the reducer's result; Progress the plan, each task's
	// log (prefixed with its name) and its outcome. Nil discards.
	Result, Progress io.Writer
	Logger           *slog.Logger
	Clock            worker.Clock
}

// Summary says what a completed run did.
type Summary struct {
	Mappers int
	Files   int
	Bytes   int64
	// Tasks are every task's result, the mappers' first.
	Tasks    []TaskResult
	Duration time.Duration
}

// TaskResult is one task's name and result.
type TaskResult struct {
	Name   string
	Result worker.LocalResult
}

// TaskError is a task that did not complete: its message is the one a
// worker would report for it.
type TaskError struct {
	Task   string
	Result worker.LocalResult
}

func (e *TaskError) Error() string {
	state := string(e.Result.State)
	if e.Result.Reason != "" {
		state += " (" + e.Result.Reason + ")"
	}
	return fmt.Sprintf("%s %s: %s", e.Task, state, e.Result.Message)
}

// Failed says whether the job itself is at fault (a worker's failed, not
// exception).
func (e *TaskError) Failed() bool { return e.Result.State == taskdef.StateFailed }

// Run runs the job over the selection: its mappers (Parallel at a time),
// then its reducer over their sorted outputs, writing the result to
// o.Result. A task that does not complete ends the run with a *TaskError.
func Run(ctx context.Context, o Options) (Summary, error) {
	start := time.Now()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Result == nil {
		o.Result = io.Discard
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	sel := o.Selection
	if len(sel.Files) == 0 {
		return Summary{}, fmt.Errorf("%w in %s", ErrNoFiles, sel.Where)
	}
	maxFiles := o.MaxFilesPerTask
	if maxFiles <= 0 {
		maxFiles = submit.DefaultMaxFilesPerTask
	}
	if o.Mappers > 0 {
		maxFiles = min(maxFiles, (len(sel.Files)+o.Mappers-1)/o.Mappers)
	}
	g, err := submit.BuildGraph(submit.GraphOptions{
		Name: o.Image + " (local)", Image: o.Image, Bucket: sel.Bucket, Prefix: sel.Prefix, Schema: sel.Schema.Fields, Layout: sel.Schema.Layout(),
		Files: sel.Files, MaxLoadBytes: o.MaxLoadBytes, MaxFilesPerTask: maxFiles, Env: o.Env,
		MaxRunTime: o.MaxRunTime, Limits: o.Limits,
	})
	if err != nil {
		return Summary{}, err
	}
	mappers, reducer := g.Tasks[:len(g.Tasks)-1], g.Tasks[len(g.Tasks)-1]
	sum := Summary{Mappers: len(mappers), Files: len(sel.Files), Bytes: sel.Bytes()}

	tmp, err := os.MkdirTemp(o.TmpDir, "af-local-")
	if err != nil {
		return sum, fmt.Errorf("make the run's temporary dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	docker := o.Docker
	if docker == nil {
		if docker, err = runner.NewDockerClient(); err != nil {
			return sum, err
		}
		defer docker.Close()
	}
	// An id of its own per run: its containers' labels name it, and any
	// worker on the engine removes them past their deadline should this
	// process die.
	id := "af-local-" + taskdef.NewID()
	rn, err := runner.New(docker, runner.Options{Logger: o.Logger, WorkerID: id, Clock: o.Clock})
	if err != nil {
		return sum, err
	}
	local, err := worker.NewLocal(worker.Config{
		Docker: docker, Runner: rn, WorkerID: id, ScratchRoot: filepath.Join(tmp, "scratch"),
		MaxScratchBytes: o.MaxScratchBytes, Ceilings: worker.DefaultCeilings(), Logger: o.Logger, Clock: o.Clock,
		JobDir: o.JobDir,
	})
	if err != nil {
		return sum, err
	}
	if _, err := local.Spec(ctx, o.Image); err != nil {
		return sum, err
	}
	fmt.Fprintf(o.Progress, "af run --local: %d files, %d bytes from %s: %d mapper task(s) + 1 reducer, image %s\n",
		sum.Files, sum.Bytes, sel.Where, sum.Mappers, o.Image)

	outDir := filepath.Join(tmp, "results")
	if err := os.Mkdir(outDir, 0o700); err != nil {
		return sum, err
	}
	results := make([]worker.LocalResult, len(mappers))
	paths := make([]string, len(mappers))
	parallel := max(o.Parallel, 1)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, m := range mappers {
		paths[i] = filepath.Join(outDir, fmt.Sprintf("%06d-%s", i, m.TaskID))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = runTask(ctx, local, m, paths[i], &o, nil, sel.Objects)
		}()
	}
	wg.Wait()
	for i, m := range mappers {
		sum.Tasks = append(sum.Tasks, TaskResult{Name: m.Task.Metadata.Name, Result: results[i]})
	}
	for i, m := range mappers {
		if results[i].State != taskdef.StateCompleted {
			return sum, &TaskError{Task: m.Task.Metadata.Name, Result: results[i]}
		}
	}
	inputs := make([]worker.LocalInput, len(mappers))
	for i, m := range mappers {
		inputs[i] = worker.LocalInput{TaskID: m.TaskID, Path: paths[i]}
	}
	res := runTask(ctx, local, reducer, filepath.Join(outDir, "result"), &o, inputs, nil)
	sum.Tasks = append(sum.Tasks, TaskResult{Name: reducer.Task.Metadata.Name, Result: res})
	if res.State != taskdef.StateCompleted {
		return sum, &TaskError{Task: reducer.Task.Metadata.Name, Result: res}
	}
	f, err := os.Open(filepath.Join(outDir, "result"))
	if err != nil {
		return sum, err
	}
	defer f.Close()
	if _, err := io.Copy(o.Result, f); err != nil {
		return sum, fmt.Errorf("write the result: %w", err)
	}
	sum.Duration = time.Since(start)
	return sum, nil
}

// runTask runs one task with its output in path and its log on
// o.Progress, each line prefixed with the task's name.
func runTask(ctx context.Context, local *worker.Local, t taskdef.GraphTask, path string, o *Options, inputs []worker.LocalInput, objects worker.ObjectGetter) worker.LocalResult {
	name := t.Task.Metadata.Name
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return worker.LocalResult{State: taskdef.StateException, Reason: taskdef.ReasonInternalError, Message: fmt.Sprintf("make the task's output file: %v", err)}
	}
	log := newPrefixWriter(o.Progress, "["+name+"] ")
	res := local.Run(ctx, worker.LocalTask{
		TaskID: t.TaskID, Task: t.Task, Objects: objects, Inputs: inputs, Output: f, Log: log,
	})
	log.Flush()
	if err := f.Close(); err != nil && res.State == taskdef.StateCompleted {
		res = worker.LocalResult{State: taskdef.StateException, Reason: taskdef.ReasonInternalError, Message: fmt.Sprintf("write the task's output: %v", err), Stats: res.Stats}
	}
	return res
}

// prefixWriter writes whole lines to w, each with a prefix; writers of
// several tasks share w through one lock.
type prefixWriter struct {
	w      io.Writer
	prefix string
	buf    bytes.Buffer
}

var progressMu sync.Mutex

func newPrefixWriter(w io.Writer, prefix string) *prefixWriter {
	return &prefixWriter{w: w, prefix: prefix}
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf.Write(b)
	for {
		i := bytes.IndexByte(p.buf.Bytes(), '\n')
		if i < 0 {
			break
		}
		p.emit(p.buf.Next(i + 1))
	}
	return len(b), nil
}

func (p *prefixWriter) emit(line []byte) {
	progressMu.Lock()
	defer progressMu.Unlock()
	bw := bufio.NewWriter(p.w)
	bw.WriteString(p.prefix)
	// The job's output is hostile: no control character of its reaches
	// the terminal (escape sequences could rewrite what it shows).
	line = bytes.TrimSuffix(line, []byte{'\n'})
	for _, c := range line {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			fmt.Fprintf(bw, "\\x%02x", c)
			continue
		}
		bw.WriteByte(c)
	}
	bw.WriteByte('\n')
	_ = bw.Flush()
}

// Flush writes a last line without its newline.
func (p *prefixWriter) Flush() {
	if p.buf.Len() > 0 {
		p.emit(p.buf.Bytes())
		p.buf.Reset()
	}
}
