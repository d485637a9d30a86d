package monitor

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

// fakeAPI serves the slice of the queue API the pages read, from graphs the
// test changes while the page is open. The real `af serve` is covered by the
// end-to-end test; this fake lets the page tests control every state.
type fakeAPI struct {
	mu        sync.Mutex
	graphs    map[string]*taskdef.GraphStatus
	order     []string
	artifacts map[string]string // "<taskId>/<name>" → body
	// redirect, when set, answers artifact requests with a 303 to the URL
	// it returns, as `af serve` does with presigned S3 URLs.
	redirect  func(taskID, name string) (string, error)
	graphGets int
	notMod    int
	schedules map[string]taskdef.ScheduleRuns
	// runsCap is the cap= of the last schedule runs request.
	runsCap string
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{graphs: map[string]*taskdef.GraphStatus{}, artifacts: map[string]string{}, schedules: map[string]taskdef.ScheduleRuns{}}
}

// set stores a copy of g (the page must see changes only through the API).
func (f *fakeAPI) set(g taskdef.GraphStatus) {
	b, _ := json.Marshal(g)
	var c taskdef.GraphStatus
	_ = json.Unmarshal(b, &c)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.graphs[g.GraphID]; !ok {
		f.order = append([]string{g.GraphID}, f.order...)
	}
	f.graphs[g.GraphID] = &c
}

// setSchedule stores a schedule and its runs for the schedule routes.
func (f *fakeAPI) setSchedule(sr taskdef.ScheduleRuns) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.schedules[sr.Schedule.Name] = sr
}

func (f *fakeAPI) artifact(taskID, name, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.artifacts[taskID+"/"+name] = body
}

func (f *fakeAPI) setRedirect(fn func(taskID, name string) (string, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.redirect = fn
}

func (f *fakeAPI) gets() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.graphGets, f.notMod
}

func (f *fakeAPI) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/graphs/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.graphGets++
		g, ok := f.graphs[r.PathValue("id")]
		var body []byte
		if ok {
			// An extra field the page must never render: the real API
			// strips payloads, and the page shows only what it knows.
			body, _ = json.Marshal(struct {
				*taskdef.GraphStatus
				Payload map[string]any `json:"payload"`
			}{g, map[string]any{"env": map[string]string{"CREDENTIALS": "PLAINTEXT-SECRET-MUST-NOT-SHOW"}}})
		}
		f.mu.Unlock()
		if !ok && strings.HasPrefix(r.PathValue("id"), "Expired") {
			// What af serve answers for a graph it deleted at expiry.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusGone)
			fmt.Fprintf(w, `{"code":"Expired","error":"graph %s expired at 2026-03-01T12:00:00Z: af serve deleted its tasks, runs, logs and results"}`, r.PathValue("id"))
			return
		}
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"code":"NotFound","message":"graph %s not found"}`, r.PathValue("id"))
			return
		}
		sum := sha256.Sum256(body)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			f.mu.Lock()
			f.notMod++
			f.mu.Unlock()
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	mux.HandleFunc("GET /api/v1/graphs", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		var list taskdef.GraphList
		for _, id := range f.order {
			g := f.graphs[id]
			counts := map[taskdef.TaskState]int{}
			for _, t := range g.Tasks {
				counts[t.State]++
			}
			list.Graphs = append(list.Graphs, taskdef.GraphSummary{GraphID: g.GraphID, Name: g.Name, Owner: g.Owner, State: g.State,
				Created: g.Created, Resolved: g.Resolved, Tasks: len(g.Tasks), Counts: counts})
		}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(list)
	})
	mux.HandleFunc("GET /api/v1/schedules/{name}/runs", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		sr, ok := f.schedules[r.PathValue("name")]
		f.runsCap = r.URL.Query().Get("cap")
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"code":"NotFound","message":"no schedule %s"}`, r.PathValue("name"))
			return
		}
		_ = json.NewEncoder(w).Encode(sr)
	})
	mux.HandleFunc("GET /api/v1/schedules", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		var list taskdef.ScheduleList
		for _, sr := range f.schedules {
			list.Schedules = append(list.Schedules, sr.Schedule)
		}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(list)
	})
	mux.HandleFunc("GET /api/v1/tasks/{id}/artifacts/{name...}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		body, ok := f.artifacts[r.PathValue("id")+"/"+r.PathValue("name")]
		redirect := f.redirect
		f.mu.Unlock()
		if redirect != nil {
			u, err := redirect(r.PathValue("id"), r.PathValue("name"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			http.Redirect(w, r, u, http.StatusSeeOther)
			return
		}
		if !ok {
			http.Error(w, `{"message":"no such artifact"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(body))
	})
}

// startSite serves the monitor pages and the fake API on one origin, as
// `af serve` does.
func startSite(t *testing.T, opts Options) (*fakeAPI, *httptest.Server) {
	t.Helper()
	api := newFakeAPI()
	mux := http.NewServeMux()
	api.routes(mux)
	h := Handler(opts)
	mux.Handle("GET /graphs", h)
	mux.Handle("GET /graphs/{id}", h)
	mux.Handle("GET /schedules", h)
	mux.Handle("GET /schedules/{name}", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return api, srv
}

// graphBuilder makes plausible graphs: n mappers and a reducer, runs with
// times relative to base.
type graphBuilder struct {
	base time.Time
}

func (b graphBuilder) at(sec float64) *time.Time {
	t := b.base.Add(time.Duration(sec * float64(time.Second)))
	return &t
}

func (b graphBuilder) run(id int, state taskdef.TaskState, started, resolved float64, worker string, st taskdef.Stats) taskdef.Run {
	r := taskdef.Run{RunID: id, State: state, ReasonCreated: taskdef.ReasonScheduled, Scheduled: b.at(started - 1), Stats: st}
	if id > 0 {
		r.ReasonCreated = taskdef.ReasonRetry
	}
	if started >= 0 {
		r.Started = b.at(started)
		r.WorkerGroup, r.WorkerID = "pool", worker
	}
	if resolved >= 0 {
		r.Resolved = b.at(resolved)
		r.ReasonResolved = string(state)
	}
	return r
}

func mapperName(i int) string { return fmt.Sprintf("mapper %d", i) }

func taskID(prefix string, i int) string {
	return prefix + strings.Repeat("0", 10-len(fmt.Sprint(i))) + fmt.Sprint(i)
}
