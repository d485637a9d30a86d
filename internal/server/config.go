package server

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/af-project/af/internal/queue"
)

// Role is what a token may do. Admin may do everything the others may.
type Role string

const (
	// RoleSubmit creates graphs and tasks, cancels, reruns and asks the
	// server to refresh the file index.
	RoleSubmit Role = "submit"
	// RoleWork claims tasks, renews leases, reports and creates artifacts.
	RoleWork Role = "work"
	// RoleAdmin may call every route.
	RoleAdmin Role = "admin"
	// RoleRead reads every graph, task, log and result, and /metrics
	// (a lead's or a dashboard's identity); it changes nothing.
	RoleRead Role = "read"
)

// Token is one bearer token of the config file. Either Token (the value)
// or SHA256 (hex of its SHA-256) is set; the server only keeps the hash.
type Token struct {
	Name   string `yaml:"name"`
	Role   Role   `yaml:"role"`
	Token  string `yaml:"token,omitempty"`
	SHA256 string `yaml:"sha256,omitempty"`
}

// S3Config names the artifact bucket. Credentials come from the standard
// AWS environment of the `af serve` process, never from this file.
type S3Config struct {
	// Endpoint is the S3 URL (empty: AWS_ENDPOINT_URL or AWS itself).
	Endpoint string `yaml:"endpoint,omitempty"`
	// PublicEndpoint, when set, is the S3 URL presigned URLs point to, for
	// when workers and browsers reach S3 under another address than the
	// server does.
	PublicEndpoint string `yaml:"public_endpoint,omitempty"`
	Region         string `yaml:"region,omitempty"`
	// Bucket holds the artifacts; empty disables the artifact routes.
	Bucket string `yaml:"bucket,omitempty"`
	// Prefix is prepended to every artifact key (e.g. "af/").
	Prefix string `yaml:"prefix,omitempty"`
}

// SMTPConfig is the relay the server emails owners through. Every graph
// resolution's email comes from the server's durable outbox (workers send
// none and need no SMTP settings). With no addr the message is logged.
type SMTPConfig struct {
	Addr string `yaml:"addr,omitempty"`
	From string `yaml:"from,omitempty"`
	// Username authenticates; the password comes from the environment
	// variable named by PasswordEnv, never from this file.
	Username    string `yaml:"username,omitempty"`
	PasswordEnv string `yaml:"password_env,omitempty"`
	// StartTLS is auto (default: upgrade when offered), always or never.
	StartTLS string `yaml:"starttls,omitempty"`
	// RetryMin is the wait after an email's first failed attempt (default
	// 30s); it doubles per failure up to RetryMax (default 1h), with
	// jitter.
	RetryMin Duration `yaml:"retry_min,omitempty"`
	RetryMax Duration `yaml:"retry_max,omitempty"`
	// GiveUpAfter stops retrying an email this long after its graph
	// resolved (default 168h); it is then marked failed and logged.
	GiveUpAfter Duration `yaml:"give_up_after,omitempty"`
}

// Config is `af serve`'s configuration file (YAML).
type Config struct {
	// Listen is the HTTP address (host:port).
	Listen string `yaml:"listen"`
	// Data is the directory of queue.db and index.db.
	Data string `yaml:"data"`
	// PublicReads lets anyone read graphs, tasks, artifacts, the index,
	// the pool key, pages and metrics. Off by default: each identity
	// reads its own graphs (read and admin every graph), a worker only
	// its runs' inputs, and an emailed link its one graph.
	PublicReads *bool `yaml:"public_reads,omitempty"`
	// MetricsPublic opens /metrics to anonymous scrapers (default: admin
	// and read identities only).
	MetricsPublic bool `yaml:"metrics_public,omitempty"`
	// SessionTTL is how long a monitor sign-in lasts (default 12h).
	SessionTTL Duration `yaml:"session_ttl,omitempty"`
	// Tokens are the config file's identities: shared role tokens (the
	// first start writes admin, submit and work), kept working beside the
	// identities `af users add` makes.
	Tokens []Token  `yaml:"tokens"`
	S3     S3Config `yaml:"s3"`
	// PoolKey is the path of the worker pool's public key (`af keygen`),
	// served at GET /api/v1/pool-key.
	PoolKey string     `yaml:"pool_key,omitempty"`
	SMTP    SMTPConfig `yaml:"smtp,omitempty"`
	// Schedules says how af serve makes scheduled runs (schedules.go).
	Schedules ScheduleConfig `yaml:"schedules,omitempty"`
	// TLSCert and TLSKey are the PEM files of the server's certificate
	// (chain) and private key; set both and the server serves https
	// only (TLS 1.2 and later), picking up renewed files without a
	// restart. Both empty: plain http.
	TLSCert string `yaml:"tls_cert,omitempty"`
	TLSKey  string `yaml:"tls_key,omitempty"`
	// MonitorURL is the base URL people open the monitor page at (links
	// in emails and in `af submit` output); defaults to http://<listen>,
	// https://<listen> with TLS.
	MonitorURL string `yaml:"monitor_url,omitempty"`
	// LeaseDuration is how long a claim lasts before the worker must
	// reclaim (default 5m; see queue.DefaultLeaseDuration).
	LeaseDuration Duration `yaml:"lease_duration,omitempty"`
	// NoWorkerNotice is how long a running graph with pending tasks and
	// none running waits before its monitor page says that no worker is
	// claiming (default 30s; a negative value never says it).
	NoWorkerNotice Duration `yaml:"no_worker_notice,omitempty"`
	// ArtifactGrace is how long after a run resolved its worker may still
	// create artifacts for it (the final log after an exception report).
	ArtifactGrace Duration `yaml:"artifact_grace,omitempty"`
	// ArtifactPutTTL is how long a presigned artifact upload URL is valid
	// (default 15m). The worker PUTs as soon as it gets the URL, and S3
	// checks the expiry when an upload starts, not when it ends; a short
	// life bounds what a URL that leaked is worth.
	ArtifactPutTTL Duration `yaml:"artifact_put_ttl,omitempty"`
	// MaxGraphBytes caps the body of POST /api/v1/graphs (default
	// DefaultMaxGraphBytes). A graph over it is refused with 413 having
	// read no more than this of it.
	MaxGraphBytes int64 `yaml:"max_graph_bytes,omitempty"`
	// ExpireEvery is how often the server deletes expired graphs, tasks,
	// runs and artifacts (default DefaultExpireEvery; negative: never).
	ExpireEvery Duration `yaml:"expire_every,omitempty"`
	// ExpireBatch bounds the tasks one expiry transaction deletes
	// (default queue.DefaultSweepBatch).
	ExpireBatch int `yaml:"expire_batch,omitempty"`
	// ExpiredKept is how long an expired graph or task id answers 410
	// "expired" (then 404; default queue.DefaultTombstoneTTL).
	ExpiredKept Duration `yaml:"expired_kept,omitempty"`
	// FairShare shares the workers between owners within a priority
	// (default true): the owner with the fewest running tasks is served
	// first. false hands out the oldest task whoever owns it (FIFO).
	FairShare *bool `yaml:"fair_share,omitempty"`
	// MaxPendingPerOwner caps an owner's tasks waiting to run (pending
	// or unscheduled): a graph or task over it is refused with 429
	// (default DefaultMaxPendingPerOwner; 0: no cap).
	MaxPendingPerOwner *int `yaml:"max_pending_per_owner,omitempty"`
	// MaxRunningPerOwner caps an owner's running tasks; the others wait
	// pending (default 0: no cap, so idle workers are never left idle).
	MaxRunningPerOwner int `yaml:"max_running_per_owner,omitempty"`
	// Priority says who may ask for priority high.
	Priority PriorityConfig `yaml:"priority,omitempty"`
}

// PriorityConfig is the priority: key.
type PriorityConfig struct {
	// HighOwners, when present, lists the owners who may submit at
	// priority high; others get 403 naming this key. Absent: anyone may;
	// an empty list: nobody.
	HighOwners *[]string `yaml:"high_owners,omitempty"`
}

// Scheduling is the queue's claim order and per-owner caps from the config
// (queue.Options.Scheduling).
func (c *Config) Scheduling() queue.Scheduling {
	s := queue.Scheduling{
		FIFO:               c.FairShare != nil && !*c.FairShare,
		MaxRunningPerOwner: c.MaxRunningPerOwner,
		MaxPendingPerOwner: DefaultMaxPendingPerOwner,
	}
	if c.MaxPendingPerOwner != nil {
		s.MaxPendingPerOwner = *c.MaxPendingPerOwner
	}
	if c.Priority.HighOwners != nil {
		s.HighOwners = append([]string{}, *c.Priority.HighOwners...)
	}
	return s
}

// Duration is a time.Duration written as "20m" in YAML.
type Duration time.Duration

// UnmarshalYAML reads "90s", "20m" and the like.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (want e.g. 90s or 20m)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as text.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Defaults applied by Normalize and EnsureConfig.
const (
	// DefaultListen is loopback only: exposing the queue is a choice.
	DefaultListen = "127.0.0.1:8080"
	// DefaultLease is TaskCluster's claim lease.
	DefaultLease = queue.DefaultLeaseDuration
	// DefaultArtifactGrace lets a worker upload its final log after its
	// report.
	DefaultArtifactGrace = 10 * time.Minute
	// DefaultArtifactPutTTL is the life of a presigned upload URL.
	DefaultArtifactPutTTL = 15 * time.Minute
	// maxArtifactPutTTL is SigV4's limit on a presigned URL's life.
	maxArtifactPutTTL = 7 * 24 * time.Hour
	// DefaultMaxGraphBytes is twice the largest graph measured (7,153
	// mappers over 150,000 files: 31.4 MiB of JSON) and holds 3,000
	// mappers of 170 files each (510,000 files: 56 MiB; about 110 bytes
	// per file plus each mapper's sealed credentials; af submit's graphs
	// pin each file's ETag too, about 35 bytes more). Creating a graph
	// grows af serve by 2.5 to 4 times its size, the most when the
	// collector does not run during the request (TestGraphBodyMemory).
	DefaultMaxGraphBytes = 64 << 20
	// DefaultMaxPendingPerOwner bounds one owner's waiting tasks: a
	// shared cluster's queue holds several 3,000-mapper backfills of one
	// analyst (the largest graph measured had 7,153 mappers), but one
	// token cannot fill the queue's file with millions of tasks.
	DefaultMaxPendingPerOwner = 20_000
	// DefaultExpireEvery is how often expired graphs are deleted.
	DefaultExpireEvery = 10 * time.Minute
	// DefaultArtifactBucket is the bucket a generated config names.
	DefaultArtifactBucket = "af-artifacts"
	// ConfigFileName is the generated config's name inside the data dir.
	ConfigFileName = "config.yaml"
)

// Scheme is "https" when the server serves TLS, else "http".
func (c *Config) Scheme() string {
	if c.TLSCert != "" || c.TLSKey != "" {
		return "https"
	}
	return "http"
}

// Reads reports whether reads need no identity (public_reads: true).
func (c *Config) Reads() bool { return c.PublicReads != nil && *c.PublicReads }

// MetricsOpen reports whether /metrics needs no identity.
func (c *Config) MetricsOpen() bool { return c.MetricsPublic }

// DefaultSessionTTL is how long a monitor sign-in lasts.
const DefaultSessionTTL = 12 * time.Hour

// Normalize fills defaults and validates the config; name is the file the
// config came from, for messages.
func (c *Config) Normalize(name string) error {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Data == "" {
		c.Data = "af-data"
	}
	if c.LeaseDuration <= 0 {
		c.LeaseDuration = Duration(DefaultLease)
	}
	if c.ArtifactGrace <= 0 {
		c.ArtifactGrace = Duration(DefaultArtifactGrace)
	}
	if c.ArtifactPutTTL <= 0 {
		c.ArtifactPutTTL = Duration(DefaultArtifactPutTTL)
	}
	if time.Duration(c.ArtifactPutTTL) > maxArtifactPutTTL {
		return fmt.Errorf("%s: artifact_put_ttl %s is longer than S3's limit of 7 days (168h); the default is %s", name, time.Duration(c.ArtifactPutTTL), DefaultArtifactPutTTL)
	}
	if c.MaxGraphBytes <= 0 {
		c.MaxGraphBytes = DefaultMaxGraphBytes
	}
	switch c.SMTP.StartTLS {
	case "", "auto", "always", "never":
	default:
		return fmt.Errorf("%s: smtp.starttls %q must be auto, always or never", name, c.SMTP.StartTLS)
	}
	if c.SMTP.RetryMin < 0 || c.SMTP.RetryMax < 0 || c.SMTP.GiveUpAfter < 0 {
		return fmt.Errorf("%s: smtp.retry_min, retry_max and give_up_after must not be negative", name)
	}
	if c.SMTP.RetryMin > 0 && c.SMTP.RetryMax > 0 && c.SMTP.RetryMax < c.SMTP.RetryMin {
		return fmt.Errorf("%s: smtp.retry_max %s is shorter than retry_min %s", name, time.Duration(c.SMTP.RetryMax), time.Duration(c.SMTP.RetryMin))
	}
	if c.ExpireEvery == 0 {
		c.ExpireEvery = Duration(DefaultExpireEvery)
	}
	if c.ExpireBatch <= 0 {
		c.ExpireBatch = queue.DefaultSweepBatch
	}
	if c.ExpiredKept <= 0 {
		c.ExpiredKept = Duration(queue.DefaultTombstoneTTL)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("%s: tls_cert and tls_key go together: set both (the certificate and its private key, PEM) for https, or neither for plain http", name)
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = Duration(DefaultSessionTTL)
	}
	if c.MaxPendingPerOwner != nil && *c.MaxPendingPerOwner < 0 {
		return fmt.Errorf("%s: max_pending_per_owner %d must not be negative (0: no cap; the default is %d)", name, *c.MaxPendingPerOwner, DefaultMaxPendingPerOwner)
	}
	if c.MaxRunningPerOwner < 0 {
		return fmt.Errorf("%s: max_running_per_owner %d must not be negative (0: no cap, the default)", name, c.MaxRunningPerOwner)
	}
	if c.Priority.HighOwners != nil {
		for i, o := range *c.Priority.HighOwners {
			if strings.TrimSpace(o) == "" {
				return fmt.Errorf("%s: priority.high_owners[%d] is empty; list owners by identity name (as `af users list` shows them)", name, i)
			}
		}
	}
	if c.MonitorURL == "" {
		c.MonitorURL = c.Scheme() + "://" + c.Listen
	}
	c.MonitorURL = strings.TrimRight(c.MonitorURL, "/")
	if len(c.Tokens) == 0 {
		return fmt.Errorf("%s: no tokens: add at least one under tokens: (name, role submit|work|read|admin, token)", name)
	}
	names := map[string]bool{}
	for i := range c.Tokens {
		t := &c.Tokens[i]
		where := fmt.Sprintf("%s: tokens[%d]", name, i)
		if t.Name == "" {
			return fmt.Errorf("%s: missing name", where)
		}
		if strings.ContainsAny(t.Name, " \t\n") {
			return fmt.Errorf("%s: name %q must not contain spaces", where, t.Name)
		}
		if names[t.Name] {
			return fmt.Errorf("%s: duplicate token name %q", where, t.Name)
		}
		names[t.Name] = true
		switch t.Role {
		case RoleSubmit, RoleWork, RoleRead, RoleAdmin:
		default:
			return fmt.Errorf("%s (%s): role %q must be submit, work, read or admin", where, t.Name, t.Role)
		}
		switch {
		case t.Token != "" && t.SHA256 != "":
			return fmt.Errorf("%s (%s): set token or sha256, not both", where, t.Name)
		case t.Token != "":
			if len(t.Token) < 16 {
				return fmt.Errorf("%s (%s): token is too short (want at least 16 characters; 32 random bytes, base64url, is what af generates)", where, t.Name)
			}
		case t.SHA256 != "":
			b, err := hex.DecodeString(t.SHA256)
			if err != nil || len(b) != sha256.Size {
				return fmt.Errorf("%s (%s): sha256 must be 64 hex digits (sha256sum of the token)", where, t.Name)
			}
		default:
			return fmt.Errorf("%s (%s): missing token (or sha256)", where, t.Name)
		}
	}
	return nil
}

// LoadConfig reads and validates a YAML config file.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig parses and validates a YAML config; unknown keys are errors
// so a misspelt setting is not silently ignored.
func ParseConfig(name string, data []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, fmt.Errorf("%s: empty config", name)
		}
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	if err := c.Normalize(name); err != nil {
		return Config{}, err
	}
	return c, nil
}

// NewToken returns a fresh bearer token: 32 random bytes, base64url.
func NewToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("server: crypto/rand failed: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// EnsureConfig returns the config in dataDir, creating it with three fresh
// tokens (admin, submit, work) and the default artifact bucket when it does
// not exist. created says whether this call wrote it, so the caller can
// print the tokens once.
func EnsureConfig(dataDir string) (cfg Config, path string, created bool, err error) {
	path = filepath.Join(dataDir, ConfigFileName)
	if _, err := os.Stat(path); err == nil {
		cfg, err := LoadConfig(path)
		return cfg, path, false, err
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Config{}, path, false, fmt.Errorf("config: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return Config{}, path, false, fmt.Errorf("create data dir: %w", err)
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return Config{}, path, false, fmt.Errorf("data dir: %w", err)
	}
	cfg = Config{
		Listen: DefaultListen,
		Data:   abs,
		Tokens: []Token{
			{Name: "admin", Role: RoleAdmin, Token: NewToken()},
			{Name: "submit", Role: RoleSubmit, Token: NewToken()},
			{Name: "work", Role: RoleWork, Token: NewToken()},
		},
		S3: S3Config{Bucket: DefaultArtifactBucket},
	}
	body, err := yaml.Marshal(&cfg)
	if err != nil {
		return Config{}, path, false, fmt.Errorf("encode config: %w", err)
	}
	header := `# af serve configuration, generated on first start. Keep it private: it
# holds the shared bearer tokens (clients send one as AF_TOKEN; roles
# admin, submit, work; print one with af serve --config FILE --print-token
# ROLE; af serve never logs them). Give each person and pool its own
# identity instead: AF_TOKEN=<admin token> af users add alice@example.com
# --role submit. Other keys (go doc github.com/af-project/af/internal/server):
#   public_reads: true             # anyone reads every graph (default: each identity its own)
#   metrics_public: true           # anyone scrapes /metrics (default: admin and read identities)
#   session_ttl: 12h               # how long a monitor sign-in lasts
#   pool_key: /etc/af/af.pub       # af keygen's public key, served to submitters
#   s3: {endpoint: "", public_endpoint: "", region: "", prefix: ""}
#   tls_cert: /etc/af/tls/cert.pem # https only, with tls_key (renewed files are picked up)
#   tls_key: /etc/af/tls/key.pem
#   monitor_url: https://af.example.org
#   lease_duration: 5m
#   artifact_grace: 10m
#   artifact_put_ttl: 15m          # life of a presigned upload URL
#   max_graph_bytes: 67108864      # the largest graph body accepted (64 MiB)
#   expire_every: 10m              # delete expired graphs, runs, artifacts (negative: never)
#   expire_batch: 500              # tasks deleted per transaction
#   expired_kept: 2160h            # an expired id answers 410 "expired" this long
#   fair_share: true               # share workers between owners; false: oldest task first
#   max_pending_per_owner: 20000   # an owner's waiting tasks at most (429 over it; 0: no cap)
#   max_running_per_owner: 0       # an owner's running tasks at most (0: no cap)
#   priority: {high_owners: [alice@example.com]}   # who may submit --priority high (absent: anyone)
`
	// O_EXCL: two servers starting at once must not overwrite each
	// other's tokens.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Config{}, path, false, fmt.Errorf("write config: %w", err)
	}
	if _, err := f.Write(append([]byte(header), body...)); err != nil {
		f.Close()
		return Config{}, path, false, fmt.Errorf("write config: %w", err)
	}
	if err := f.Close(); err != nil {
		return Config{}, path, false, fmt.Errorf("write config: %w", err)
	}
	if err := cfg.Normalize(path); err != nil {
		return Config{}, path, false, err
	}
	return cfg, path, true, nil
}
