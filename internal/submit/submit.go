package submit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/filter"
	"github.com/af-project/af/internal/index"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/registry"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/version"
)

// Request is one `af submit`.
type Request struct {
	// FilterName names the filter in messages (its path).
	FilterName string
	FilterJSON []byte
	Image      string
	Name       string
	Owner      string
	// Priority is the graph's claim priority (empty: normal).
	Priority taskdef.Priority
	Env      map[string]string

	MaxLoadBytes    int64
	MaxFilesPerTask int
	MaxRunTime      time.Duration
	Deadline        time.Duration
	Retries         int
	Limits          taskdef.Limits

	// IndexDB, when set, is a local index file to query instead of the
	// queue's index.
	IndexDB string

	CredentialOptions

	// loads, from af resubmit, keeps the original's mappers
	// (GraphOptions.Loads).
	loads []int
}

// CredentialOptions say how a job's S3 credentials are minted and sealed,
// for af submit and af resubmit alike.
type CredentialOptions struct {
	// PublicKey seals the credentials; nil asks the queue for the pool
	// key.
	PublicKey *creds.PublicKey
	// CredentialsTTL is how long the job's credentials live; zero means
	// the deadline plus CredentialsMargin (see CredentialsTTL).
	CredentialsTTL  time.Duration
	CredentialsMode creds.Mode
	RoleARN         string
}

// Submitter plans and posts jobs.
type Submitter struct {
	Queue *queueclient.Client
	// AWS is the submitter's own AWS configuration, used only to mint the
	// job's scoped credentials.
	AWS aws.Config
	// Docker, when set, checks that the image exists on this host's
	// engine before anything is posted (workers never pull).
	Docker *client.Client
	// Registry resolves a registry image's tag to its digest (nil: one
	// with the credentials of Docker's config in RegistryConfig, or
	// $DOCKER_CONFIG or ~/.docker when that is empty).
	Registry       *registry.Client
	RegistryConfig string
	// Runner, when set, checks the job in the image before anything is
	// posted (CheckJob); Warn hears what it could not check.
	Runner *runner.Runner
	Warn   io.Writer
	Logger *slog.Logger
	Now    func() time.Time
}

// Plan is a graph ready to post, and what it reads.
type Plan struct {
	Graph   taskdef.Graph
	Bucket  string
	Prefix  string
	Mappers int
	Files   int
	Bytes   int64
	// Scope is what the job's credentials can read, and CredentialsExpire
	// when they stop working.
	Scope             creds.Scope
	CredentialsExpire time.Time
	// Image is how the job image was pinned (see PinImage).
	Image ImagePin
	// Provenance is what the graph is made from, for Record after the
	// graph is posted.
	Provenance taskdef.Provenance
	// Timings of the stages, for --verbose and the benchmark.
	QueryTime, MintTime, BuildTime time.Duration
}

// ErrNoFiles is a filter that selects nothing.
var ErrNoFiles = errors.New("the filter selects no files")

// ErrInput marks an error the submitter fixes in what they submit (the
// filter, the image, the job's files), not in af's infrastructure: af
// exits 2 on it. Match it with errors.Is; its text is not in the message
// (wrap with InputError).
var ErrInput = errors.New("bad input")

type inputError struct{ err error }

func (e inputError) Error() string   { return e.err.Error() }
func (e inputError) Unwrap() []error { return []error{e.err, ErrInput} }

// InputError marks err with ErrInput, keeping its text.
func InputError(err error) error {
	if err == nil {
		return nil
	}
	return inputError{err}
}

func (s *Submitter) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Plan queries the index, mints and seals credentials and builds the
// graph. Nothing is posted.
func (s *Submitter) Plan(ctx context.Context, r Request) (Plan, error) {
	if r.Image == "" {
		return Plan{}, InputError(errors.New("no image: say which job image to run (e.g. af/os-count)"))
	}
	if err := CheckEnv(r.Env); err != nil {
		return Plan{}, err
	}
	// The tasks and the sealed credentials name the image by digest
	// (image.go), so the workers run exactly what was submitted.
	pin, err := s.PinImage(ctx, r.Image)
	if err != nil {
		return Plan{}, err
	}
	var spec []byte
	if s.Runner != nil {
		warn := s.Warn
		if warn == nil {
			warn = io.Discard
		}
		// The job is checked in the image as this host's engine has it
		// (a registry image not pulled here is noted and skipped).
		if spec, err = checkJob(ctx, s.Runner, r.Image, warn); err != nil {
			return Plan{}, err
		}
	}
	r.Image = pin.Ref
	t0 := s.now()
	res, schema, err := s.query(ctx, r)
	if err != nil {
		return Plan{}, err
	}
	if len(res.Objects) == 0 {
		return Plan{}, fmt.Errorf("%w in s3://%s/%s: check its dimensions with `af index stats`, or refresh the index with `af index build`", ErrNoFiles, res.Bucket, res.Prefix)
	}
	prov := taskdef.Provenance{
		MadeBy: "af submit", AfVersion: version.Get().Version, Image: pin.Record(), JobSpec: string(spec),
		FilterName: r.FilterName, Filter: r.FilterJSON, Rendered: r.FilterJSON,
	}
	return s.assemble(ctx, r, pin, res, schema, t0, prov)
}

// assemble mints and seals the credentials for the files res selected
// and builds the graph and its provenance (prov's remaining fields).
func (s *Submitter) assemble(ctx context.Context, r Request, pin ImagePin, res taskdef.IndexResult, schema []string, t0 time.Time, prov taskdef.Provenance) (Plan, error) {
	t1 := s.now()
	pub := r.PublicKey
	if pub == nil {
		text, err := s.Queue.PoolKey(ctx)
		if err != nil {
			return Plan{}, fmt.Errorf("get the worker pool's public key from the queue (or pass --public-key af.pub): %w", err)
		}
		if pub, err = creds.ParsePublicKey(string(text)); err != nil {
			return Plan{}, fmt.Errorf("the queue's pool key: %w", err)
		}
	}
	deadline := r.Deadline
	if deadline <= 0 {
		deadline = DefaultDeadline
	}
	ttl, deadline := CredentialsTTL(r.CredentialsTTL, deadline, r.CredentialsMode)
	now := s.now()
	// The graph id is picked first: it is sealed into the credentials
	// with the image, and the worker refuses them in any other graph or
	// in a task that runs another image.
	graphID := taskdef.NewID()
	sc, err := SealCredentials(ctx, s.AWS, pub, CredentialsRequest{
		GraphID: graphID, Image: r.Image, Bucket: res.Bucket, Prefix: res.Prefix, Schema: schema, Layout: res.Layout, Files: res.Objects,
		TTL: ttl, Mode: r.CredentialsMode, RoleARN: r.RoleARN, Deadline: now.Add(deadline),
	})
	if err != nil {
		return Plan{}, err
	}
	t2 := s.now()
	o := GraphOptions{
		GraphID: graphID, Name: r.Name, Owner: r.Owner, Priority: r.Priority, Image: r.Image, Bucket: res.Bucket, Prefix: res.Prefix, Schema: schema, Layout: res.Layout,
		Files: res.Objects, ETags: res.ETags, Loads: r.loads, MaxLoadBytes: r.MaxLoadBytes, MaxFilesPerTask: r.MaxFilesPerTask, Env: r.Env,
		SealedCredentials: sc.Sealed, MaxRunTime: r.MaxRunTime, Deadline: deadline, Retries: r.Retries,
		Limits: r.Limits, Now: now,
	}
	g, err := BuildGraph(o)
	if err != nil {
		return Plan{}, err
	}
	m, files, bytes := Summary(g)
	prov = RecordOf(prov, o)
	return Plan{
		Graph: g, Bucket: res.Bucket, Prefix: res.Prefix, Mappers: m, Files: files, Bytes: bytes,
		Scope: sc.Scope, CredentialsExpire: sc.Expiration, Image: pin, Provenance: prov,
		QueryTime: t1.Sub(t0), MintTime: t2.Sub(t1), BuildTime: s.now().Sub(t2),
	}, nil
}

// query selects the input files through the queue's index or a local one.
func (s *Submitter) query(ctx context.Context, r Request) (taskdef.IndexResult, []string, error) {
	if r.IndexDB == "" {
		res, err := s.Queue.IndexQuery(ctx, r.FilterJSON, true)
		if err != nil {
			return taskdef.IndexResult{}, nil, fmt.Errorf("query the file index with %s: %w", r.FilterName, err)
		}
		// A server that predates the layout sends no schema: the
		// telemetry one, which the worker assumes without one.
		return res, res.Schema, nil
	}
	db, err := index.Open(r.IndexDB, index.Options{ReadOnly: true, Logger: s.Logger})
	if err != nil {
		return taskdef.IndexResult{}, nil, err
	}
	defer db.Close()
	bucket, prefix, schema, err := db.Source()
	if err != nil {
		return taskdef.IndexResult{}, nil, fmt.Errorf("index %s: %w", r.IndexDB, err)
	}
	f, err := filter.Parse(r.FilterName, r.FilterJSON, schema)
	if err != nil {
		return taskdef.IndexResult{}, nil, InputError(err)
	}
	res := taskdef.IndexResult{Bucket: bucket, Prefix: prefix, Schema: schema.Fields, Layout: schema.Layout()}
	if _, err := db.Query(ctx, f, func(o index.Object) error {
		res.Objects = append(res.Objects, taskdef.InputFile{Key: o.Key, Size: o.Size})
		res.ETags = append(res.ETags, o.ETag)
		res.Files++
		res.Bytes += o.Size
		return nil
	}); err != nil {
		return taskdef.IndexResult{}, nil, fmt.Errorf("query %s: %w", r.IndexDB, err)
	}
	return res, schema.Fields, nil
}

// checkImage refuses an image that is not on this host's engine: with no
// registry, a worker can only run images that were built or loaded on it.
func (s *Submitter) checkImage(ctx context.Context, image string) error {
	if s.Docker == nil {
		return nil
	}
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.Docker.ImageInspect(ictx, image); err != nil {
		if cerrdefs.IsNotFound(err) {
			return InputError(fmt.Errorf("image %s is not on this host's Docker engine, so the workers cannot have it either (they pull only images named with their registry, REGISTRY/NAME:TAG): build it (`make images` for the examples) or `docker load` it on every worker host; pass --no-image-check when this host is not a worker", image))
		}
		return fmt.Errorf("check image %s: %w (pass --no-image-check to skip)", image, err)
	}
	return nil
}

// Post creates the graph on the queue in one request.
func (s *Submitter) Post(ctx context.Context, g taskdef.Graph) (taskdef.GraphStatus, error) {
	st, err := s.Queue.CreateGraph(ctx, g)
	if err != nil {
		return taskdef.GraphStatus{}, fmt.Errorf("post the graph: %w", err)
	}
	return st, nil
}

// Record stores the posted graph's provenance on the queue, so that
// `af resubmit` can run it again. A graph whose record is lost still runs;
// only its resubmission is refused.
func (s *Submitter) Record(ctx context.Context, p taskdef.Provenance) error {
	if err := s.Queue.PutProvenance(ctx, p); err != nil {
		return fmt.Errorf("record what graph %s was made from (af resubmit needs it; the graph runs regardless): %w", p.GraphID, err)
	}
	return nil
}

// MonitorURL is the graph's monitor page under the queue's base URL.
func MonitorURL(base, graphID string) string {
	return strings.TrimRight(base, "/") + "/graphs/" + graphID
}

// CredentialsMargin is how long a job's credentials outlive its graph's
// deadline by default: the queue ends the graph at the deadline, and the
// margin absorbs clock skew between this host, the queue and S3.
const CredentialsMargin = 10 * time.Minute

// CredentialsTTL returns the credentials' lifetime and the graph's
// deadline (from now). A zero ttl means the deadline plus
// CredentialsMargin, capped at what STS grants for mode; when the
// lifetime cannot cover the deadline plus the margin, the deadline is
// shortened so no task outlives its credentials.
func CredentialsTTL(ttl, deadline time.Duration, mode creds.Mode) (time.Duration, time.Duration) {
	maxTTL := creds.MaxAssumeRoleTTL
	if mode == creds.ModeFederationToken {
		maxTTL = creds.MaxFederationTTL
	}
	if ttl <= 0 {
		ttl = min(max(deadline+CredentialsMargin, creds.MinTTL), maxTTL)
	}
	if ttl < deadline+CredentialsMargin {
		deadline = max(ttl-CredentialsMargin, time.Minute)
	}
	return ttl, deadline
}

// CredentialsRequest says what a job's credentials are for.
type CredentialsRequest struct {
	// GraphID is the graph they are sealed to.
	GraphID string
	// Image is the job image the graph runs; the credentials are sealed
	// to it too, so a task added to the graph with another image cannot
	// use them.
	Image string
	// Bucket, Prefix and Schema are the index's; Files the selected inputs.
	Bucket, Prefix string
	Schema         []string
	// Layout is where Schema's dimensions live (layout.Schema.Layout).
	Layout  string
	Files   []taskdef.InputFile
	TTL     time.Duration
	Mode    creds.Mode
	RoleARN string
	// Deadline is the graph's; Mint fails if STS grants less.
	Deadline time.Time
}

// SealedCredentials are minted, scoped and sealed credentials.
type SealedCredentials struct {
	// Sealed is the CREDENTIALS value for the mappers.
	Sealed     string
	Scope      creds.Scope
	Expiration time.Time
}

// SealCredentials computes the narrowest scope covering the files
// (creds.ScopeFor), mints credentials whose session policy grants exactly
// those prefixes, and seals them, with the graph id, the job image and the
// same prefixes, to the pool key. The worker's check (Credentials.Permits) and S3's
// policy thus enforce one list.
func SealCredentials(ctx context.Context, cfg aws.Config, pub *creds.PublicKey, r CredentialsRequest) (SealedCredentials, error) {
	if r.GraphID == "" {
		return SealedCredentials{}, errors.New("seal credentials: no graph id")
	}
	if r.Image == "" {
		return SealedCredentials{}, errors.New("seal credentials: no job image")
	}
	keys := make([]string, len(r.Files))
	for i, f := range r.Files {
		keys[i] = f.Key
	}
	schema, err := layout.FromWire(r.Schema, r.Layout)
	if err != nil {
		return SealedCredentials{}, fmt.Errorf("scope the job's S3 credentials: the index's %w", err)
	}
	sc, err := creds.ScopeFor(r.Bucket, r.Prefix, schema, keys)
	if err != nil {
		return SealedCredentials{}, fmt.Errorf("scope the job's S3 credentials: %w", err)
	}
	cr, err := creds.Mint(ctx, cfg, creds.MintRequest{
		Bucket: r.Bucket, Prefix: r.Prefix, Prefixes: sc.Prefixes, GraphID: r.GraphID, Image: r.Image,
		TTL: r.TTL, Mode: r.Mode, RoleARN: r.RoleARN, SessionName: "af-submit", Deadline: r.Deadline,
	})
	if err != nil {
		return SealedCredentials{}, fmt.Errorf("mint the job's S3 credentials: %w", err)
	}
	sealed, err := creds.Seal(cr, pub)
	if err != nil {
		return SealedCredentials{}, err
	}
	return SealedCredentials{Sealed: sealed, Scope: sc, Expiration: cr.Expiration}, nil
}
