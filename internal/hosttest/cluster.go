package hosttest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gopkg.in/yaml.v3"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/server"
	"github.com/af-project/af/internal/tlstest"
)

// Buckets and ports of every cluster (each host has its own address, so
// the ports can be fixed).
const (
	InputBucket    = "telemetry"
	ArtifactBucket = "af-artifacts"
	QueuePort      = 8080
	MinIOPort      = 9000
	SMTPPort       = 2525
	// MinIO's root credentials: they exist only on the cluster's private
	// bridge for its life.
	RootUser     = "afhostsroot"
	RootPassword = "afhosts-root-password-test-only"
	region       = "us-east-1"
	readyWait    = 60 * time.Second
)

// Binaries are the executables a cluster runs.
type Binaries struct {
	AF, Worker, SMTPSink, MinIO string
}

// Options tune a cluster.
type Options struct {
	// Dir holds every host's files (data dirs, scratch, logs, keys).
	Dir string
	// Net is the subnet number (10.231.Net.0/24); 0 picks a free one.
	Net int
	// Workers is the number of worker hosts (default 3).
	Workers int
	// Lease is af serve's lease_duration (default 5m, af serve's own).
	Lease time.Duration
	// WorkerArgs are extra flags for every worker.
	WorkerArgs []string
	Bin        Binaries
	Logf       Logf
}

// Cluster is af on several hosts: the queue, MinIO and the SMTP sink on
// hosts of their own, and workers on the rest.
type Cluster struct {
	Net                    *Net
	QueueHost, S3Host      *Host
	SMTPHost               *Host
	WorkerHosts            []*Host
	Serve, MinIO, SMTPSink *Proc
	Workers                []*Proc
	// WorkerIDs[i] is Workers[i]'s --worker-id.
	WorkerIDs []string
	// URL is the queue's base URL, S3Endpoint MinIO's: the same from every
	// namespace and from the root one.
	URL, S3Endpoint string
	SubmitToken     string
	WorkToken       string
	AdminToken      string
	KeyPath         string
	PubPath         string
	ConfigPath      string
	Dir             string
	// CAFile is the PEM of the cluster's own CA, which signed af serve's
	// certificate for the queue host's address: the queue is https only,
	// so tokens never cross the bridge in the clear. Roots trusts it.
	CAFile string
	Roots  *x509.CertPool
	// S3 is a root client of the cluster's MinIO, for tests' data.
	S3   *s3.Client
	logf Logf
}

// Up builds the hosts and starts every process, each waited for until it
// answers. On error what was made is torn down.
func Up(ctx context.Context, o Options) (c *Cluster, err error) {
	if o.Workers == 0 {
		o.Workers = 3
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	for name, p := range map[string]string{"af": o.Bin.AF, "worker": o.Bin.Worker, "smtpsink": o.Bin.SMTPSink, "minio": o.Bin.MinIO} {
		if p == "" {
			return nil, fmt.Errorf("hosttest: no %s binary given", name)
		}
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("hosttest: %s binary: %w (run `make build deps`)", name, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "logs"), 0o700); err != nil {
		return nil, fmt.Errorf("hosttest: %w", err)
	}
	nt, err := NewNet(o.Net, o.Logf)
	if err != nil {
		return nil, err
	}
	c = &Cluster{Net: nt, Dir: o.Dir, logf: o.Logf}
	defer func() {
		if err != nil {
			_ = c.Close()
			c = nil
		}
	}()
	if c.QueueHost, err = nt.AddHost("queue"); err != nil {
		return c, err
	}
	if c.S3Host, err = nt.AddHost("minio"); err != nil {
		return c, err
	}
	if c.SMTPHost, err = nt.AddHost("smtp"); err != nil {
		return c, err
	}
	for i := range o.Workers {
		h, err := nt.AddHost("w" + strconv.Itoa(i+1))
		if err != nil {
			return c, err
		}
		c.WorkerHosts = append(c.WorkerHosts, h)
	}
	c.URL = fmt.Sprintf("https://%s:%d", c.QueueHost.IP, QueuePort)
	c.S3Endpoint = fmt.Sprintf("http://%s:%d", c.S3Host.IP, MinIOPort)
	s3env := []string{"AWS_ACCESS_KEY_ID=" + RootUser, "AWS_SECRET_ACCESS_KEY=" + RootPassword, "AWS_REGION=" + region}
	logPath := func(name string) string { return filepath.Join(o.Dir, "logs", name+".log") }

	// MinIO.
	c.MinIO = NewProc(c.S3Host, "minio", logPath("minio"),
		[]string{"MINIO_ROOT_USER=" + RootUser, "MINIO_ROOT_PASSWORD=" + RootPassword, "MINIO_BROWSER=off", "MINIO_UPDATE=off"}, o.Logf,
		o.Bin.MinIO, "server", "--quiet", "--address", net.JoinHostPort(c.S3Host.IP, strconv.Itoa(MinIOPort)),
		"--console-address", net.JoinHostPort(c.S3Host.IP, strconv.Itoa(MinIOPort+1)), filepath.Join(o.Dir, "minio-data"))
	if err := c.StartMinIO(ctx); err != nil {
		return c, err
	}
	cfg, err := awsconf.Load(ctx, awsconf.Options{Endpoint: c.S3Endpoint, Region: region, AccessKeyID: RootUser, SecretAccessKey: RootPassword})
	if err != nil {
		return c, err
	}
	c.S3 = awsconf.S3(cfg)
	for _, b := range []string{InputBucket, ArtifactBucket} {
		bctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, err := c.S3.CreateBucket(bctx, &s3.CreateBucketInput{Bucket: aws.String(b)})
		cancel()
		if err != nil {
			return c, fmt.Errorf("hosttest: create bucket %s: %w", b, err)
		}
	}

	// The SMTP sink.
	smtpAddr := net.JoinHostPort(c.SMTPHost.IP, strconv.Itoa(SMTPPort))
	c.SMTPSink = NewProc(c.SMTPHost, "smtp", logPath("smtp"), nil, o.Logf, o.Bin.SMTPSink, "--listen", smtpAddr)
	if err := c.SMTPSink.Start(); err != nil {
		return c, err
	}
	if err := waitTCP(ctx, smtpAddr, c.SMTPSink); err != nil {
		return c, err
	}

	// af serve, with its config written here: tokens, the artifact
	// bucket at MinIO, the pool key, the lease.
	if c.PubPath, c.KeyPath, err = creds.GenerateKeyPair(filepath.Join(o.Dir, "keys"), false); err != nil {
		return c, err
	}
	c.SubmitToken, c.WorkToken, c.AdminToken = "s-"+server.NewToken(), "w-"+server.NewToken(), "a-"+server.NewToken()
	ca, err := tlstest.NewCA("af hosttest CA")
	if err != nil {
		return c, err
	}
	leaf, err := ca.Server(tlstest.LeafOptions{}, c.QueueHost.IP)
	if err != nil {
		return c, err
	}
	tlsFiles, err := tlstest.WriteFiles(filepath.Join(o.Dir, "tls"), "queue", ca, leaf)
	if err != nil {
		return c, err
	}
	c.CAFile, c.Roots = tlsFiles.CA, ca.Pool()
	scfg := server.Config{
		Listen: net.JoinHostPort(c.QueueHost.IP, strconv.Itoa(QueuePort)),
		Data:   filepath.Join(o.Dir, "af-data"),
		Tokens: []server.Token{
			{Name: "submitter", Role: server.RoleSubmit, Token: c.SubmitToken},
			{Name: "workers", Role: server.RoleWork, Token: c.WorkToken},
			{Name: "admin", Role: server.RoleAdmin, Token: c.AdminToken},
		},
		S3:            server.S3Config{Endpoint: c.S3Endpoint, Bucket: ArtifactBucket, Region: region},
		PoolKey:       c.PubPath,
		SMTP:          server.SMTPConfig{Addr: smtpAddr, From: "af@localhost"},
		MonitorURL:    c.URL,
		TLSCert:       tlsFiles.Cert,
		TLSKey:        tlsFiles.Key,
		LeaseDuration: server.Duration(o.Lease),
	}
	b, err := yaml.Marshal(scfg)
	if err != nil {
		return c, err
	}
	c.ConfigPath = filepath.Join(o.Dir, "config.yaml")
	if err := os.WriteFile(c.ConfigPath, b, 0o600); err != nil {
		return c, err
	}
	c.Serve = NewProc(c.QueueHost, "serve", logPath("serve"), s3env, o.Logf, o.Bin.AF, "serve", "--config", c.ConfigPath)
	if err := c.StartServe(ctx); err != nil {
		return c, err
	}

	// Today's worker emails owners itself (--smtp); once af serve's outbox
	// does, the flag goes: pass it only to a worker that has it.
	var smtpFlag []string
	hctx, hcancel := context.WithTimeout(ctx, 30*time.Second)
	help, _ := exec.CommandContext(hctx, o.Bin.Worker, "--help").CombinedOutput()
	hcancel()
	if bytes.Contains(help, []byte("-smtp ")) {
		smtpFlag = []string{"--smtp", "smtp://" + smtpAddr + "?starttls=never&from=af@localhost"}
	}

	// Workers: each its own id, scratch and state dir, all on this
	// machine's Docker engine (its unix socket works from any namespace).
	for _, h := range c.WorkerHosts {
		id := fmt.Sprintf("%s%d-%s", Prefix, nt.N, h.Name)
		argv := append([]string{o.Bin.Worker, "--queue", c.URL, "--ca", c.CAFile, "--key", c.KeyPath, "--worker-id", id,
			"--worker-group", "hosts", "--scratch", filepath.Join(o.Dir, h.Name, "scratch"),
			"--state-dir", filepath.Join(o.Dir, h.Name, "state"), "--s3-endpoint", c.S3Endpoint, "--grace", "5s"}, append(smtpFlag, o.WorkerArgs...)...)
		p := NewProc(h, "worker-"+h.Name, logPath("worker-"+h.Name), []string{"AF_TOKEN=" + c.WorkToken}, o.Logf, argv...)
		c.Workers = append(c.Workers, p)
		c.WorkerIDs = append(c.WorkerIDs, id)
		if err := os.MkdirAll(filepath.Join(o.Dir, h.Name), 0o700); err != nil {
			return c, err
		}
		if err := p.Start(); err != nil {
			return c, err
		}
	}
	return c, nil
}

// StartMinIO starts MinIO (on its data dir) and waits until it is ready.
func (c *Cluster) StartMinIO(ctx context.Context) error {
	if err := c.MinIO.Start(); err != nil {
		return err
	}
	return waitHTTP(ctx, c.S3Endpoint+"/minio/health/ready", c.MinIO, nil)
}

// StopMinIO stops MinIO (SIGTERM); its data stays.
func (c *Cluster) StopMinIO() error { return c.MinIO.Stop() }

// StartServe starts af serve on its config and data dir and waits until
// it answers.
func (c *Cluster) StartServe(ctx context.Context) error {
	if err := c.Serve.Start(); err != nil {
		return err
	}
	return waitHTTP(ctx, c.URL+"/api/v1/pool-key", c.Serve, c.Roots)
}

// RestartServe stops af serve with sig and starts it again on the same
// data dir, waiting until it answers.
func (c *Cluster) RestartServe(ctx context.Context, sig syscall.Signal) error {
	if err := c.Serve.Signal(sig); err != nil {
		return err
	}
	return c.StartServe(ctx)
}

// Env is the environment af (submit, status, result) needs to use the
// cluster from the root namespace: the queue, the submit token, MinIO.
func (c *Cluster) Env() []string {
	return []string{
		"AF_QUEUE_URL=" + c.URL, "AF_TOKEN=" + c.SubmitToken, "AF_CA_FILE=" + c.CAFile,
		"AWS_ENDPOINT_URL=" + c.S3Endpoint, "AWS_ACCESS_KEY_ID=" + RootUser,
		"AWS_SECRET_ACCESS_KEY=" + RootPassword, "AWS_REGION=" + region,
	}
}

// Close stops every process (workers first, SIGTERM then SIGKILL) and
// tears down the network, with the job containers the workers left.
// Safe to call twice and on a half-built cluster.
func (c *Cluster) Close() error {
	var errs []error
	if c.Net != nil {
		errs = append(errs, c.Net.HealAll())
	}
	for _, p := range c.Workers {
		errs = append(errs, p.Stop())
	}
	for _, p := range []*Proc{c.Serve, c.SMTPSink, c.MinIO} {
		if p != nil {
			errs = append(errs, p.Stop())
		}
	}
	if c.Net != nil {
		errs = append(errs, c.Net.Close())
	}
	return errors.Join(errs...)
}

// waitHTTP polls url until it answers; roots, when set, are the CAs its
// https certificate is checked against.
func waitHTTP(ctx context.Context, url string, p *Proc, roots *x509.CertPool) error {
	ctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	if roots != nil {
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
		}
		if !p.Running() {
			return fmt.Errorf("hosttest: %s exited before answering at %s:\n%s", p.Name, url, p.Log(4000))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hosttest: %s did not answer at %s within %s:\n%s", p.Name, url, readyWait, p.Log(4000))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func waitTCP(ctx context.Context, addr string, p *Proc) error {
	ctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	for {
		var d net.Dialer
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := d.DialContext(dctx, "tcp", addr)
		dcancel()
		if err == nil {
			conn.Close()
			return nil
		}
		if !p.Running() {
			return fmt.Errorf("hosttest: %s exited before listening on %s:\n%s", p.Name, addr, p.Log(4000))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hosttest: %s did not listen on %s within %s", p.Name, addr, readyWait)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
