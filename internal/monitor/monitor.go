// Package monitor serves the monitor pages of `af serve`: /graphs lists
// recent graphs and /graphs/{id} shows one graph live (header, counts,
// progress, a virtualised task table, a Gantt chart of every run, links to
// logs and results, and the job's result when it completed); /schedules
// lists the recurring analyses and /schedules/{name} shows one: its
// settings, a grid of its runs by target (as Airflow's grid view), a chart
// of their durations and a table of runs.
//
// The pages are plain HTML, CSS and JavaScript embedded in the binary and
// inlined into each response, so they need no asset route and no external
// resource (a Content-Security-Policy enforces that). They read the queue's
// JSON API from the browser (GET /api/v1/graphs/{id}, GET /api/v1/graphs,
// GET /api/v1/schedules, GET /api/v1/schedules/{name}/runs)
// and poll it while the graph runs; the page itself holds no data, so it
// shows exactly what the API returns and nothing more (no payload, no
// environment, no credentials).
package monitor

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

//go:embed assets
var assets embed.FS

// Options configure the pages.
type Options struct {
	// APIBase is prepended to API paths the pages fetch ("" means the
	// same origin as the page, which is how `af serve` mounts them).
	APIBase string
	// PollInterval is how often a running graph's page refreshes; default
	// 1.5 s. The list page refreshes at four times this interval.
	PollInterval time.Duration
	// NoWorkerAfter is how long a running graph with pending tasks and
	// none running waits before its page says that no worker is claiming
	// (af serve's no_worker_notice); default 30 s, negative never.
	NoWorkerAfter time.Duration
	// ListLimit is how many recent graphs /graphs shows; default 100.
	ListLimit int
	// ResultPreviewBytes is how much of the job result the page shows
	// inline; default 64 KiB.
	ResultPreviewBytes int
	// Logger reports template failures; default discard.
	Logger *slog.Logger
}

type handler struct {
	opts  Options
	graph *template.Template
	list  *template.Template
	errT  *template.Template
	sign  *template.Template
	css   template.CSS
	gjs   template.JS
	ljs   template.JS
	sched *template.Template
	slist *template.Template
	sjs   template.JS
	sljs  template.JS
}

// Handler serves GET /graphs, GET /graphs/{id}, GET /schedules and GET
// /schedules/{name}.
func Handler(opts Options) http.Handler {
	if opts.NoWorkerAfter == 0 {
		opts.NoWorkerAfter = 30 * time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 1500 * time.Millisecond
	}
	if opts.ListLimit <= 0 {
		opts.ListLimit = 100
	}
	if opts.ResultPreviewBytes <= 0 {
		opts.ResultPreviewBytes = 64 << 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.APIBase = strings.TrimSuffix(opts.APIBase, "/")
	h := &handler{
		opts:  opts,
		graph: template.Must(template.New("").ParseFS(assets, "assets/layout.html", "assets/graph.html")),
		list:  template.Must(template.New("").ParseFS(assets, "assets/layout.html", "assets/list.html")),
		errT:  template.Must(template.New("").ParseFS(assets, "assets/layout.html", "assets/error.html")),
		sign:  template.Must(template.New("").ParseFS(assets, "assets/layout.html", "assets/signin.html")),
		css:   template.CSS(mustRead("assets/style.css")),
		gjs:   template.JS(mustRead("assets/common.js") + mustRead("assets/graph.js")),
		ljs:   template.JS(mustRead("assets/common.js") + mustRead("assets/list.js")),
		sched: template.Must(template.New("").ParseFS(assets, "assets/layout.html", "assets/schedule.html")),
		slist: template.Must(template.New("").ParseFS(assets, "assets/layout.html", "assets/schedules.html")),
		sjs:   template.JS(mustRead("assets/common.js") + mustRead("assets/schedule.js")),
		sljs:  template.JS(mustRead("assets/common.js") + mustRead("assets/schedules.js")),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /graphs", h.serveList)
	mux.HandleFunc("GET /graphs/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/graphs", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /graphs/{id}", h.serveGraph)
	mux.HandleFunc("GET /schedules", h.serveSchedules)
	mux.HandleFunc("GET /schedules/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/schedules", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /schedules/{name}", h.serveSchedule)
	return &routes{mux: mux, h: h}
}

// routes is the pages' handler, keeping its renderer for SignIn.
type routes struct {
	mux *http.ServeMux
	h   *handler
}

func (rt *routes) ServeHTTP(w http.ResponseWriter, r *http.Request) { rt.mux.ServeHTTP(w, r) }

func mustRead(name string) string {
	b, err := assets.ReadFile(name)
	if err != nil {
		panic(fmt.Sprintf("monitor: embedded asset %s: %v", name, err))
	}
	return string(b)
}

// page is what the templates see.
type page struct {
	Title   string
	Nonce   string
	CSS     template.CSS
	JS      template.JS
	APIBase string
	PollMS  int64
	// NoWorkerMS is Options.NoWorkerAfter (negative: never).
	NoWorkerMS int64
	GraphID    string
	// Schedule is the name /schedules/{name} shows.
	Schedule string
	Limit    int
	Preview  int
	Message  string
	// Next is where the sign-in form returns to.
	Next string
	// SignOut shows the sign-out button (a session is open).
	SignOut bool
}

func (h *handler) base(title string) page {
	return page{
		Title:      title,
		Nonce:      nonce(),
		CSS:        h.css,
		APIBase:    h.opts.APIBase,
		PollMS:     h.opts.PollInterval.Milliseconds(),
		NoWorkerMS: h.opts.NoWorkerAfter.Milliseconds(),
		Limit:      h.opts.ListLimit,
		Preview:    h.opts.ResultPreviewBytes,
	}
}

// SessionHeader is set by the server on a page request made with a
// monitor session, so the page shows its sign-out button.
const SessionHeader = "X-Af-Session"

func (h *handler) serveList(w http.ResponseWriter, r *http.Request) {
	p := h.base("Graphs · af")
	p.SignOut = r.Header.Get(SessionHeader) != ""
	p.JS = h.ljs
	h.render(w, http.StatusOK, h.list, p)
}

func (h *handler) serveGraph(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := taskdef.ValidID(id); err != nil {
		p := h.base("Not found · af")
		p.Message = fmt.Sprintf("There is no graph %q: graph ids are 8 to 64 characters of letters, digits, '_' and '-'. Pick one from the list of recent graphs.", id)
		h.render(w, http.StatusNotFound, h.errT, p)
		return
	}
	p := h.base("Graph " + id + " · af")
	p.SignOut = r.Header.Get(SessionHeader) != ""
	p.GraphID = id
	p.JS = h.gjs
	h.render(w, http.StatusOK, h.graph, p)
}

// scheduleName is what internal/schedule accepts as a schedule's name.
var scheduleName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

func (h *handler) serveSchedules(w http.ResponseWriter, r *http.Request) {
	p := h.base("Schedules · af")
	p.SignOut = r.Header.Get(SessionHeader) != ""
	p.JS = h.sljs
	h.render(w, http.StatusOK, h.slist, p)
}

func (h *handler) serveSchedule(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !scheduleName.MatchString(name) {
		p := h.base("Not found · af")
		p.Message = fmt.Sprintf("There is no schedule %q: schedule names are 1 to 63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit. Pick one from the list of schedules.", name)
		h.render(w, http.StatusNotFound, h.errT, p)
		return
	}
	p := h.base("Schedule " + name + " · af")
	p.SignOut = r.Header.Get(SessionHeader) != ""
	p.Schedule = name
	p.JS = h.sjs
	h.render(w, http.StatusOK, h.sched, p)
}

// SignIn writes the sign-in page: a form posting a token to /signin that
// returns to next (a local path), with message (why sign-in is needed) if
// any.
func SignIn(w http.ResponseWriter, status int, next, message string) {
	signIn.render(w, status, signIn.sign, page{Title: "Sign in · af", Nonce: nonce(), CSS: signIn.css, Next: next, Message: message})
}

var signIn = Handler(Options{}).(*routes).h

func (h *handler) render(w http.ResponseWriter, status int, t *template.Template, p page) {
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "page", p); err != nil {
		h.opts.Logger.Error("monitor: render page", "err", err)
		http.Error(w, "monitor page failed to render", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	// Everything the page needs is inline: no script but ours runs, and
	// nothing is loaded from elsewhere. connect-src allows http(s) because
	// artifact links redirect to presigned S3 URLs on another origin.
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+p.Nonce+"'; style-src 'unsafe-inline'; img-src data:; connect-src 'self' http: https:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func nonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:]) // no "+" or "/" to escape in HTML
}
