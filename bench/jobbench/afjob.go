package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/decompress"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
)

// jobRun is one af job, end to end.
type jobRun struct {
	image   string
	gzip    decompress.GzipDecoder // the workers' resolved decoder
	elapsed time.Duration          // graph created → graph resolved
	raw     int64                  // uncompressed bytes the mappers read
	result  string
	mappers int
	// Per-task times from the queue (claimed → resolved).
	mapperTimes []time.Duration
	reducer     time.Duration
	// firstClaim is graph creation → the first mapper's claim.
	firstClaim time.Duration
	// lastMapper is graph creation → the last mapper's resolution.
	lastMapper time.Duration
	// CPU time of this process (queue server, worker: download, gunzip,
	// framing, sorting, uploads) and of the job containers.
	workerCPU, containerCPU time.Duration
}

// sealedCredentials mints read-only credentials for the files with
// MinIO's STS and seals them, bound to graphID and image, to the pool key,
// as `af submit` does (submit.SealCredentials).
func (e *env) sealedCredentials(ctx context.Context, graphID, image string, files []taskdef.InputFile) (string, error) {
	cfg, err := awsconf.Load(ctx, awsconf.Options{
		Endpoint: e.minio.Endpoint, Region: awsconf.DefaultRegion,
		AccessKeyID: miniotest.RootUser, SecretAccessKey: miniotest.RootPassword,
	})
	if err != nil {
		return "", err
	}
	sc, err := submit.SealCredentials(ctx, cfg, e.pub, submit.CredentialsRequest{
		GraphID: graphID, Image: image, Bucket: inputBucket, Prefix: dataPrefix + "/", Schema: layout.Telemetry().Fields, Files: files, TTL: time.Hour,
	})
	if err != nil {
		return "", err
	}
	return sc.Sealed, nil
}

// runJob submits the os-count graph of image over the set and waits for it.
func (e *env) runJob(ctx context.Context, set *synth.Set, image string, filesPerTask int) (jobRun, error) {
	files := make([]taskdef.InputFile, len(set.Files))
	for i, f := range set.Files {
		files[i] = taskdef.InputFile{Key: f.Key, Size: int64(len(f.Body))}
	}
	// Credentials are sealed to their graph, so each run mints its own
	// (before the timed span, which starts at graph creation).
	graphID := taskdef.NewID()
	sealed, err := e.sealedCredentials(ctx, graphID, image, files)
	if err != nil {
		return jobRun{}, err
	}
	g, err := submit.BuildGraph(submit.GraphOptions{
		GraphID: graphID, Name: "os-count bench", Owner: "bench@example.com", Image: image, Bucket: inputBucket, Prefix: dataPrefix + "/",
		Schema: layout.Telemetry().Fields, Files: files, MaxFilesPerTask: filesPerTask,
		// Files per task alone shape the loads (one mapper per slot).
		MaxLoadBytes:      1 << 50,
		SealedCredentials: sealed, MaxRunTime: 30 * time.Minute, Deadline: time.Hour,
	})
	if err != nil {
		return jobRun{}, err
	}
	gs, err := e.runGraph(ctx, g)
	if err != nil {
		return jobRun{}, err
	}
	run := jobRun{image: image, elapsed: gs.Resolved.Sub(gs.Created)}
	var first, last time.Time
	for _, ts := range gs.Tasks {
		r := ts.Runs[len(ts.Runs)-1]
		d := r.Resolved.Sub(*r.Started)
		if ts.Kind == taskdef.KindReducer {
			run.reducer = d
			continue
		}
		run.mappers++
		run.raw += r.Stats.RawBytes
		run.mapperTimes = append(run.mapperTimes, d)
		if first.IsZero() || r.Started.Before(first) {
			first = *r.Started
		}
		if r.Resolved.After(last) {
			last = *r.Resolved
		}
	}
	run.firstClaim, run.lastMapper = first.Sub(gs.Created), last.Sub(gs.Created)
	rc, err := e.submit.GetArtifact(ctx, gs.ResultTaskID, -1, taskdef.ResultArtifact)
	if err != nil {
		return run, fmt.Errorf("%s: result: %w", image, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	run.result = string(b)
	return run, err
}

// runGraph creates g, waits until it resolves and returns its status; a
// graph that does not complete is an error naming the failed tasks.
func (e *env) runGraph(ctx context.Context, g taskdef.Graph) (taskdef.GraphStatus, error) {
	if _, err := e.submit.CreateGraph(ctx, g); err != nil {
		return taskdef.GraphStatus{}, fmt.Errorf("create graph: %w", err)
	}
	deadline := time.Now().Add(20 * time.Minute)
	for {
		gs, err := e.submit.Graph(ctx, g.GraphID)
		if err != nil {
			return gs, err
		}
		if gs.State != taskdef.GraphRunning {
			if gs.State != taskdef.GraphCompleted {
				var bad []string
				for _, ts := range gs.Tasks {
					if ts.State != taskdef.StateCompleted && len(ts.Runs) > 0 {
						bad = append(bad, fmt.Sprintf("%s %s: %s", ts.Name, ts.State, ts.Runs[len(ts.Runs)-1].Message))
					}
				}
				return gs, fmt.Errorf("graph %s (%s) ended %s: %s", g.GraphID, g.Name, gs.State, strings.Join(bad, "; "))
			}
			if gs.Resolved == nil {
				return gs, fmt.Errorf("graph %s completed without a resolved time", g.GraphID)
			}
			return gs, nil
		}
		if time.Now().After(deadline) {
			return gs, fmt.Errorf("graph %s did not resolve in 20 minutes", g.GraphID)
		}
		// The queue records the resolution time; polling only notices it.
		time.Sleep(200 * time.Millisecond)
	}
}

// fixedCost runs n mappers with no input files and their reducer, and
// returns each task's claimed → resolved time: what a task costs before
// it reads a byte (container create/start/remove, helper start, queue
// round trips, artifact uploads).
func (e *env) fixedCost(ctx context.Context, image string, n int) (mappers []time.Duration, reducer time.Duration, err error) {
	files := make([]taskdef.InputFile, n)
	for i := range files {
		files[i] = taskdef.InputFile{Key: fmt.Sprintf("none/%d", i), Size: 1}
	}
	g, err := submit.BuildGraph(submit.GraphOptions{
		Name: "fixed cost", Owner: "bench@example.com", Image: image, Files: files, MaxFilesPerTask: 1,
		MaxRunTime: 5 * time.Minute, Deadline: time.Hour,
	})
	if err != nil {
		return nil, 0, err
	}
	for i := range g.Tasks {
		g.Tasks[i].Task.Payload.Inputs = nil
	}
	gs, err := e.runGraph(ctx, g)
	if err != nil {
		return nil, 0, err
	}
	for _, ts := range gs.Tasks {
		r := ts.Runs[len(ts.Runs)-1]
		d := r.Resolved.Sub(*r.Started)
		if ts.Kind == taskdef.KindReducer {
			reducer = d
		} else {
			mappers = append(mappers, d)
		}
	}
	return mappers, reducer, nil
}

// quantile returns the q-quantile (nearest rank) of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}
