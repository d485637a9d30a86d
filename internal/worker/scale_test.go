package worker_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
)

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func procFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// fdKinds counts this process's open files by kind: "merge input" are the
// reducer's downloaded mapper results and merge passes, "file" other
// files, the rest sockets, pipes and anon inodes.
func fdKinds() map[string]int {
	ents, _ := os.ReadDir("/proc/self/fd")
	kinds := map[string]int{}
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue
		}
		k, _, _ := strings.Cut(l, ":")
		if strings.HasPrefix(l, "/") {
			k = "file"
			if strings.Contains(l, "/inputs/") || strings.Contains(l, "af-merge-pass") {
				k = "merge input"
			}
		}
		kinds[k]++
	}
	return kinds
}

// procStatusKiB reads a "Name:   N kB" line of /proc/self/status.
func procStatusKiB(name string) int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// TestScaleReducerOpenFiles runs a graph of one mapper per tiny gzip file
// (AF_SCALE_MAPPERS, default 60) and one reducer on af/os-count-go, with
// in-process workers (AF_SCALE_WORKERS of capacity 1, default 2) whose
// reducer merges at most AF_SCALE_FANIN (default 16) results at once. It
// samples this process's open files and peak RSS (VmHWM, reset when the
// reducer starts) while the reducer runs and asserts the open files stay
// within the fan-in, below one per mapper. `make bench` runs it with 3,000
// mappers (bench/70-scale.sh); it prints a SCALE line with the figures.
func TestScaleReducerOpenFiles(t *testing.T) {
	mappers := envInt(t, "AF_SCALE_MAPPERS", 60)
	fanIn := envInt(t, "AF_SCALE_FANIN", 16)
	workers := envInt(t, "AF_SCALE_WORKERS", 2)
	const image = "af/os-count-go"
	clustertest.RequireImages(t, image)
	c := clustertest.Start(t, clustertest.Options{})

	set, err := synth.Generate(synth.Spec{
		Prefix: "v2", Reasons: []string{"saved-session"}, Channels: []string{"nightly"}, Versions: []string{"28.0a1"},
		BuildIDs: []string{"20131029030201"}, Days: []string{"20131029"}, FilesPerPartition: mappers,
		DocsPerFile: 3, Formats: []string{"gz"}, Seed: 12,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Upload(context.Background(), c.MinIO.S3, clustertest.InputBucket, set.Files); err != nil {
		t.Fatal(err)
	}
	var files []taskdef.InputFile
	for _, f := range set.Files {
		files = append(files, taskdef.InputFile{Key: f.Key, Size: int64(len(f.Body))})
	}
	cfg, err := awsconf.Load(context.Background(), awsconf.Options{
		Endpoint: c.MinIO.Endpoint, Region: awsconf.DefaultRegion, AccessKeyID: "afrootuser", SecretAccessKey: "afrootpassword-test-only",
	})
	if err != nil {
		t.Fatal(err)
	}
	graphID := taskdef.NewID()
	sc, err := submit.SealCredentials(context.Background(), cfg, c.Pub, submit.CredentialsRequest{
		GraphID: graphID, Image: image, Bucket: clustertest.InputBucket, Prefix: "v2/", Schema: layout.Telemetry().Fields, Files: files, TTL: 2 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	g, err := submit.BuildGraph(submit.GraphOptions{
		GraphID: graphID, Name: "scale", Owner: "analyst@example.com", Image: image,
		Bucket: clustertest.InputBucket, Prefix: "v2/", Schema: layout.Telemetry().Fields, Files: files,
		MaxFilesPerTask: 1, SealedCredentials: sc.Sealed, MaxRunTime: 10 * time.Minute, Deadline: 2 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Tasks) != mappers+1 {
		t.Fatalf("graph has %d tasks, want %d mappers and a reducer", len(g.Tasks), mappers)
	}
	red := reducerID(g)

	for i := range workers {
		c.StartWorker(t, fmt.Sprintf("scale%d-%s", i, graphID[:6]), clustertest.WorkerOptions{Capacity: 1, MergeFanIn: fanIn})
	}
	base := procFDs()

	// Sample open files every millisecond; a poller marks the reducer's
	// run so only its samples count.
	var reducing atomic.Bool
	var peakFDs atomic.Int64
	var peakKinds atomic.Value
	var peakMerge atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if reducing.Load() {
				k := fdKinds()
				if n := int64(procFDs()); n > peakFDs.Load() {
					peakFDs.Store(n)
					peakKinds.Store(fmt.Sprint(k))
				}
				if n := int64(k["merge input"]); n > peakMerge.Load() {
					peakMerge.Store(n)
				}
			}
		}
	}()
	start := time.Now()
	if _, err := c.Submit.CreateGraph(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	// Watch the reducer in the queue itself, not over HTTP: reading a
	// 3,000-task graph's status ten times a second would take a core.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	for i := 0; ; i++ {
		rs, err := c.Queue.Task(ctx, red)
		if err != nil {
			t.Fatal(err)
		}
		if rs.State == taskdef.StateRunning && !reducing.Load() {
			// Reset VmHWM so it measures the reduce alone.
			_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
			reducing.Store(true)
		}
		if i%40 == 0 {
			gs, err := c.Queue.Graph(ctx, graphID)
			if err != nil {
				t.Fatal(err)
			}
			if gs.State != taskdef.GraphRunning {
				break
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("graph %s did not resolve: %v", graphID, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	total := time.Since(start)
	close(stop)
	wg.Wait()
	hwm := procStatusKiB("VmHWM")

	gs, err := c.Submit.Graph(context.Background(), graphID)
	if err != nil {
		t.Fatal(err)
	}
	if gs.State != taskdef.GraphCompleted {
		t.Fatalf("graph %s, want completed", gs.State)
	}
	rc, err := c.Submit.GetArtifact(context.Background(), red, -1, taskdef.ResultArtifact)
	if got, want := readAll(t, rc, err), synth.FormatOSCounts(set.CountByOS(nil)); got != want {
		t.Fatalf("result\n%s\nwant\n%s", got, want)
	}
	// Claims with every worker busy: mapper run starts from the first to
	// the last (the reducer waits for all of them).
	var starts []time.Time
	runs := 0
	for _, ts := range gs.Tasks {
		if ts.Kind != taskdef.KindMapper {
			continue
		}
		for _, r := range ts.Runs {
			runs++
			if r.Started != nil {
				starts = append(starts, *r.Started)
			}
		}
	}
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	rate := 0.0
	if n := len(starts); n > 1 {
		rate = float64(n-1) / starts[n-1].Sub(starts[0]).Seconds()
	}
	if !reducing.Load() {
		t.Fatal("the poller never saw the reducer running; no reduce sample")
	}
	extra := int(peakFDs.Load()) - base
	t.Logf("open files at the reduce's peak: %v", peakKinds.Load())
	fmt.Printf("SCALE mappers=%d workers=%d fanin=%d total_s=%.1f mapper_runs=%d claims_per_s=%.2f reduce_peak_fds=%d base_fds=%d reduce_merge_fds=%d reduce_vmhwm_kib=%d\n",
		mappers, workers, fanIn, total.Seconds(), runs, rate, peakFDs.Load(), base, peakMerge.Load(), hwm)
	// The merge holds at most fan-in results and one pass's output open.
	// The process's other files (the in-process server's and clients'
	// sockets, the container's streams) are counted in the SCALE line but
	// are not the merge's to bound.
	if got := int(peakMerge.Load()); got > fanIn+1 {
		t.Errorf("the reducer held %d mapper results and merge passes open at once (%d files above the idle %d in all); want at most fan-in %d + 1", got, extra, base, fanIn)
	}
}
