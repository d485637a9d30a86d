// Command submitbench measures `af submit` over an index of 150,000 input
// files (a graph of about 3,000 mappers) and the monitor page's data
// endpoint, GET /api/v1/graphs/{id}, for that graph, against real
// components: MinIO (S3 and STS), a real `af serve` process and the real
// `af` binary as a user runs it. It prints the markdown table of
// bench/60-submit.sh.
//
// The index is filled before `af serve` starts, by index.Build over a
// synthetic in-memory listing in the storage layout: uploading 150,000
// objects to MinIO would take minutes, and the index's own integration
// tests cover the real S3 listing path. Everything after that (the index
// query over HTTP, AssumeRole on MinIO, sealing, balancing, posting) is
// the production path.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"gopkg.in/yaml.v3"

	"github.com/af-project/af/internal/index"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/server"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/testbin"
)

// Buckets in the benchmark's MinIO.
const (
	inputBucket    = "telemetry"
	artifactBucket = "af-artifacts"
)

// owner is the graph's owner (af submit requires one; AF_OWNER in real use).
const owner = "analyst@example.com"

// Targets from issue 6.
const (
	submitTarget  = 3 * time.Second
	monitorTarget = 100 * time.Millisecond
)

type options struct {
	af        string
	files     int
	maxFiles  int
	runs      int
	stageRuns int
	gets      int
	filter    string
	image     string
	keep      bool
}

func main() {
	var o options
	flag.StringVar(&o.af, "af", "", "the af binary to run (go build -o af ./af)")
	flag.IntVar(&o.files, "files", 150_000, "input files in the index")
	flag.IntVar(&o.maxFiles, "max-files-per-task", 50, "af submit --max-files-per-task")
	flag.IntVar(&o.runs, "runs", 5, "timed `af submit` processes")
	flag.IntVar(&o.stageRuns, "stage-runs", 3, "in-process Plan+Post runs for the stage split")
	flag.IntVar(&o.gets, "gets", 20, "timed GET /api/v1/graphs/{id} requests")
	flag.StringVar(&o.filter, "filter", "filters/all.json", "the filter af submit is given")
	flag.StringVar(&o.image, "image", "af/os-count", "the job image named in the graph (not checked: --no-image-check)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (data, logs) for inspection")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if o.af == "" || o.runs < 1 || o.gets < 1 || o.files < 1 {
		fmt.Fprintln(os.Stderr, "submitbench: -af BINARY is required; -runs, -gets and -files must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "submitbench: %v\n", err)
		os.Exit(1)
	}
}

// run sets everything up, measures, prints the table and tears down.
func run(ctx context.Context, o options, log *slog.Logger, out io.Writer) (err error) {
	af, err := filepath.Abs(o.af)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "af-submitbench-")
	if err != nil {
		return err
	}
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
		if o.keep {
			log.Info("kept", "dir", dir)
			return
		}
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()

	m, err := miniotest.Launch(dir)
	if err != nil {
		return fmt.Errorf("start minio: %w", err)
	}
	stops = append(stops, func() { _ = m.Stop() })
	for _, b := range []string{inputBucket, artifactBucket} {
		if err := m.CreateBucket(ctx, b); err != nil {
			return fmt.Errorf("create bucket %s: %w", b, err)
		}
	}
	// Every child gets MinIO's root credentials and nothing else of the
	// caller's AWS setup.
	baseEnv := append(withoutAWS(os.Environ()), m.Env()...)

	keyDir := filepath.Join(dir, "keys")
	if out, err := command(ctx, baseEnv, af, "keygen", "--dir", keyDir).CombinedOutput(); err != nil {
		return fmt.Errorf("af keygen: %w: %s", err, out)
	}
	pubPath := filepath.Join(keyDir, "af.pub")

	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	t0 := time.Now()
	rep, err := buildIndex(ctx, filepath.Join(dataDir, "index.db"), o.files)
	if err != nil {
		return err
	}
	log.Info("index built", "files", rep.Indexed, "took", time.Since(t0).Round(time.Millisecond))
	if rep.Indexed != o.files {
		return fmt.Errorf("index holds %d files, want %d (skipped %d: %v)", rep.Indexed, o.files, rep.Skipped, rep.SkippedKeys)
	}

	url, token, workToken, servePID, stopServe, err := startServe(ctx, af, dir, dataDir, pubPath, m.Endpoint, baseEnv)
	serveLog := filepath.Join(dir, "serve.log")
	if err != nil {
		return err
	}
	stops = append(stops, stopServe)

	// The headline: the af binary from process start to exit.
	subEnv := append(slices.Clone(baseEnv), "AF_QUEUE_URL="+url, "AF_TOKEN="+token)
	args := []string{"submit", o.filter, o.image, "--owner", owner, "--no-image-check", "--max-files-per-task", strconv.Itoa(o.maxFiles)}
	var wall, cpuSubmit, cpuServe []time.Duration
	loadStart := loadAverage()
	var last posted
	var graphs []string
	for i := range o.runs {
		cmd := command(ctx, subEnv, af, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		serveBefore, cerr := processCPU(servePID)
		if cerr != nil {
			return cerr
		}
		start := time.Now()
		err := cmd.Run()
		d := time.Since(start)
		serveAfter, cerr := processCPU(servePID)
		if cerr != nil {
			return cerr
		}
		if err != nil {
			return fmt.Errorf("af %s: %w: %s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		p, err := parsePosted(stdout.String())
		if err != nil {
			return err
		}
		log.Info("af submit", "run", i+1, "took", d.Round(time.Millisecond), "graph", p.graphID, "mappers", p.mappers, "files", p.files)
		wall = append(wall, d)
		cpuSubmit = append(cpuSubmit, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
		cpuServe = append(cpuServe, serveAfter-serveBefore)
		last = p
		graphs = append(graphs, p.graphID)
	}
	if last.files != o.files {
		return fmt.Errorf("af submit posted a graph over %d files; the index holds %d and %s selects all of them", last.files, o.files, o.filter)
	}

	// The stage split, in this process with the packages af submit uses.
	filterJSON, err := os.ReadFile(o.filter)
	if err != nil {
		return err
	}
	q := queueclient.New(url, token)
	sub := &submit.Submitter{Queue: q, AWS: m.Config}
	var st []stages
	for range o.stageRuns {
		s, err := planAndPost(ctx, sub, submit.Request{
			FilterName: o.filter, FilterJSON: filterJSON, Image: o.image, Name: o.image + " over bench", Owner: owner,
			MaxFilesPerTask: o.maxFiles,
		})
		if err != nil {
			return err
		}
		st = append(st, s)
		graphs = append(graphs, s.graphID)
	}

	// The monitor page's data endpoint for the graph af submit posted.
	g, err := timeGets(ctx, url+"/api/v1/graphs/"+last.graphID, token, o.gets)
	if err != nil {
		return err
	}
	if g.tasks != last.mappers+1 {
		return fmt.Errorf("GET graph %s listed %d tasks, want %d", last.graphID, g.tasks, last.mappers+1)
	}

	// The same endpoint late in the job, when every mapper has a run with
	// its stats, as the page sees it late in a job (retries would add more).
	t1 := time.Now()
	if err := runMappers(ctx, url, token, workToken, last, slices.DeleteFunc(graphs, func(id string) bool { return id == last.graphID })); err != nil {
		return err
	}
	log.Info("every mapper ran", "took", time.Since(t1).Round(time.Millisecond))
	gRan, err := timeGets(ctx, url+"/api/v1/graphs/"+last.graphID, token, o.gets)
	if err != nil {
		return err
	}
	if gRan.runs < last.mappers {
		return fmt.Errorf("GET graph %s shows %d runs, want at least %d", last.graphID, gRan.runs, last.mappers)
	}

	served, err := serverTimes(serveLog)
	if err != nil {
		return err
	}
	printTable(out, o, args, results{wall: wall, cpuSubmit: cpuSubmit, cpuServe: cpuServe, load: [2]string{loadStart, loadAverage()}}, last, st, g, gRan, served)
	return nil
}

// command runs af with exactly env; ctx cancellation kills it.
func command(ctx context.Context, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	return cmd
}

// withoutAWS drops the caller's AWS_* variables so a profile or endpoint of
// the machine cannot leak into the benchmark.
func withoutAWS(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "AF_") {
			out = append(out, kv)
		}
	}
	return out
}

// buildIndex fills a new index file with n synthetic objects.
func buildIndex(ctx context.Context, path string, n int) (index.BuildReport, error) {
	db, err := index.Open(path, index.Options{})
	if err != nil {
		return index.BuildReport{}, err
	}
	rep, err := db.Build(ctx, newListing(n), inputBucket, "", layout.Telemetry(), nil)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return rep, fmt.Errorf("build the index: %w", err)
	}
	return rep, nil
}

// listing is an in-memory S3 listing of n objects in the storage layout,
// sorted as S3 lists them: 2 reasons × 2 apps × 5 channels × 5 versions ×
// 5 build ids × 30 submission dates, the files spread evenly over those
// 15,000 partitions, sizes uniform in 64 KiB–6 MiB (so --max-files-per-task,
// not the byte bound, sets the number of mappers, as with real telemetry).
type listing struct {
	objs  []types.Object
	pages int
}

func newListing(n int) *listing {
	var builds, dates []string
	for i := range 5 {
		builds = append(builds, fmt.Sprintf("201402%02d030201", 20+i))
	}
	for i := range 30 {
		dates = append(dates, time.Date(2014, 3, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i).Format("20060102"))
	}
	dims := [][]string{
		{"idle-daily", "saved-session"},
		{"Fennec", "Firefox"},
		{"aurora", "beta", "esr", "nightly", "release"},
		{"27.0", "28.0", "29.0", "30.0a2", "31.0a1"},
		builds,
		dates,
	}
	var leaves [][]string
	var walk func(prefix []string)
	walk = func(prefix []string) {
		if len(prefix) == len(dims) {
			leaves = append(leaves, slices.Clone(prefix))
			return
		}
		for _, v := range dims[len(prefix)] {
			walk(append(prefix, v))
		}
	}
	walk(nil)
	rng := rand.New(rand.NewPCG(60, 150_000))
	mtime := time.Date(2014, 4, 1, 0, 0, 0, 0, time.UTC)
	objs := make([]types.Object, n)
	for i := range objs {
		uuid := fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", rng.Uint32(), rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint64()&0xffffffffffff)
		key := layout.Key("", leaves[i%len(leaves)], 2, uuid, "lzma")
		size := 64<<10 + rng.Int64N(6<<20-64<<10)
		etag := fmt.Sprintf(`"%032x"`, rng.Uint64())
		objs[i] = types.Object{Key: aws.String(key), Size: aws.Int64(size), ETag: aws.String(etag), LastModified: aws.Time(mtime)}
	}
	slices.SortFunc(objs, func(a, b types.Object) int { return strings.Compare(*a.Key, *b.Key) })
	return &listing{objs: objs}
}

// ListObjectsV2 serves pages of 1,000 keys; the continuation token is the
// index of the next key.
func (l *listing) ListObjectsV2(_ context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	if aws.ToString(in.Bucket) != inputBucket || aws.ToString(in.Prefix) != "" {
		return nil, fmt.Errorf("synthetic listing holds s3://%s/ only, asked for s3://%s/%s", inputBucket, aws.ToString(in.Bucket), aws.ToString(in.Prefix))
	}
	start := 0
	if t := aws.ToString(in.ContinuationToken); t != "" {
		var err error
		if start, err = strconv.Atoi(t); err != nil || start < 0 || start > len(l.objs) {
			return nil, fmt.Errorf("bad continuation token %q", t)
		}
	}
	size := 1000
	if in.MaxKeys != nil && *in.MaxKeys > 0 && int(*in.MaxKeys) < size {
		size = int(*in.MaxKeys)
	}
	end := min(start+size, len(l.objs))
	l.pages++
	out := &s3.ListObjectsV2Output{Contents: l.objs[start:end], KeyCount: aws.Int32(int32(end - start))}
	if end < len(l.objs) {
		out.IsTruncated = aws.Bool(true)
		out.NextContinuationToken = aws.String(strconv.Itoa(end))
	}
	return out, nil
}

// startServe writes a config and runs `af serve` until the returned stop.
func startServe(ctx context.Context, af, dir, dataDir, pubPath, s3Endpoint string, env []string) (url, token, workToken string, pid int, stop func(), err error) {
	addr, err := testbin.FreeAddr()
	if err != nil {
		return "", "", "", 0, nil, err
	}
	token, workToken = server.NewToken(), server.NewToken()
	cfg := server.Config{
		Listen: addr, Data: dataDir,
		Tokens: []server.Token{
			{Name: "bench-submit", Role: server.RoleSubmit, Token: token},
			{Name: "bench-work", Role: server.RoleWork, Token: workToken},
		},
		S3:      server.S3Config{Endpoint: s3Endpoint, Bucket: artifactBucket},
		PoolKey: pubPath,
		// Every timed submit posts 7,153 tasks of one owner and none
		// runs: the default cap (20,000 waiting) would refuse the third.
		MaxPendingPerOwner: new(int), // 0: no cap
	}
	body, err := yaml.Marshal(&cfg)
	if err != nil {
		return "", "", "", 0, nil, err
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, body, 0o600); err != nil {
		return "", "", "", 0, nil, err
	}
	logPath := filepath.Join(dir, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return "", "", "", 0, nil, err
	}
	// Not CommandContext: stop sends an interrupt and waits, so af serve
	// closes its bbolt files cleanly.
	cmd := exec.Command(af, "serve", "--config", cfgPath, "--pool-key", pubPath, "--log-level", "info")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return "", "", "", 0, nil, fmt.Errorf("start af serve: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	url = "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	hc := &http.Client{Timeout: time.Second}
	for {
		resp, err := hc.Get(url + "/api/v1/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url, token, workToken, cmd.Process.Pid, stop, nil
			}
		}
		var exited bool
		select {
		case <-done:
			exited = true
		case <-ctx.Done():
			stop()
			return "", "", "", 0, nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if exited || time.Now().After(deadline) {
			stop()
			logs, _ := os.ReadFile(logPath)
			return "", "", "", 0, nil, fmt.Errorf("af serve did not answer at %s: %s", url, logs)
		}
	}
}

// posted is what `af submit` printed.
type posted struct {
	graphID        string
	mappers, files int
	own            string // af's own "(in …)" timing
}

var postedRE = regexp.MustCompile(`graph (\S+) posted: (\d+) mapper tasks \+ 1 reducer over (\d+) files.*\(in ([^)]+)\)`)

func parsePosted(stdout string) (posted, error) {
	m := postedRE.FindStringSubmatch(stdout)
	if m == nil {
		return posted{}, fmt.Errorf("af submit printed no `graph … posted` line: %q", stdout)
	}
	mappers, _ := strconv.Atoi(m[2])
	files, _ := strconv.Atoi(m[3])
	return posted{graphID: m[1], mappers: mappers, files: files, own: m[4]}, nil
}

// stages is one in-process submit, split as Plan records it.
type stages struct {
	query, mint, build, post, total time.Duration
	// encode is json.Marshal of the graph alone (Post includes it), and
	// body the size of the posted document.
	encode  time.Duration
	body    int
	graphID string
}

func planAndPost(ctx context.Context, s *submit.Submitter, r submit.Request) (stages, error) {
	start := time.Now()
	p, err := s.Plan(ctx, r)
	if err != nil {
		return stages{}, fmt.Errorf("plan: %w", err)
	}
	t := time.Now()
	if _, err := s.Post(ctx, p.Graph); err != nil {
		return stages{}, err
	}
	st := stages{query: p.QueryTime, mint: p.MintTime, build: p.BuildTime, post: time.Since(t), total: time.Since(start)}
	e := time.Now()
	body, err := json.Marshal(p.Graph)
	if err != nil {
		return stages{}, err
	}
	st.encode, st.body, st.graphID = time.Since(e), len(body), p.Graph.GraphID
	return st, nil
}

// runMappers plays workers: it cancels the other graphs (so that only
// this one's tasks are pending), then claims every mapper of p and reports
// it completed with its stats, through the queue's worker API.
func runMappers(ctx context.Context, url, submitToken, workToken string, p posted, others []string) error {
	sq := queueclient.New(url, submitToken)
	for _, id := range others {
		if _, err := sq.CancelGraph(ctx, id); err != nil {
			return fmt.Errorf("cancel graph %s: %w", id, err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var done atomic.Int64
	const workers = 4
	errs := make(chan error, workers)
	for n := range workers {
		go func() {
			wq := queueclient.New(url, workToken)
			req := taskdef.ClaimRequest{WorkerGroup: "bench", WorkerID: fmt.Sprintf("bench-w%d", n+1), Tasks: 8}
			for done.Load() < int64(p.mappers) && ctx.Err() == nil {
				claims, err := wq.ClaimWork(ctx, req, 0)
				if err != nil {
					errs <- fmt.Errorf("claim work: %w", err)
					return
				}
				for _, c := range claims {
					if c.Task.GraphID != p.graphID {
						errs <- fmt.Errorf("claimed task %s of graph %s, want only graph %s", c.TaskID, c.Task.GraphID, p.graphID)
						return
					}
					if c.Task.Payload.Kind != taskdef.KindMapper {
						continue // the reducer, once every mapper is done: leave it running
					}
					var bytes int64
					for _, in := range c.Task.Payload.Inputs {
						bytes += in.Size
					}
					n := int64(len(c.Task.Payload.Inputs))
					stats := taskdef.Stats{Files: n, Bytes: bytes, RawBytes: 9 * bytes, RecordsIn: 500 * n, RecordsOut: 120}
					if _, err := wq.Claimed(c).ReportCompleted(ctx, taskdef.ReportRequest{Stats: stats}); err != nil {
						errs <- fmt.Errorf("report %s completed: %w", c.TaskID, err)
						return
					}
					done.Add(1)
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range workers {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel() // the others stop claiming
		}
	}
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// gets is the timing of the monitor's data endpoint.
type gets struct {
	times []time.Duration
	size  int
	tasks int
	runs  int
}

// timeGets fetches url n times in a row as the monitor page does (one
// request per poll), each timed until the whole body is read.
func timeGets(ctx context.Context, url, token string, n int) (gets, error) {
	hc := &http.Client{Timeout: 30 * time.Second}
	var g gets
	var body []byte
	for range n {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return g, err
		}
		req.Header.Set("Accept", "application/json")
		// Reads need an identity.
		req.Header.Set("Authorization", "Bearer "+token)
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return g, err
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if err != nil {
			return g, err
		}
		if resp.StatusCode != http.StatusOK {
			return g, fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
		}
		g.times = append(g.times, d)
	}
	g.size = len(body)
	var gs taskdef.GraphStatus
	if err := json.Unmarshal(body, &gs); err != nil {
		return g, fmt.Errorf("GET %s: %w", url, err)
	}
	g.tasks = len(gs.Tasks)
	for _, t := range gs.Tasks {
		g.runs += len(t.Runs)
	}
	return g, nil
}

// getRoute is the monitor page's data endpoint.
const getRoute = "GET /api/v1/graphs/{id}"

// serverTimes reads af serve's request log: every request's route and
// how long the server took over it, from the first byte of the request to
// the last of the answer.
func serverTimes(path string) (map[string][]time.Duration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string][]time.Duration{}
	for _, line := range bytes.Split(data, []byte("\n")) {
		var rec struct {
			Msg   string `json:"msg"`
			Route string `json:"route"`
			Dur   int64  `json:"dur"`
		}
		if json.Unmarshal(line, &rec) != nil || rec.Msg != "request" {
			continue
		}
		out[rec.Route] = append(out[rec.Route], time.Duration(rec.Dur))
	}
	return out, nil
}

// percentile is the nearest-rank percentile of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) string {
	prec := 0
	if d < 10*time.Millisecond {
		prec = 1
	}
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', prec, 64) + " ms"
}

func meets(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

// printTable writes the measured part of the markdown section.
// results are the timed af submit processes.
type results struct {
	wall []time.Duration
	// cpuSubmit is each af submit process's user+system CPU time,
	// cpuServe af serve's during it.
	cpuSubmit, cpuServe []time.Duration
	load                [2]string // load average before and after
}

// processCPU is the user+system CPU time a process used so far, from
// /proc/PID/stat (in clock ticks of 1/100 s, Linux's USER_HZ).
func processCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read af serve's CPU time: %w", err)
	}
	// The command name (field 2) may hold spaces; fields after it are
	// space-separated, utime and stime being the 14th and 15th.
	i := bytes.LastIndexByte(data, ')')
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// loadAverage is the one-minute load average, for context: the machine is
// shared.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(data))[0]
}

func printTable(w io.Writer, o options, args []string, r results, last posted, st []stages, g, gRan gets, served map[string][]time.Duration) {
	wall := r.wall
	med, worst := percentile(wall, 50), slices.Max(wall)
	runs := make([]string, len(wall))
	for i, d := range wall {
		runs[i] = strconv.FormatInt(d.Round(time.Millisecond).Milliseconds(), 10)
	}
	fmt.Fprintf(w, "The timed command (run %d times, each a new process, from start to exit):\n\n", o.runs)
	fmt.Fprintf(w, "```\nAF_QUEUE_URL=http://127.0.0.1:PORT AF_TOKEN=… AWS_ENDPOINT_URL=<minio> af %s\n```\n\n", strings.Join(args, " "))
	fmt.Fprintf(w, "It posted %d mapper tasks + 1 reducer over %d files; the runs took %s ms\n", last.mappers, last.files, strings.Join(runs, ", "))
	fmt.Fprintf(w, "(one-minute load average %s when they started, %s after: other work shares the 2 cores).\n\n", r.load[0], r.load[1])
	fmt.Fprintln(w, "| measure | value | target | meets |")
	fmt.Fprintln(w, "|---|---|---|---|")
	fmt.Fprintf(w, "| `af submit`, process start to graph posted (median of %d) | %s | < 3000 ms | %s |\n", len(wall), ms(med), meets(med < submitTarget))
	fmt.Fprintf(w, "| `af submit`, slowest run | %s | < 3000 ms | %s |\n", ms(worst), meets(worst < submitTarget))
	best := slices.Min(wall)
	fmt.Fprintf(w, "| `af submit`, fastest run (the least disturbed by other load) | %s | < 3000 ms | %s |\n", ms(best), meets(best < submitTarget))
	cs, cv := percentile(r.cpuSubmit, 50), percentile(r.cpuServe, 50)
	fmt.Fprintf(w, "| CPU time per submit, median: `af submit` + `af serve` (unlike wall time, not stretched by other load) | %s + %s = %s | (context) | – |\n", ms(cs), ms(cv), ms(cs+cv))
	p50, p99 := percentile(g.times, 50), percentile(g.times, 99)
	fmt.Fprintf(w, "| `GET /api/v1/graphs/{id}` just posted (%d tasks, %s), p50 of %d | %s | < 100 ms | %s |\n", g.tasks, humanSize(g.size), len(g.times), ms(p50), meets(p50 < monitorTarget))
	fmt.Fprintf(w, "| `GET /api/v1/graphs/{id}` just posted, p99 of %d | %s | < 100 ms | %s |\n", len(g.times), ms(p99), meets(p99 < monitorTarget))
	p50, p99 = percentile(gRan.times, 50), percentile(gRan.times, 99)
	fmt.Fprintf(w, "| `GET /api/v1/graphs/{id}` after every mapper completed (%d runs with stats, %s), p50 of %d | %s | < 100 ms | %s |\n", gRan.runs, humanSize(gRan.size), len(gRan.times), ms(p50), meets(p50 < monitorTarget))
	fmt.Fprintf(w, "| `GET /api/v1/graphs/{id}` after every mapper completed, p99 of %d | %s | < 100 ms | %s |\n", len(gRan.times), ms(p99), meets(p99 < monitorTarget))
	if len(st) == 0 {
		return
	}
	pick := func(f func(stages) time.Duration) time.Duration {
		ds := make([]time.Duration, len(st))
		for i, s := range st {
			ds[i] = f(s)
		}
		return percentile(ds, 50)
	}
	// srv is the median server time of a route's requests [from, to) in
	// log order (to < 0: all).
	srv := func(route string, from, to int) string {
		ds := served[route]
		if to < 0 {
			to = len(ds)
		}
		ds = ds[min(from, len(ds)):min(to, len(ds))]
		if len(ds) == 0 {
			return "–"
		}
		return ms(percentile(ds, 50))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Where the time goes: the same submit run %d more times in one process with the packages\n", len(st))
	fmt.Fprintf(w, "`af submit` uses (`submit.Submitter.Plan` records the first three stages, then `Post`), median;\n")
	fmt.Fprintf(w, "and the server's own time for each request from `af serve`'s request log, median over all %d submits:\n\n", len(wall)+len(st))
	fmt.Fprintln(w, "| stage | client | in `af serve` |")
	fmt.Fprintln(w, "|---|---|---|")
	fmt.Fprintf(w, "| index query (`POST /api/v1/index/query`, %d files) | %s | %s |\n", last.files, ms(pick(func(s stages) time.Duration { return s.query })), srv("POST /api/v1/index/query", 0, -1))
	fmt.Fprintf(w, "| pool key (`GET /api/v1/pool-key`), STS AssumeRole on MinIO, seal | %s | %s |\n", ms(pick(func(s stages) time.Duration { return s.mint })), srv("GET /api/v1/pool-key", 0, -1))
	fmt.Fprintf(w, "| balance into loads and build the graph | %s | – |\n", ms(pick(func(s stages) time.Duration { return s.build })))
	fmt.Fprintf(w, "| post the graph (`POST /api/v1/graphs`, %s of JSON; encoding it alone: %s) | %s | %s |\n",
		humanSize(st[len(st)-1].body), ms(pick(func(s stages) time.Duration { return s.encode })), ms(pick(func(s stages) time.Duration { return s.post })), srv("POST /api/v1/graphs", 0, -1))
	fmt.Fprintf(w, "| total | %s | |\n", ms(pick(func(s stages) time.Duration { return s.total })))
	// The GETs ran in this order: the graph just posted, then after its
	// mappers completed.
	n := len(g.times)
	fmt.Fprintf(w, "| `GET /api/v1/graphs/{id}` just posted (the timed requests above) | %s | %s |\n", ms(percentile(g.times, 50)), srv(getRoute, 0, n))
	fmt.Fprintf(w, "| `GET /api/v1/graphs/{id}` after every mapper completed | %s | %s |\n", ms(percentile(gRan.times, 50)), srv(getRoute, n, n+len(gRan.times)))
}

func humanSize(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
