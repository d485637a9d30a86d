// Package miniotest starts a real MinIO server for tests: a free loopback
// port, a temporary data directory, buckets, and an S3 client with root
// credentials. It never skips: a test that needs S3 and cannot have it
// fails, with the command that installs MinIO (`make deps`).
package miniotest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/testbin"
)

// Root credentials of every test server. They exist only on loopback for
// the life of a test.
const (
	RootUser     = "afrootuser"
	RootPassword = "afrootpassword-test-only"
)

// Server is a running MinIO.
type Server struct {
	// Endpoint is the S3 (and STS) URL, http://127.0.0.1:PORT.
	Endpoint string
	// Config carries the endpoint and root credentials.
	Config aws.Config
	// S3 is a root S3 client.
	S3 *s3.Client
	// DataDir is the server's storage directory.
	DataDir string

	// bin, addr and consoleAddr start it again (Restart).
	bin, addr, consoleAddr string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs *testbin.SyncBuffer
}

// Binary returns the MinIO executable tests use: $AF_MINIO, else
// bin/tools/minio under the module root, else minio on PATH.
func Binary() (string, error) {
	if p := os.Getenv("AF_MINIO"); p != "" {
		return p, nil
	}
	if root, err := moduleRoot(); err == nil {
		p := filepath.Join(root, "bin", "tools", "minio")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	return "", errors.New("minio not found: run `make deps` (installs it into bin/tools) or set AF_MINIO")
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Start runs a MinIO server for the test and creates buckets. The server
// stops in t.Cleanup.
func Start(t testing.TB, buckets ...string) *Server {
	t.Helper()
	s, err := Launch(t.TempDir())
	if err != nil {
		t.Fatalf("start minio: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Logf("stop minio: %v", err)
		}
	})
	for _, b := range buckets {
		s.MustBucket(t, b)
	}
	return s
}

// Launch starts MinIO with its data under dir, outside any test (for
// TestMain, benchmarks and the demo). Call Stop when done.
func Launch(dir string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "minio-data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("minio data dir: %w", err)
	}
	addr, err := testbin.FreeAddr()
	if err != nil {
		return nil, err
	}
	consoleAddr, err := testbin.FreeAddr()
	if err != nil {
		return nil, err
	}
	s := &Server{Endpoint: "http://" + addr, DataDir: dataDir, bin: bin, addr: addr, consoleAddr: consoleAddr,
		logs: &testbin.SyncBuffer{Limit: 1 << 20}}
	if err := s.launch(); err != nil {
		return nil, err
	}
	cfg, err := awsconf.Load(context.Background(), awsconf.Options{
		Endpoint: s.Endpoint, Region: awsconf.DefaultRegion,
		AccessKeyID: RootUser, SecretAccessKey: RootPassword,
	})
	if err != nil {
		_ = s.Stop()
		return nil, err
	}
	s.Config = cfg
	s.S3 = awsconf.S3(cfg)
	return s, nil
}

// launch runs the MinIO process and waits until it is ready.
func (s *Server) launch() error {
	cmd := exec.Command(s.bin, "server", "--quiet", "--address", s.addr, "--console-address", s.consoleAddr, s.DataDir)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+RootUser,
		"MINIO_ROOT_PASSWORD="+RootPassword,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	cmd.Stdout = s.logs
	cmd.Stderr = s.logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	if err := s.waitReady(30 * time.Second); err != nil {
		_ = s.Stop()
		return err
	}
	if err := s.waitSTS(30 * time.Second); err != nil {
		_ = s.Stop()
		return err
	}
	return nil
}

// waitSTS waits until MinIO's STS answers: /minio/health/ready can say
// ready a moment before its IAM subsystem is, when AssumeRole still fails
// with "Server not initialized, please try again".
func (s *Server) waitSTS(limit time.Duration) error {
	cfg, err := awsconf.Load(context.Background(), awsconf.Options{
		Endpoint: s.Endpoint, Region: awsconf.DefaultRegion,
		AccessKeyID: RootUser, SecretAccessKey: RootPassword,
	})
	if err != nil {
		return err
	}
	client := sts.NewFromConfig(cfg)
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := client.AssumeRole(ctx, &sts.AssumeRoleInput{
			RoleArn: aws.String("arn:minio:iam:::role/miniotest"), RoleSessionName: aws.String("miniotest-ready"), DurationSeconds: aws.Int32(900),
		})
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("minio's STS not ready after %s: %w", limit, err)
		}
		s.mu.Lock()
		done := s.done
		s.mu.Unlock()
		select {
		case <-done:
			return fmt.Errorf("minio exited before its STS was ready: %s", s.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Kill stops the server at once (SIGKILL), as a crash or a lost host
// would: clients get connection refused until Restart. The data stays.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts a stopped or killed server again on the same address
// over the same data, and waits until it is ready.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.launch()
}

// waitReady polls the liveness endpoint until it answers or the server
// exits.
func (s *Server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(s.Endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		s.mu.Lock()
		done := s.done
		s.mu.Unlock()
		select {
		case <-done:
			return fmt.Errorf("minio exited before it was ready: %s", s.logs.String())
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("minio not ready after %s: %s", limit, s.logs.String())
		}
	}
}

// Stop ends the server.
func (s *Server) Stop() error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	return nil
}

// Logs returns what the server printed.
func (s *Server) Logs() string { return s.logs.String() }

// MustBucket creates a bucket or fails the test.
func (s *Server) MustBucket(t testing.TB, name string) {
	t.Helper()
	if err := s.CreateBucket(context.Background(), name); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
}

// CreateBucket creates a bucket.
func (s *Server) CreateBucket(ctx context.Context, name string) error {
	_, err := s.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	return err
}

// Put writes an object or fails the test.
func (s *Server) Put(t testing.TB, bucket, key string, body []byte) {
	t.Helper()
	if _, err := s.S3.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body),
	}); err != nil {
		t.Fatalf("put s3://%s/%s: %v", bucket, key, err)
	}
}

// Env returns the standard AWS environment variables that point a child
// process (af, worker) at this server with root credentials.
func (s *Server) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL=" + s.Endpoint,
		"AWS_ACCESS_KEY_ID=" + RootUser,
		"AWS_SECRET_ACCESS_KEY=" + RootPassword,
		"AWS_REGION=" + awsconf.DefaultRegion,
	}
}
