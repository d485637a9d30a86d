// Command worker claims af tasks from the queue and runs them in Docker
// containers. The logic lives in internal/worker; this file reads flags and
// environment and wires the pieces.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/decompress"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/redact"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/version"
	"github.com/af-project/af/internal/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal starts the graceful drain; restoring the default
	// handlers lets a second one end the process at once.
	go func() { <-ctx.Done(); stop() }()
	args := os.Args[1:]
	stderr := io.Writer(os.Stderr)
	for _, a := range args {
		switch a {
		case "-version", "--version":
			fmt.Fprintf(os.Stdout, "worker %s\n", version.Get())
			return
		case "-h", "-help", "--help":
			// Asked-for help is the output: stdout, exit 0.
			stderr = os.Stdout
		}
	}
	if err := run(ctx, args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "worker: %v\n", err)
		os.Exit(1)
	}
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// envBool reads a yes/no variable: 1, true and yes (any case) are yes.
func envBool(key string) bool {
	switch strings.ToLower(os.Getenv(key)) {
	case "1", "true", "yes":
		return true
	}
	return false
}

func envInt(key string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil {
		return v
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return v
	}
	return def
}

// bytesFlag is a size flag: ParseBytes reads it, FormatBytes prints it.
type bytesFlag int64

func (b *bytesFlag) String() string { return worker.FormatBytes(int64(*b)) }

func (b *bytesFlag) Set(s string) error {
	n, err := worker.ParseBytes(s)
	if err != nil {
		return err
	}
	*b = bytesFlag(n)
	return nil
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: worker --queue URL --token T --key af.key [flags]

The worker claims tasks from an af queue and runs each in a locked-down
Docker container: mappers stream their S3 inputs into the job, the reducer
merges the mappers' results. It needs the pool's private key (af keygen)
to open the tasks' sealed S3 credentials, and the job images on this host
(or --pull, to pull them from their registry by the digest the task pins).
On SIGTERM it stops claiming, lets running tasks finish for --grace, and
hands the rest back to the queue. A worker started again with the same
--worker-id after a crash hands back at once the runs the dead process
held (recorded in --state-dir), so they need not wait out their lease.

--version prints the worker's version.

Flags (each also read from the environment variable shown):
`)
		fs.PrintDefaults()
	}
	queueURL := fs.String("queue", env("AF_QUEUE_URL", "http://127.0.0.1:8080"), "queue URL; https:// when af serve has --tls-cert (AF_QUEUE_URL)")
	caFile := fs.String("ca", os.Getenv("AF_CA_FILE"), "PEM `FILE` of the CA that signed af serve's https certificate, trusted besides the system's CAs for the queue and the artifact uploads (AF_CA_FILE)")
	insecureHTTP := fs.Bool("insecure-http", envBool("AF_INSECURE_HTTP"), "send the work token over plain http to a queue host that is not loopback; anyone on the network path can read it, so prefer https (AF_INSECURE_HTTP=1)")
	// The default is read after parsing so --help never prints the token.
	token := fs.String("token", "", "token with the work role (default $AF_TOKEN)")
	keyPath := fs.String("key", env("AF_WORKER_KEY", "af.key"), "the pool's private key made by `af keygen` (AF_WORKER_KEY)")
	capacity := fs.Int("capacity", envInt("AF_CAPACITY", 1), "tasks run at once (AF_CAPACITY)")
	group := fs.String("worker-group", env("AF_WORKER_GROUP", "default"), "worker group (AF_WORKER_GROUP)")
	id := fs.String("worker-id", env("AF_WORKER_ID", host), "worker id, stable across restarts and unique per Docker engine (AF_WORKER_ID)")
	// Kept so old command lines still start; workers send no email.
	smtpFlag := fs.String("smtp", os.Getenv("AF_SMTP"), "deprecated and ignored: af serve sends the owners' emails from its outbox (its config's smtp: section); workers need no SMTP settings (AF_SMTP)")
	monitorURL := fs.String("monitor-url", os.Getenv("AF_MONITOR_URL"), "deprecated and ignored: email links come from af serve's monitor_url (AF_MONITOR_URL)")
	scratch := fs.String("scratch", os.Getenv("AF_SCRATCH"), "directory for task scratch dirs (default: a private dir under $TMPDIR) (AF_SCRATCH)")
	stateDir := fs.String("state-dir", os.Getenv("AF_STATE_DIR"), "private directory (0700) recording the runs this worker holds, with their run tokens, so a restart hands them back to the queue at once; must be outside --scratch (default: <scratch>.state beside the scratch dir) (AF_STATE_DIR)")
	input := fs.String("input", env("AF_INPUT_MODE", "fifo"), "how records reach the container: fifo (scratch-dir FIFO, bypasses the Docker daemon) or stdin (AF_INPUT_MODE)")
	parallel := fs.Int("download-parallel", envInt("AF_DOWNLOAD_PARALLEL", 4), "input files a task downloads and decompresses at once (AF_DOWNLOAD_PARALLEL)")
	gzipFlag := fs.String("gzip", env("AF_GZIP", "auto"), "gzip decoder: auto (ISA-L when this build and host have it, else Go), isal, or go (AF_GZIP)")
	grace := fs.Duration("grace", envDuration("AF_GRACE", 30*time.Second), "how long running tasks may finish after SIGTERM; a second signal stops at once (AF_GRACE)")
	s3Endpoint := fs.String("s3-endpoint", os.Getenv("AF_WORKER_S3_ENDPOINT"), "the S3 endpoint job inputs are read from, e.g. http://127.0.0.1:9000 for MinIO; tasks whose sealed credentials name another are refused (default: this host's AWS configuration: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or the profile's endpoint_url, else AWS S3 in AWS_REGION) (AF_WORKER_S3_ENDPOINT)")
	pull := fs.Bool("pull", envBool("AF_PULL"), "pull a task's job image from its registry when this host lacks it (tasks name images by digest, so the worker runs exactly what was submitted); credentials come from the auths of Docker's config.json in $DOCKER_CONFIG or ~/.docker; without --pull a task whose image is missing goes back to the queue for a worker that has it (AF_PULL=1)")
	pullFrom := fs.String("pull-from", os.Getenv("AF_PULL_FROM"), "with --pull, the only registry hosts (host[:port], comma-separated) images are pulled from; default any registry a task's image names (AF_PULL_FROM)")
	pullTimeout := fs.Duration("pull-timeout", envDuration("AF_PULL_TIMEOUT", runner.DefaultPullTimeout), "how long one image pull may take (AF_PULL_TIMEOUT)")
	logLevel := fs.String("log-level", env("AF_LOG_LEVEL", "info"), "debug, info, warn or error (AF_LOG_LEVEL)")
	ceil := worker.DefaultCeilings()
	mem := bytesFlag(ceil.MemoryBytes)
	cpus, pids, runTime := ceil.CPUs, ceil.Pids, ceil.RunTime
	reapEvery := runner.DefaultReapEvery
	maxScratch := bytesFlag(worker.DefaultMaxScratchBytes)
	// The environment's values are parsed strictly: a ceiling silently
	// left at its default because of a typo would be a surprise.
	for _, e := range []struct {
		name string
		set  func(string) error
	}{
		{"AF_MAX_TASK_MEMORY", mem.Set},
		{"AF_MAX_TASK_CPUS", func(v string) (err error) { cpus, err = strconv.ParseFloat(v, 64); return }},
		{"AF_MAX_TASK_PIDS", func(v string) (err error) { pids, err = strconv.ParseInt(v, 10, 64); return }},
		{"AF_MAX_RUN_TIME", func(v string) (err error) { runTime, err = time.ParseDuration(v); return }},
		{"AF_REAP_EVERY", func(v string) (err error) { reapEvery, err = time.ParseDuration(v); return }},
		{"AF_WORKER_MAX_SCRATCH_BYTES", maxScratch.Set},
	} {
		if v := os.Getenv(e.name); v != "" {
			if err := e.set(v); err != nil {
				return fmt.Errorf("%s=%q: %w", e.name, v, err)
			}
		}
	}
	fs.Var(&mem, "max-task-memory", "most memory a task may ask for (payload.limits.memoryBytes), like 8GiB or 512MiB; default: 8GiB, or half the host's RAM if less; a task asking more is refused as malformed-payload (AF_MAX_TASK_MEMORY)")
	fs.Float64Var(&cpus, "max-task-cpus", cpus, "most CPUs a task may ask for (payload.limits.cpus); default: the host's CPUs, which is also the most Docker allows (AF_MAX_TASK_CPUS)")
	fs.Int64Var(&pids, "max-task-pids", pids, "most processes and threads a task may ask for (payload.limits.pids); tasks that ask nothing get 256 (AF_MAX_TASK_PIDS)")
	fs.DurationVar(&runTime, "max-run-time", runTime, "longest run time a task may ask for (payload.maxRunTime) (AF_MAX_RUN_TIME)")
	fs.DurationVar(&reapEvery, "reap-every", reapEvery, fmt.Sprintf("how often to remove job containers of any worker on this Docker engine that are more than %s past their max run time (their worker died) (AF_REAP_EVERY)", runner.DefaultReapGrace))
	fs.Var(&maxScratch, "max-scratch-bytes", "most a task's job may store in its /scratch, like 10GiB or 512MiB; a job over it is stopped and its task failed, and no file it writes may be larger; 0 means no limit (AF_WORKER_MAX_SCRATCH_BYTES)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ceilings := worker.Ceilings{MemoryBytes: int64(mem), CPUs: cpus, Pids: pids, RunTime: runTime}
	if err := ceilings.Check(); err != nil {
		return err
	}
	if reapEvery <= 0 {
		return fmt.Errorf("--reap-every %s must be positive", reapEvery)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	// ReplaceAttr keeps presigned URLs out of the log whatever error
	// quotes one.
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: redact.ReplaceAttr}))
	if *token == "" {
		*token = os.Getenv("AF_TOKEN")
	}
	if *token == "" {
		return errors.New("no token: pass --token or set AF_TOKEN to a token with the work role (af serve prints where its config with the tokens is)")
	}
	qopts := []queueclient.Option{queueclient.WithUserAgent("af-worker")}
	if *caFile != "" {
		pool, err := queueclient.LoadCAFile(*caFile)
		if err != nil {
			return fmt.Errorf("--ca (AF_CA_FILE): %w", err)
		}
		qopts = append(qopts, queueclient.WithRootCAs(pool))
	}
	if *insecureHTTP {
		qopts = append(qopts, queueclient.WithInsecureHTTP())
	}
	queue := queueclient.New(*queueURL, *token, qopts...)
	if err := queue.CheckTransport(); err != nil {
		// Refused at start, before the first claim would carry the token.
		return fmt.Errorf("--queue %s: %w; to send it anyway over a network you trust, pass --insecure-http or set AF_INSECURE_HTTP=1", *queueURL, err)
	}
	var mode runner.InputMode
	switch strings.ToLower(*input) {
	case "fifo":
		mode = runner.InputFIFO
	case "stdin":
		mode = runner.InputStdin
	default:
		return fmt.Errorf("--input %q: want fifo or stdin", *input)
	}
	gz, err := decompress.ParseGzipDecoder(*gzipFlag)
	if err != nil {
		return fmt.Errorf("--gzip: %w", err)
	}
	opener, err := decompress.NewOpener(gz)
	if err != nil {
		return fmt.Errorf("--gzip: %w", err)
	}
	key, err := creds.LoadPrivateKey(*keyPath)
	if err != nil {
		return err
	}
	s3At, err := awsconf.ResolveWorkerS3(ctx, *s3Endpoint)
	if err != nil {
		return fmt.Errorf("--s3-endpoint: %w", err)
	}
	if *smtpFlag != "" || *monitorURL != "" {
		// Not the value: it may hold a user name.
		logger.Warn("--smtp and --monitor-url (AF_SMTP, AF_MONITOR_URL) are ignored: af serve emails owners from its outbox; drop them from the worker's command line")
	}
	docker, err := runner.NewDockerClient()
	if err != nil {
		return fmt.Errorf("docker: %w", err)
	}
	defer docker.Close()
	rn, err := runner.New(docker, runner.Options{Logger: logger, WorkerID: *id})
	if err != nil {
		return err
	}
	logger.Info("reading job inputs from S3", "endpoint", endpointOrAWS(s3At.Endpoint), "region", s3At.Region)
	w, err := worker.New(worker.Config{
		Queue: queue, Key: key, S3: s3At, Docker: docker, Runner: rn,
		WorkerGroup: *group, WorkerID: *id, Capacity: *capacity, ScratchRoot: *scratch,
		StateDir: *stateDir,
		Input:    mode, DownloadParallel: *parallel, Decompress: opener, Grace: *grace, Logger: logger,
		Ceilings: ceilings, ReapEvery: reapEvery, MaxScratchBytes: scratchLimit(int64(maxScratch)),
		Pull: worker.PullConfig{Enabled: *pull, Timeout: *pullTimeout, Registries: splitList(*pullFrom)},
	})
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

func endpointOrAWS(ep string) string {
	if ep == "" {
		return "AWS"
	}
	return ep
}

// scratchLimit maps the flag's "0 means no limit" to worker.Config's.
func scratchLimit(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
