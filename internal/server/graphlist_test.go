package server

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

// TestListGraphsFilters: GET /api/v1/graphs filters by owner (exact),
// name (contains, any case) and state (any of several), newest first,
// within the caller's read rule; a bad parameter is a 400 that names it.
func TestListGraphsFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)
	names := map[string]string{}
	// post creates a one-mapper graph and resolves it as end says
	// ("completed", "failed", "canceled" or "" to leave it running).
	post := func(owner, name, end string) string {
		t.Helper()
		e.clock.Advance(time.Minute) // the list is ordered by creation time
		g := testGraph(1, e.clock.Now())
		g.Owner, g.Name = owner, name
		for i := range g.Tasks {
			g.Tasks[i].Task.Metadata.Owner = owner
		}
		if _, err := e.admin.CreateGraph(ctx, g); err != nil {
			t.Fatal(err)
		}
		names[g.GraphID] = name
		switch end {
		case "canceled":
			if _, err := e.admin.CancelGraph(ctx, g.GraphID); err != nil {
				t.Fatal(err)
			}
		case "completed", "failed":
			for range 2 {
				cs, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 1}, 0)
				if err != nil || len(cs) != 1 {
					t.Fatalf("claim: %v %v", cs, err)
				}
				if end == "failed" {
					if _, err := e.work.Claimed(cs[0]).ReportFailed(ctx, taskdef.ReportRequest{Message: "exit 1"}); err != nil {
						t.Fatal(err)
					}
					break
				}
				if _, err := e.work.Claimed(cs[0]).ReportCompleted(ctx, taskdef.ReportRequest{}); err != nil {
					t.Fatal(err)
				}
			}
		}
		st, err := e.admin.Graph(ctx, g.GraphID)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]taskdef.GraphState{"": taskdef.GraphRunning, "completed": taskdef.GraphCompleted,
			"failed": taskdef.GraphFailed, "canceled": taskdef.GraphCanceled}[end]; st.State != want {
			t.Fatalf("graph %q is %s, want %s", name, st.State, want)
		}
		return g.GraphID
	}
	post("alice@example.org", "os-count daily", "completed")
	post("bob@example.org", "Crash Rate", "failed")
	post("alice@example.org", "OS-count weekly", "")
	post("bob@example.org", "os-count", "canceled")
	post("the-submitter", "my os-count", "")

	tests := []struct {
		name string
		q    taskdef.GraphListQuery
		want []string // graph names, newest first
	}{
		{"no filter", taskdef.GraphListQuery{}, []string{"my os-count", "os-count", "OS-count weekly", "Crash Rate", "os-count daily"}},
		{"owner", taskdef.GraphListQuery{Owner: "alice@example.org"}, []string{"OS-count weekly", "os-count daily"}},
		{"owner is exact", taskdef.GraphListQuery{Owner: "alice"}, nil},
		{"name contains, any case", taskdef.GraphListQuery{Name: "os-COUNT"}, []string{"my os-count", "os-count", "OS-count weekly", "os-count daily"}},
		{"one state", taskdef.GraphListQuery{States: []taskdef.GraphState{taskdef.GraphRunning}}, []string{"my os-count", "OS-count weekly"}},
		{"any of states", taskdef.GraphListQuery{States: []taskdef.GraphState{taskdef.GraphFailed, taskdef.GraphCanceled}}, []string{"os-count", "Crash Rate"}},
		{"completed", taskdef.GraphListQuery{States: []taskdef.GraphState{taskdef.GraphCompleted}}, []string{"os-count daily"}},
		{"all filters", taskdef.GraphListQuery{Owner: "bob@example.org", Name: "count", States: []taskdef.GraphState{taskdef.GraphCanceled}}, []string{"os-count"}},
		{"limit counts the kept ones", taskdef.GraphListQuery{Name: "os-count", Limit: 2}, []string{"my os-count", "os-count"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gs, err := e.reader.ListGraphs(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, g := range gs {
				got = append(got, names[g.GraphID])
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("listed %q, want %q", got, tc.want)
			}
		})
	}

	// The filters apply within the caller's read rule (listKeep).
	if gs, err := e.submit.ListGraphs(ctx, taskdef.GraphListQuery{Owner: "the-submitter"}); err != nil || len(gs) != 1 || names[gs[0].GraphID] != "my os-count" {
		t.Fatalf("the shared submit token asking for the-submitter's graphs: %+v %v", gs, err)
	}

	bad := []struct {
		query, want string
	}{
		{"state=done", `state "done" is not a graph state`},
		{"state=failed,bogus", `state "bogus"`},
		{"limit=0", `limit "0" must be a positive integer`},
		{"limit=ten", `limit "ten"`},
		{"owner=a&owner=b", "query parameter owner is given 2 times"},
		{"ownr=alice", `unknown query parameter "ownr"`},
	}
	for _, tc := range bad {
		t.Run("400 "+tc.query, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.http.URL+"/api/v1/graphs?"+tc.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+readTok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var er taskdef.ErrorResponse
			if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &er) != nil || !strings.Contains(er.Error, tc.want) {
				t.Fatalf("GET ?%s: %s %s, want 400 saying %q", tc.query, resp.Status, body, tc.want)
			}
		})
	}
}
