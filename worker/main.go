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

	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/decompress"
	"github.com/af-project/af/internal/notify"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal starts the graceful drain; restoring the default
	// handlers lets a second one end the process at once.
	go func() { <-ctx.Done(); stop() }()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
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

func run(ctx context.Context, args []string, stderr io.Writer) error {
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: worker --queue URL --token T --key af.key [flags]

The worker claims tasks from an af queue and runs each in a locked-down
Docker container: mappers stream their S3 inputs into the job, the reducer
merges the mappers' results. It needs the pool's private key (af keygen)
to open the tasks' sealed S3 credentials, and the job images on this host.
On SIGTERM it stops claiming, lets running tasks finish for --grace, and
hands the rest back to the queue.

Flags (each also read from the environment variable shown):
`)
		fs.PrintDefaults()
	}
	queueURL := fs.String("queue", env("AF_QUEUE_URL", "http://127.0.0.1:8080"), "queue URL (AF_QUEUE_URL)")
	// The default is read after parsing so --help never prints the token.
	token := fs.String("token", "", "token with the work role (default $AF_TOKEN)")
	keyPath := fs.String("key", env("AF_WORKER_KEY", "af.key"), "the pool's private key made by `af keygen` (AF_WORKER_KEY)")
	capacity := fs.Int("capacity", envInt("AF_CAPACITY", 1), "tasks run at once (AF_CAPACITY)")
	group := fs.String("worker-group", env("AF_WORKER_GROUP", "default"), "worker group (AF_WORKER_GROUP)")
	id := fs.String("worker-id", env("AF_WORKER_ID", host), "worker id, stable across restarts and unique per Docker engine (AF_WORKER_ID)")
	smtpFlag := fs.String("smtp", os.Getenv("AF_SMTP"), "SMTP server for owner emails: host:port or smtp://user@host:port?starttls=always&from=addr; password from AF_SMTP_PASSWORD; empty logs the emails (AF_SMTP)")
	monitorURL := fs.String("monitor-url", os.Getenv("AF_MONITOR_URL"), "base URL of af serve in emails (default: the queue URL) (AF_MONITOR_URL)")
	scratch := fs.String("scratch", os.Getenv("AF_SCRATCH"), "directory for task scratch dirs (default: a private dir under $TMPDIR) (AF_SCRATCH)")
	input := fs.String("input", env("AF_INPUT_MODE", "fifo"), "how records reach the container: fifo (scratch-dir FIFO, bypasses the Docker daemon) or stdin (AF_INPUT_MODE)")
	parallel := fs.Int("download-parallel", envInt("AF_DOWNLOAD_PARALLEL", 4), "input files a task downloads and decompresses at once (AF_DOWNLOAD_PARALLEL)")
	gzipFlag := fs.String("gzip", env("AF_GZIP", "auto"), "gzip decoder: auto (ISA-L when this build and host have it, else Go), isal, or go (AF_GZIP)")
	grace := fs.Duration("grace", envDuration("AF_GRACE", 30*time.Second), "how long running tasks may finish after SIGTERM; a second signal stops at once (AF_GRACE)")
	maxScratch := byteSize(worker.DefaultMaxScratchBytes)
	if v := os.Getenv("AF_WORKER_MAX_SCRATCH_BYTES"); v != "" {
		if err := maxScratch.Set(v); err != nil {
			return fmt.Errorf("AF_WORKER_MAX_SCRATCH_BYTES: %w", err)
		}
	}
	fs.Var(&maxScratch, "max-scratch-bytes", "the most a task's job may store in its /scratch, as bytes or with a unit (512MiB, 10GiB); a job over it is stopped and its task failed, and no file it writes may be larger; 0 means no limit (AF_WORKER_MAX_SCRATCH_BYTES)")
	logLevel := fs.String("log-level", env("AF_LOG_LEVEL", "info"), "debug, info, warn or error (AF_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if *token == "" {
		*token = os.Getenv("AF_TOKEN")
	}
	if *token == "" {
		return errors.New("no token: pass --token or set AF_TOKEN to a token with the work role (af serve prints where its config with the tokens is)")
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
	smtpCfg, err := notify.ParseFlag(*smtpFlag, os.Getenv)
	if err != nil {
		return err
	}
	mailer, err := notify.New(smtpCfg, logger)
	if err != nil {
		return err
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
	w, err := worker.New(worker.Config{
		Queue: queueclient.New(*queueURL, *token), Key: key, Docker: docker, Runner: rn, Mailer: mailer,
		MonitorURL: *monitorURL, WorkerGroup: *group, WorkerID: *id, Capacity: *capacity, ScratchRoot: *scratch,
		Input: mode, DownloadParallel: *parallel, Decompress: opener, Grace: *grace, Logger: logger,
		MaxScratchBytes: scratchLimit(int64(maxScratch)),
	})
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// scratchLimit maps the flag's "0 means no limit" to worker.Config's.
func scratchLimit(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

// byteSize is a flag holding a byte count, written as a number with an
// optional binary unit: 1048576, 512KiB, 64MiB, 10GiB, 1TiB (K, M, G, T
// alone mean the same).
type byteSize int64

var byteUnits = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}, {"B", 0}}

func (b *byteSize) String() string {
	n := int64(*b)
	for _, u := range byteUnits[:4] {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func (b *byteSize) Set(s string) error {
	num, shift := strings.TrimSpace(s), uint(0)
	for _, u := range byteUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, shift = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return fmt.Errorf("%q is not a byte count: write a number with an optional unit, like 10GiB or 512MiB", s)
	}
	*b = byteSize(n << shift)
	return nil
}
