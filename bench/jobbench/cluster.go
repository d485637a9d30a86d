package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/docker/docker/client"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/decompress"
	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/server"
	"github.com/af-project/af/internal/worker"
)

// Buckets of the benchmark's MinIO.
const (
	inputBucket    = "telemetry"
	artifactBucket = "af-artifacts"
)

// env is one af installation in this process, as clustertest makes for
// tests: MinIO, the queue server on loopback, the pool key pair and
// in-process workers on the machine's Docker engine.
type env struct {
	dir    string
	log    *slog.Logger
	minio  *miniotest.Server
	q      *queue.Queue
	url    string
	submit *queueclient.Client
	pub    *creds.PublicKey
	key    *creds.PrivateKey
	docker *client.Client

	workToken string
	stops     []func()
	// pool is the running in-process workers, all with one gzip decoder.
	pool struct {
		gzip   decompress.GzipDecoder
		opener *decompress.Opener
		stop   func()
	}
}

// startEnv starts MinIO and the queue server.
func startEnv(dir string, log *slog.Logger) (*env, error) {
	e := &env{dir: dir, log: log}
	m, err := miniotest.Launch(dir)
	if err != nil {
		return nil, fmt.Errorf("start minio: %w", err)
	}
	e.minio = m
	e.stops = append(e.stops, func() { _ = m.Stop() })
	ctx := context.Background()
	for _, b := range []string{inputBucket, artifactBucket} {
		if err := m.CreateBucket(ctx, b); err != nil {
			e.close()
			return nil, fmt.Errorf("create bucket %s: %w", b, err)
		}
	}

	pubPath, keyPath, err := creds.GenerateKeyPair(filepath.Join(dir, "keys"), false)
	if err != nil {
		e.close()
		return nil, err
	}
	if e.pub, err = creds.LoadPublicKey(pubPath); err != nil {
		e.close()
		return nil, err
	}
	if e.key, err = creds.LoadPrivateKey(keyPath); err != nil {
		e.close()
		return nil, err
	}

	e.q, err = queue.Open(filepath.Join(dir, "queue.db"), queue.Options{Logger: log})
	if err != nil {
		e.close()
		return nil, err
	}
	e.stops = append(e.stops, func() { _ = e.q.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.close()
		return nil, err
	}
	e.url = "http://" + ln.Addr().String()
	submitToken := "s-" + server.NewToken()
	e.workToken = "w-" + server.NewToken()
	cfg := server.Config{
		Listen: ln.Addr().String(), Data: dir,
		Tokens: []server.Token{
			{Name: "submitter", Role: server.RoleSubmit, Token: submitToken},
			{Name: "workers", Role: server.RoleWork, Token: e.workToken},
		},
		S3:      server.S3Config{Endpoint: m.Endpoint, Bucket: artifactBucket},
		PoolKey: pubPath,
	}
	if err := cfg.Normalize("jobbench"); err != nil {
		_ = ln.Close()
		e.close()
		return nil, err
	}
	srv, err := server.New(cfg, server.Deps{Queue: e.q, S3: m.S3, Logger: log.With("component", "server")})
	if err != nil {
		_ = ln.Close()
		e.close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	// Stops run last-first: the server goes before the queue it serves.
	e.stops = append(e.stops, func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("server", "err", err)
		}
	})
	e.submit = queueclient.New(e.url, submitToken)

	if e.docker, err = runner.NewDockerClient(); err != nil {
		e.close()
		return nil, fmt.Errorf("docker: %w", err)
	}
	e.stops = append(e.stops, func() { _ = e.docker.Close() })
	return e, nil
}

// requireImages fails unless the job images are on the engine.
func (e *env) requireImages(images ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.docker.Ping(ctx); err != nil {
		return fmt.Errorf("the Docker engine does not answer (%v): the af job benchmark needs it", err)
	}
	for _, img := range images {
		if _, err := e.docker.ImageInspect(ctx, img); err != nil {
			return fmt.Errorf("image %s is missing (%v): run `make images`", img, err)
		}
	}
	return nil
}

// startWorkers runs n in-process workers of the given capacity with the
// worker's production defaults and the gzip decoder gz, until close or the
// next startWorkers with another decoder (which replaces them).
func (e *env) startWorkers(n, capacity int, gz decompress.GzipDecoder) error {
	if e.pool.stop != nil {
		if e.pool.gzip == gz {
			return nil
		}
		e.pool.stop()
	}
	opener, err := decompress.NewOpener(gz)
	if err != nil {
		return err
	}
	var stops []func()
	e.pool.stop = func() {
		for _, s := range stops {
			s()
		}
		e.pool.stop = nil
	}
	e.pool.gzip, e.pool.opener = gz, opener
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("bench-w%d", i)
		log := e.log.With("component", "worker", "worker", id)
		rn, err := runner.New(e.docker, runner.Options{Logger: log, WorkerID: id})
		if err != nil {
			return err
		}
		w, err := worker.New(worker.Config{
			Queue: queueclient.New(e.url, e.workToken),
			Key:   e.key, S3: awsconf.WorkerS3{Endpoint: e.minio.Endpoint}, Docker: e.docker, Runner: rn, Decompress: opener,
			WorkerGroup: "bench", WorkerID: id, Capacity: capacity,
			ScratchRoot: filepath.Join(e.dir, "scratch-"+id), Logger: log,
		})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		stops = append(stops, func() { cancel(); <-done })
	}
	return nil
}

// close stops everything started, last first.
func (e *env) close() {
	if e.pool.stop != nil {
		e.pool.stop()
	}
	for i := len(e.stops) - 1; i >= 0; i-- {
		e.stops[i]()
	}
	e.stops = nil
}
