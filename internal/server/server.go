// Package server is `af serve`'s HTTP API: the queue's routes (graphs,
// tasks, the worker protocol), artifacts through presigned S3 URLs, the
// file index query and refresh routes, the worker pool's public key, the
// monitor page routes and Prometheus /metrics.
//
// # Identities and auth
//
// Requests carry "Authorization: Bearer <token>". A token is an identity:
// one of the config file's tokens (shared role tokens, named by their
// name:) or one of the users `af users add` made (internal/users, kept in
// queue.db). Each has a role: submit (create graphs and tasks, cancel,
// rerun, refresh the index), work (claim, reclaim, report, create
// artifacts), read (read every graph and /metrics) or admin (everything,
// and the identity routes /api/v1/users). Tokens are kept as SHA-256
// hashes, compared in constant time, and never logged; an expired or
// revoked one gets 401 saying so. The run-scoped worker routes (reclaim,
// the completed/failed/exception reports, artifact creation) also need
// the run's token, which the claim answer hands to the claiming worker
// alone, in the X-AF-Run-Token header.
//
// A graph's owner is the identity that created it; the owner field (af
// submit --owner) may name another only for an admin, or, for the config
// file's shared submit token, an owner that is no registered identity (so
// old scripts keep their free-text --owner). Cancel, rerun and adding a
// task to a graph (or a task depending on another graph's) need its owner
// or an admin: 403 saying who owns it, decided in the change's own
// transaction. Every change records who made it (queue.Actor).
//
// Reads are refused to anonymous callers unless public_reads: true. An
// identity reads its own graphs (and lists only those; the shared submit
// token those no registered identity owns), read and admin every graph,
// and a work identity a task's status and artifacts only for a running
// run it holds of that task or of one depending on it
// (taskdef.ReaderRunHeader with the run's token). The index, the pool key
// and the monitor pages need any identity; /metrics admin or read, unless
// metrics_public: true. The monitor's /signin turns a pasted token into a
// session cookie (HttpOnly, SameSite=Strict, Secure over TLS or an https
// monitor_url; a random id stored hashed, for session_ttl) that
// authenticates GET and HEAD only; POST /signout ends it. An owner's
// email links carry ?cap=, a read capability for that one graph (an
// HMAC-SHA256 of its id and expiry under a secret drawn on first start)
// that opens its page, status, logs and result until the graph expires.
//
// # Config file (YAML)
//
//	listen: 127.0.0.1:8080          # HTTP address
//	data: /var/lib/af               # queue.db and index.db live here
//	public_reads: false             # true: anyone reads every graph (default: each identity its own)
//	metrics_public: false           # true: anyone scrapes /metrics (default: admin and read)
//	session_ttl: 12h                # how long a monitor sign-in lasts
//	tokens:                         # shared identities: token or sha256 (hex of sha256 of the token)
//	  - {name: admin,  role: admin,  token: ...}
//	  - {name: submit, role: submit, token: ...}
//	  - {name: work,   role: work,   sha256: ...}
//	  - {name: dash,   role: read,   sha256: ...}
//	s3:                             # artifact bucket; credentials from the AWS env
//	  endpoint: http://127.0.0.1:9000
//	  public_endpoint: ""           # S3 URL presigned URLs use, if workers see another
//	  region: us-east-1
//	  bucket: af-artifacts          # empty disables artifacts
//	  prefix: ""
//	pool_key: /etc/af/af.pub        # `af keygen`'s public key, served at /api/v1/pool-key
//	smtp:                           # owners' emails, sent by this server from its outbox
//	  addr: ""                      # relay host:port; empty logs the emails
//	  from: af@localhost
//	  username: ""
//	  password_env: ""              # env var holding the password
//	  starttls: auto                # auto, always or never
//	  retry_min: 30s                # backoff after a failed attempt, doubling...
//	  retry_max: 1h                 # ...up to this, with jitter
//	  give_up_after: 168h           # then the email is marked failed
//	tls_cert: /etc/af/tls/cert.pem  # with tls_key: https only, TLS 1.2+ (or --tls-cert/--tls-key)
//	tls_key: /etc/af/tls/key.pem
//	monitor_url: https://af.example.org  # default http(s)://<listen>
//	schedules:                      # recurring analyses: af serve makes each run's graph
//	  credentials_mode: assume-role # how it mints a run's S3 credentials (its own AWS env)
//	  role_arn: ""                  # the role it assumes for them (AWS)
//	  deadline: 10h                 # each run's graph deadline
//	  max_backfill: 1000            # runs one af backfill may make
//	  docker_config: /etc/af/docker # registry credentials (its config.json) a run's image tag is resolved with (default $DOCKER_CONFIG or ~/.docker)
//	lease_duration: 5m              # claim lease
//	artifact_grace: 10m             # artifacts may be created this long after a run resolved
//	artifact_put_ttl: 15m           # life of a presigned upload URL (at most 168h)
//	max_graph_bytes: 67108864       # body cap of POST /api/v1/graphs (64 MiB); other routes: 64 KiB to 16 MiB
//	expire_every: 10m               # how often expired graphs are deleted (negative: never)
//	expire_batch: 500               # tasks deleted per transaction
//	expired_kept: 2160h             # how long an expired id answers 410 "expired"
//	fair_share: true                # false: within a priority, oldest task first (FIFO)
//	max_pending_per_owner: 20000    # an owner's tasks waiting to run at most; 0: no cap
//	max_running_per_owner: 0        # an owner's running tasks at most; 0: no cap
//	priority:
//	  high_owners: [alice@example.com]  # who may submit at priority high; absent: anyone
//
// With no --config, `af serve` writes <data>/config.yaml on first start
// with fresh admin, submit and work tokens.
//
// # TLS
//
// With tls_cert and tls_key (or af serve --tls-cert/--tls-key) the server
// serves https only, TLS 1.2 or later, and a plain-http request on its
// port gets a 400. LoadCertificate checks the files at start: a missing
// or unreadable file, one with no PEM block of its kind, the two
// swapped, or a key that is not the certificate's is an error naming the
// file and the fix; a certificate outside its validity or expiring within
// a week is only a warning (TLSWarnings), since it may be being renewed.
// While serving, a handshake looks at the files' size and modification
// time at most every CertCheckEvery (10 s) and takes up renewed files; a
// change that does not load keeps the last good certificate and is
// logged once, naming the file (TestCertificateReload). With TLS the
// default monitor_url is https://<listen>. Clients (queueclient) trust
// the system's CAs plus --ca/AF_CA_FILE, and send tokens over plain http
// only to loopback unless told --insecure-http.
//
// # Claim order and per-owner limits
//
// claimWork hands out the highest priority first (a graph's "priority":
// high, normal or low, `af submit --priority`; normal by default); within a
// priority the owner with the fewest running tasks, then the oldest task
// (fair_share: false: the oldest task whoever owns it). A graph's owner is
// the identity that created it (see Auth). priority.high_owners, when present, lists the owners
// who may ask for high: others get 403 Forbidden naming the key.
// max_pending_per_owner (default 20000; 0: no cap) caps an owner's tasks
// waiting to run (pending or unscheduled): a graph or task that would pass
// it gets 429 with code OverLimit naming the key (queueclient does not
// retry it); max_running_per_owner (default 0: no cap) leaves an owner's
// other tasks pending while it has that many running. /metrics has
// af_owner_tasks{owner,state} for unscheduled, pending and running tasks of
// the 20 owners with the most (the others summed as owner="(other)", so a
// token holder inventing owners cannot grow it) and the histogram
// af_claim_wait_seconds{priority} of how long claimed tasks were pending.
//
// # Artifacts
//
// Artifacts live in the artifact bucket under <prefix><taskId>/<runId>/<name>.
// The worker that claimed the run (a work token and the run's token) may
// create one (get a presigned PUT, valid for artifact_put_ttl, default
// 15 minutes) while the run is running, or up to artifact_grace after it resolved, so
// a worker can upload its final log after reporting. The PUT carries the
// task's expiry as the object's Expires header. Reading an artifact
// redirects (303) to a presigned GET.
//
// # Expiry
//
// Every expire_every (default 10m; 0 in a config means the default, a
// negative value turns expiry off) the server deletes the graphs whose
// every task is past its expires time, with their tasks, runs and
// artifacts (the objects under <prefix><taskId>/, deleted first), at most
// expire_batch (default 500) tasks per transaction. An expired graph or
// task id answers 410 Gone saying when it expired, for expired_kept
// (default 2160h, 90 days) after its expiry, then 404.
//
// # The file index
//
// bbolt locks its file, so only `af serve` opens <data>/index.db while it
// runs. `af index build` against a running server posts to
// /api/v1/index/build and the server refreshes the index from S3; without
// a server, `af index build --db FILE` works on the file directly.
package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/index"
	"github.com/af-project/af/internal/monitor"
	"github.com/af-project/af/internal/outbox"
	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/schedule"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/users"
)

// Deps are what the server works with; the caller opens and closes them.
type Deps struct {
	// Queue is the task queue (required).
	Queue *queue.Queue
	// IndexPath is the file index database, opened on first use of an
	// index route (default <data>/index.db).
	IndexPath string
	// S3 reaches the artifact bucket (nil disables artifacts).
	S3 *s3.Client
	// Presign signs artifact URLs; default s3.NewPresignClient(S3). Give
	// one built on s3.public_endpoint when clients see S3 elsewhere.
	Presign *s3.PresignClient
	// Lister lists the input bucket for index builds; default S3.
	Lister index.Lister
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Clock defaults to the system clock.
	Clock queue.Clock
	// Pages serves /graphs, /graphs/{id}, /schedules and /schedules/{name};
	// default the monitor pages (internal/monitor).
	Pages http.Handler
	// TickEvery is how often Serve expires leases and deadlines (default
	// 1 s).
	TickEvery time.Duration
	// OnSweep, when set, is told the outcome of every expiry sweep of
	// Serve's loop (tests wait on it instead of sleeping).
	OnSweep func(queue.SweepReport, error)
	// CertCheckEvery is how often, at most, a TLS handshake looks
	// whether tls_cert or tls_key changed (default
	// DefaultCertCheckEvery).
	CertCheckEvery time.Duration
	// Users keeps the identities, sessions and the capability secret;
	// default a store in the queue's own file (users.New(Queue.Bolt())).
	Users *users.Store
	// AWS is the server's own AWS configuration, with which it mints the
	// credentials of scheduled runs (nil: schedules cannot launch runs,
	// and each run says why).
	AWS *aws.Config
}

// Server is the HTTP API.
type Server struct {
	cfg     Config
	q       *queue.Queue
	s3      *s3.Client
	presign *s3.PresignClient
	log     *slog.Logger
	clock   queue.Clock
	tokens  tokenSet
	users   *users.Store
	metrics *metrics
	handler http.Handler
	tick    time.Duration
	pages   http.Handler

	indexPath string
	indexMu   sync.Mutex
	index     indexDB
	lister    index.Lister
	buildMu   sync.Mutex

	// sender delivers the outbox: every graph resolution's email.
	sender   *outbox.Sender
	mailDest string

	onSweep func(queue.SweepReport, error)

	// aws mints scheduled runs' credentials; schedules and scheduler keep
	// and make the recurring analyses (schedules.go).
	aws       *aws.Config
	schedules *schedule.Store
	scheduler *schedule.Scheduler
	// workers is what claimWork has seen of the workers (workers.go).
	workers *workerActivity

	// certs serves tls_cert/tls_key (nil: plain http); tlsWarnings
	// are what LoadCertificate warned about at start.
	certs       *certReloader
	tlsWarnings []string
}

// New builds the server. cfg must have been normalized (LoadConfig,
// EnsureConfig or Normalize).
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Queue == nil {
		return nil, errors.New("server: no queue")
	}
	if len(cfg.Tokens) == 0 {
		return nil, errors.New("server: config has no tokens (call Normalize)")
	}
	s := &Server{
		cfg:       cfg,
		q:         deps.Queue,
		s3:        deps.S3,
		presign:   deps.Presign,
		log:       deps.Logger,
		clock:     deps.Clock,
		tokens:    newTokenSet(cfg.Tokens),
		tick:      deps.TickEvery,
		pages:     deps.Pages,
		indexPath: deps.IndexPath,
		onSweep:   deps.OnSweep,
		aws:       deps.AWS,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = queue.SystemClock{}
	}
	s.workers = newWorkerActivity(s.clock.Now())
	s.users = deps.Users
	if s.users == nil {
		u, err := users.New(s.q.Bolt(), s.clock.Now)
		if err != nil {
			return nil, err
		}
		s.users = u
	}
	if s.tick <= 0 {
		s.tick = time.Second
	}
	if deps.Lister != nil {
		s.lister = deps.Lister
	} else if s.s3 != nil {
		s.lister = s.s3
	}
	if s.presign == nil && s.s3 != nil {
		s.presign = s3.NewPresignClient(s.s3)
	}
	if s.indexPath == "" {
		s.indexPath = filepath.Join(cfg.Data, "index.db")
	}
	if s.pages == nil {
		s.pages = monitor.Handler(monitor.Options{Logger: s.log.With("component", "monitor"), NoWorkerAfter: time.Duration(cfg.NoWorkerNotice)})
	}
	if cfg.TLS() {
		every := deps.CertCheckEvery
		if every <= 0 {
			every = DefaultCertCheckEvery
		}
		certs, warnings, err := newCertReloader(cfg.TLSCert, cfg.TLSKey, every, func() time.Time { return s.clock.Now() }, s.log.With("component", "tls"))
		if err != nil {
			return nil, err
		}
		s.certs, s.tlsWarnings = certs, warnings
		for _, w := range warnings {
			s.log.Warn(w)
		}
	}
	sender, dest, err := senderFor(cfg.SMTP, s)
	if err != nil {
		return nil, err
	}
	s.sender, s.mailDest = sender, dest
	if err := s.newScheduler(); err != nil {
		return nil, err
	}
	s.metrics = newMetrics(s.q, s.sender)
	s.handler = s.routes()
	return s, nil
}

// TLSWarnings are the certificate's problems that do not stop the server
// (expired, not yet valid, expiring within a week), for af serve to show.
func (s *Server) TLSWarnings() []string { return s.tlsWarnings }

// Handler returns the HTTP handler of every route.
func (s *Server) Handler() http.Handler { return s.handler }

// Registry returns the server's Prometheus registry (served at /metrics).
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// Run listens on the config's address and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another af serve running? choose another address with --listen)", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, running the queue's lease and
// deadline expiry alongside. On shutdown it stops accepting, ends
// long-polls at once (they answer "no work"), lets in-flight requests
// finish, and closes the index it opened. The queue stays open: the caller
// owns it.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	tickCtx, stopTick := context.WithCancel(ctx)
	tickDone := make(chan struct{})
	go func() {
		defer close(tickDone)
		s.tickLoop(tickCtx)
	}()
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		s.log.Info("owner emails from the outbox", "smtp", s.mailDest)
		s.sender.Run(tickCtx)
	}()
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		s.scheduler.Run(tickCtx)
	}()
	expireDone := make(chan struct{})
	go func() {
		defer close(expireDone)
		if s.cfg.ExpireEvery > 0 {
			s.expireLoop(tickCtx)
		}
	}()
	errc := make(chan error, 1)
	if s.certs != nil {
		// https only: a plain-http request on this port gets Go's 400
		// "Client sent an HTTP request to an HTTPS server".
		hs.TLSConfig, hs.Protocols = s.certs.tlsConfig(), httpProtocols()
		go func() { errc <- hs.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- hs.Serve(ln) }()
	}
	s.log.Info("serving", "addr", ln.Addr().String(), "tls", s.certs != nil)

	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		s.log.Info("shutting down")
		cancelBase()
		sctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
		err = hs.Shutdown(sctx)
		cancel()
		if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
			err = e
		}
	}
	stopTick()
	<-tickDone
	<-sendDone
	<-schedDone
	<-expireDone
	s.closeIndex()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// route registers a handler needing role need ("" for a read).
func (s *Server) route(mux *http.ServeMux, pattern string, need Role, h func(w http.ResponseWriter, r *http.Request) error) {
	limit := s.bodyLimit(pattern)
	mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, ok := s.authorize(w, r, need)
		if !ok {
			return
		}
		if !s.limitBody(w, r, pattern, limit) {
			return
		}
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}))
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	// Graphs and tasks.
	s.route(mux, "POST /api/v1/graphs", RoleSubmit, s.createGraph)
	s.route(mux, "GET /api/v1/graphs", accessRead, s.listGraphs)
	s.route(mux, "GET /api/v1/graphs/{id}", accessRead, s.getGraph)
	s.route(mux, "POST /api/v1/graphs/{id}/cancel", RoleSubmit, s.cancelGraph)
	s.route(mux, "POST /api/v1/graphs/{id}/rerun", RoleSubmit, s.rerunGraph)
	s.route(mux, "PUT /api/v1/graphs/{id}/provenance", RoleSubmit, s.putProvenance)
	s.route(mux, "GET /api/v1/graphs/{id}/provenance", accessRead, s.getProvenance)
	s.route(mux, "PUT /api/v1/tasks/{id}", RoleSubmit, s.createTask)
	s.route(mux, "GET /api/v1/tasks/{id}", accessRead, s.getTask)
	s.route(mux, "GET /api/v1/tasks/{id}/definition", accessRead, s.getTaskDefinition)
	s.route(mux, "POST /api/v1/tasks/{id}/rerun", RoleSubmit, s.rerunTask)
	// The worker protocol.
	s.route(mux, "POST /api/v1/claim-work", RoleWork, s.claimWork)
	s.route(mux, "POST /api/v1/tasks/{id}/runs/{run}/reclaim", RoleWork, s.reclaim)
	s.route(mux, "POST /api/v1/tasks/{id}/runs/{run}/completed", RoleWork, s.report(reportCompleted))
	s.route(mux, "POST /api/v1/tasks/{id}/runs/{run}/failed", RoleWork, s.report(reportFailed))
	s.route(mux, "POST /api/v1/tasks/{id}/runs/{run}/exception", RoleWork, s.report(reportException))
	// Artifacts.
	s.route(mux, "POST /api/v1/tasks/{id}/runs/{run}/artifacts/{name...}", RoleWork, s.createArtifact)
	s.route(mux, "GET /api/v1/tasks/{id}/runs/{run}/artifacts/{name...}", accessRead, s.getArtifact)
	s.route(mux, "GET /api/v1/tasks/{id}/runs/{run}/artifacts", accessRead, s.listArtifacts)
	s.route(mux, "GET /api/v1/tasks/{id}/artifacts/{name...}", accessRead, s.getLatestArtifact)
	// The file index.
	s.route(mux, "POST /api/v1/index/query", accessAuth, s.indexQuery)
	s.route(mux, "POST /api/v1/index/build", RoleSubmit, s.indexBuild)
	s.route(mux, "GET /api/v1/index/stats", accessAuth, s.indexStats)
	// Identities (admin).
	s.route(mux, "POST /api/v1/users", RoleAdmin, s.addUser)
	s.route(mux, "GET /api/v1/users", RoleAdmin, s.listUsers)
	s.route(mux, "POST /api/v1/users/{name}/rotate", RoleAdmin, s.rotateUser)
	s.route(mux, "POST /api/v1/users/{name}/revoke", RoleAdmin, s.revokeUser)
	// Everything else.
	s.route(mux, "GET /api/v1/pool-key", accessAuth, s.poolKey)
	s.scheduleRoutes(mux)
	// Liveness for load balancers and scripts: open whatever the read
	// policy, and it says nothing but "ok".
	mux.HandleFunc("GET /api/v1/ping", func(w http.ResponseWriter, r *http.Request) {
		_ = writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /metrics", s.guard(accessMetrics, s.metrics.handler()))
	mux.Handle("GET /graphs", s.pageGuard(s.pages))
	mux.Handle("GET /graphs/{$}", s.pageGuard(s.pages))
	mux.Handle("GET /graphs/{id}", s.pageGuard(s.pages))
	mux.Handle("GET /schedules", s.pageGuard(s.pages))
	mux.Handle("GET /schedules/{$}", s.pageGuard(s.pages))
	mux.Handle("GET /schedules/{name}", s.pageGuard(s.pages))
	mux.HandleFunc("GET /signin", s.signInPage)
	mux.Handle("POST /signin", http.MaxBytesHandler(http.HandlerFunc(s.signIn), maxSmallBody))
	mux.HandleFunc("POST /signout", s.signOut)
	mux.Handle("GET /{$}", http.RedirectHandler("/graphs", http.StatusFound))
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &httpError{status: http.StatusNotFound, code: "NotFound",
			msg: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)})
	}))
	return s.observe(mux)
}

// guard applies an access kind to a plain handler.
func (s *Server) guard(need Role, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r, ok := s.authorize(w, r, need); ok {
			h.ServeHTTP(w, r)
		}
	})
}

// decode reads a JSON body of at most limit bytes, refusing unknown
// fields so a misspelt field is an error rather than silently dropped.
func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyErr(r, err)
	}
	if dec.More() {
		return &httpError{status: http.StatusBadRequest, code: "InvalidRequest", msg: "request body: trailing data after the JSON value"}
	}
	return nil
}

// taskIn decodes a task definition telling an absent "retries" (the
// default, queue.DefaultRetries) from an explicit 0.
type taskIn struct {
	taskdef.Task
	Retries *int `json:"retries"`
}

func (t taskIn) definition() taskdef.Task {
	d := t.Task
	d.Retries = queue.DefaultRetries
	if t.Retries != nil {
		d.Retries = *t.Retries
	}
	return d
}

// createGraph streams the body into the queue's graph builder (see
// decodeGraph): the body is capped by route at max_graph_bytes, and the
// graph is held only as the queue's encoding while it is created.
func (s *Server) createGraph(w http.ResponseWriter, r *http.Request) error {
	b := s.q.NewGraphBuilder()
	id := who(r)
	if err := decodeGraph(r, b, func(given string) (string, error) { return s.ownerFor(id, given) }); err != nil {
		return err
	}
	st, err := b.Create(s.actor(r))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

func (s *Server) createTask(w http.ResponseWriter, r *http.Request) error {
	var in taskIn
	if err := decode(w, r, maxTaskBody, &in); err != nil {
		return err
	}
	def := in.definition()
	// A task that creates its graph names the owner in metadata.owner;
	// one added to an existing graph must be the graph owner's call,
	// which the queue asks in the transaction (Server.mayChange).
	owner, err := s.ownerFor(who(r), def.Metadata.Owner)
	if err != nil {
		return err
	}
	def.Metadata.Owner = owner
	st, err := s.q.CreateTask(s.actor(r), r.PathValue("id"), def)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

// Graph listing bounds.
const (
	defaultGraphList = 100
	maxGraphList     = 1000
)

// listGraphs is GET /api/v1/graphs: newest first, at most limit (default
// 100, at most 1000), filtered by owner (exact), name (contains, any
// case) and state (running, completed, failed, canceled; repeated or
// comma-separated: any of them), among the graphs the caller may read.
func (s *Server) listGraphs(w http.ResponseWriter, r *http.Request) error {
	limit, f, err := parseGraphQuery(r.URL.Query())
	if err != nil {
		return err
	}
	if f.Keep, err = s.listKeep(r); err != nil {
		return err
	}
	gs, err := s.q.ListGraphs(r.Context(), limit, f)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, taskdef.GraphList{Graphs: gs})
}

// parseGraphQuery reads GET /api/v1/graphs' query; a 400 names the bad
// parameter and what it takes.
func parseGraphQuery(v url.Values) (int, queue.GraphFilter, error) {
	var f queue.GraphFilter
	limit := defaultGraphList
	for k, vals := range v {
		switch k {
		case "limit", "owner", "name":
			if len(vals) > 1 {
				return 0, f, badRequest("query parameter %s is given %d times; give it once", k, len(vals))
			}
		case "state":
		default:
			return 0, f, badRequest("unknown query parameter %q: GET /api/v1/graphs takes limit, owner, name and state", k)
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return 0, f, badRequest("limit %q must be a positive integer", s)
		}
		limit = min(n, maxGraphList)
	}
	f.Owner, f.Name = v.Get("owner"), v.Get("name")
	for _, vals := range v["state"] {
		for st := range strings.SplitSeq(vals, ",") {
			switch gs := taskdef.GraphState(strings.TrimSpace(st)); gs {
			case taskdef.GraphRunning, taskdef.GraphCompleted, taskdef.GraphFailed, taskdef.GraphCanceled:
				f.States = append(f.States, gs)
			default:
				return 0, f, badRequest("state %q is not a graph state: want running, completed, failed or canceled (several: state=failed,canceled)", st)
			}
		}
	}
	return limit, f, nil
}

func (s *Server) getGraph(w http.ResponseWriter, r *http.Request) error {
	if err := s.canReadGraph(r, r.PathValue("id")); err != nil {
		return err
	}
	st, err := s.q.Graph(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	st.Schedule = s.graphSchedule(st.GraphID)
	if st.State == taskdef.GraphRunning {
		st.Workers = s.workers.wire(s.clock.Now())
	}
	return writeJSONTagged(w, r, st)
}

// writeJSONTagged answers with an ETag of the body and a bodiless 304 when
// the client already has it: the monitor page polls a graph of thousands
// of tasks (megabytes of JSON) every second or two, and most polls of a
// quiet or finished graph change nothing.
func writeJSONTagged(w http.ResponseWriter, r *http.Request, v any) error {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		return fmt.Errorf("encode answer: %w", err)
	}
	sum := sha256.Sum256(buf.Bytes())
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if match := r.Header.Get("If-None-Match"); match != "" && match == etag {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(buf.Bytes())
	return err
}

func (s *Server) cancelGraph(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	// The cancel's transaction writes the owner's email to the outbox.
	st, err := s.q.CancelGraph(s.actor(r), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request) error {
	if err := s.canReadTask(r, r.PathValue("id")); err != nil {
		return err
	}
	st, err := s.q.Task(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

func (s *Server) getTaskDefinition(w http.ResponseWriter, r *http.Request) error {
	if err := s.canReadTask(r, r.PathValue("id")); err != nil {
		return err
	}
	t, err := s.q.TaskDefinition(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, t)
}

func (s *Server) rerunTask(w http.ResponseWriter, r *http.Request) error {
	st, err := s.q.Rerun(s.actor(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

// rerunGraph is POST /api/v1/graphs/{id}/rerun?failed=true: every failed
// or exception task of the graph rerun in one transaction. The query names
// the selection so that a later selection (say, every task) is a new
// value rather than a changed meaning.
func (s *Server) rerunGraph(w http.ResponseWriter, r *http.Request) error {
	if v := r.URL.Query().Get("failed"); v != "true" {
		return badRequest("say which tasks to rerun: ?failed=true reruns every failed or exception task of the graph (got failed=%q); to rerun one task, POST /api/v1/tasks/{id}/rerun", v)
	}
	st, err := s.q.RerunFailed(s.actor(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

// maxClaimWait is the longest claim-work long-poll (TaskCluster's 20 s).
const maxClaimWait = 20 * time.Second

// parseWait reads claim-work's wait: a Go duration ("20s", "500ms") or
// plain seconds; default and ceiling maxClaimWait.
func parseWait(v string) (time.Duration, error) {
	if v == "" {
		return maxClaimWait, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, err2 := strconv.ParseFloat(v, 64)
		if err2 != nil || n < 0 {
			return 0, badRequest("wait %q must be a duration such as 20s or a number of seconds", v)
		}
		d = time.Duration(n * float64(time.Second))
	}
	return min(max(d, 0), maxClaimWait), nil
}

func (s *Server) claimWork(w http.ResponseWriter, r *http.Request) error {
	wait, err := parseWait(r.URL.Query().Get("wait"))
	if err != nil {
		return err
	}
	var req taskdef.ClaimRequest
	if err := decode(w, r, maxSmallBody, &req); err != nil {
		return err
	}
	s.metrics.inflight.Inc()
	claims, err := s.q.ClaimWaitRaw(s.actor(r), req, wait)
	s.metrics.inflight.Dec()
	if err != nil && len(claims) == 0 {
		// A long-poll ended by shutdown or a client that went away has
		// nothing to report: answer "no work" rather than an error.
		if r.Context().Err() == nil {
			return err
		}
		claims = nil
	}
	if len(claims) == 0 {
		setQuiet(w)
	}
	s.metrics.claims.Add(float64(len(claims)))
	s.workers.polled(req.WorkerGroup+"/"+req.WorkerID, s.clock.Now(), len(claims))
	buf := claimBufs.Get().(*[]byte)
	defer claimBufs.Put(buf)
	*buf = appendClaimResponse((*buf)[:0], claims)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(*buf)
	return err
}

var claimBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// appendClaimResponse encodes a taskdef.ClaimResponse with each task
// definition copied as the queue stored it (valid, compact JSON written by
// encoding/json at creation) instead of decoded and encoded again. Task ids
// are validated to [A-Za-z0-9_-], so they need no escaping; a test checks
// the result against encoding/json's.
func appendClaimResponse(b []byte, claims []taskdef.RawClaim) []byte {
	b = append(b, `{"tasks":[`...)
	for i, c := range claims {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"taskId":"`...)
		b = append(b, c.TaskID...)
		b = append(b, `","runId":`...)
		b = strconv.AppendInt(b, int64(c.RunID), 10)
		b = append(b, `,"takenUntil":"`...)
		b = c.TakenUntil.AppendFormat(b, time.RFC3339Nano)
		// Run tokens are unpadded base64url: nothing to escape.
		b = append(b, `","runToken":"`...)
		b = append(b, c.RunToken...)
		b = append(b, `","task":`...)
		b = append(b, c.Task...)
		b = append(b, '}')
	}
	return append(b, "]}\n"...)
}

// runParams reads {id} and {run}.
func runParams(r *http.Request) (string, int, error) {
	id := r.PathValue("id")
	run, err := strconv.Atoi(r.PathValue("run"))
	if err != nil || run < 0 {
		return "", 0, badRequest("run id %q must be a non-negative integer", r.PathValue("run"))
	}
	return id, run, nil
}

// runToken is the run token a run-scoped call carries.
func runToken(r *http.Request) string { return r.Header.Get(taskdef.RunTokenHeader) }

func (s *Server) reclaim(w http.ResponseWriter, r *http.Request) error {
	id, run, err := runParams(r)
	if err != nil {
		return err
	}
	var req taskdef.ReclaimRequest
	if err := decode(w, r, maxSmallBody, &req); err != nil {
		return err
	}
	resp, err := s.q.Reclaim(s.actor(r), id, run, runToken(r), req.Stats)
	if err != nil {
		return err
	}
	setQuiet(w)
	return writeJSON(w, http.StatusOK, resp)
}

type reportKind int

const (
	reportCompleted reportKind = iota
	reportFailed
	reportException
)

func (k reportKind) String() string {
	return [...]string{"completed", "failed", "exception"}[k]
}

func (s *Server) report(kind reportKind) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, run, err := runParams(r)
		if err != nil {
			return err
		}
		var req taskdef.ReportRequest
		if err := decode(w, r, maxSmallBody, &req); err != nil {
			return err
		}
		var resp taskdef.ReportResponse
		tok := runToken(r)
		ctx := s.actor(r)
		switch kind {
		case reportCompleted:
			resp, err = s.q.ReportCompleted(ctx, id, run, tok, req)
		case reportFailed:
			resp, err = s.q.ReportFailed(ctx, id, run, tok, req)
		default:
			if req.Reason == "" {
				return badRequest("an exception report needs a reason (worker-shutdown, malformed-payload, resource-unavailable, internal-error or intermittent-task)")
			}
			resp, err = s.q.ReportException(ctx, id, run, tok, req)
		}
		s.metrics.report(kind.String(), err)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, resp)
	}
}

func (s *Server) poolKey(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.PoolKey == "" {
		return &httpError{status: http.StatusNotFound, code: "NotFound",
			msg: "this server has no pool key: run `af keygen` and set pool_key in the server's config"}
	}
	text, err := readPoolKey(s.cfg.PoolKey)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, err = w.Write([]byte(text + "\n"))
	return err
}

// httpError is an error with its HTTP status and code.
type httpError struct {
	status int
	code   string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{status: http.StatusBadRequest, code: "InvalidRequest", msg: fmt.Sprintf(format, args...)}
}

// classify maps an error to its status and code.
func classify(err error) (int, string) {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return he.status, he.code
	case errors.Is(err, queue.ErrNotFound):
		return http.StatusNotFound, "NotFound"
	case errors.Is(err, queue.ErrExpired):
		return http.StatusGone, "Expired"
	case errors.Is(err, queue.ErrInvalid):
		return http.StatusBadRequest, "InvalidRequest"
	case errors.Is(err, queue.ErrNotRunOwner):
		return http.StatusForbidden, "NotRunOwner"
	case errors.Is(err, queue.ErrForbidden):
		return http.StatusForbidden, "Forbidden"
	case errors.Is(err, queue.ErrOverLimit):
		return http.StatusTooManyRequests, taskdef.CodeOverLimit
	case errors.Is(err, queue.ErrRunNotCurrent):
		return http.StatusConflict, "RunNotCurrent"
	case errors.Is(err, queue.ErrDeadlineExceeded):
		return http.StatusConflict, "DeadlineExceeded"
	case errors.Is(err, queue.ErrConflict):
		return http.StatusConflict, "Conflict"
	case errors.Is(err, queue.ErrClosed):
		return http.StatusServiceUnavailable, "ShuttingDown"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "Canceled"
	}
	return http.StatusInternalServerError, "InternalError"
}

// writeError answers a taskdef.ErrorResponse with the error's status.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	err = s.expiredErr(r, err)
	status, code := classify(err)
	if wroteHeader(w) {
		// The answer is already under way (a failed encode or a
		// streamed query): all that is left is to log it.
		s.log.Warn("response failed after it started", "method", r.Method, "path", r.URL.Path, "err", err)
		return
	}
	if status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	setErrorNote(w, err.Error())
	_ = writeJSON(w, status, taskdef.ErrorResponse{Code: code, Error: err.Error()})
}

// writeJSON encodes v as the answer.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// An encoding error after the header went out cannot change the
	// status any more; the truncated body tells the client.
	return json.NewEncoder(w).Encode(v)
}

// readPoolKey reads and checks the pool's public key file, so a wrong file
// (the private key, a truncated key) is refused here rather than by every
// submitter.
func readPoolKey(path string) (string, error) {
	k, err := creds.LoadPublicKey(path)
	if err != nil {
		return "", fmt.Errorf("pool key: %w", err)
	}
	return k.String(), nil
}
