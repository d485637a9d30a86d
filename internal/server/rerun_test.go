package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
)

// runAll claims and completes every claimable task until none is left,
// returning the ids completed in order.
func (e *env) runAll(t *testing.T) []string {
	t.Helper()
	ctx := ctxT(t)
	var done []string
	for {
		cs, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "grp", WorkerID: "w1", Tasks: 10}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			return done
		}
		for _, c := range cs {
			if _, err := e.work.Claimed(c).ReportCompleted(ctx, taskdef.ReportRequest{}); err != nil {
				t.Fatal(err)
			}
			done = append(done, c.TaskID)
		}
	}
}

// TestRerunRoutes: POST /api/v1/tasks/{id}/rerun says what became of the
// reducer; a canceled graph's task is refused with 409 and a message;
// POST /api/v1/graphs/{id}/rerun?failed=true re-opens the graph.
func TestRerunRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)
	g := testGraph(2, e.clock.Now())
	m0, red := g.Tasks[0].TaskID, g.Tasks[2].TaskID
	if _, err := e.submit.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	e.runAll(t)
	if gs, _ := e.reader.Graph(ctx, g.GraphID); gs.State != taskdef.GraphCompleted {
		t.Fatalf("graph %s", gs.State)
	}

	// After the reducer completed: it runs again.
	r, err := e.submit.Rerun(ctx, m0)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != taskdef.StatePending || len(r.Dependents) != 1 || r.Dependents[0].TaskID != red ||
		r.Dependents[0].Effect != taskdef.RerunRunsAgain || r.Dependents[0].To != taskdef.StateUnscheduled {
		t.Fatalf("rerun answer %+v", r)
	}
	// The answer still decodes as a plain task status (older clients).
	var plain taskdef.TaskStatus
	if b, err := json.Marshal(r); err != nil || json.Unmarshal(b, &plain) != nil || plain.TaskID != m0 || plain.State != taskdef.StatePending {
		t.Errorf("rerun answer as a TaskStatus: %+v %v", plain, err)
	}
	resp, err := http.Post(e.http.URL+"/api/v1/tasks/"+red+"/rerun", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous rerun: %s, want 401", resp.Status)
	}
	if done := e.runAll(t); len(done) != 2 || done[0] != m0 || done[1] != red {
		t.Fatalf("ran %v, want the mapper then the reducer", done)
	}

	// Cancel: the graph is canceled and its tasks cannot be rerun singly.
	g2 := testGraph(2, e.clock.Now())
	if _, err := e.submit.CreateGraph(ctx, g2); err != nil {
		t.Fatal(err)
	}
	st, err := e.submit.CancelGraph(ctx, g2.GraphID)
	if err != nil || st.State != taskdef.GraphCanceled {
		t.Fatalf("cancel: %s %v", st.State, err)
	}
	_, err = e.submit.Rerun(ctx, g2.Tasks[0].TaskID)
	var ae *queueclient.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, "canceled") || !strings.Contains(ae.Message, "--failed") {
		t.Fatalf("rerun of a canceled graph's task: %v, want 409 saying the graph was canceled", err)
	}

	// The graph route needs ?failed=true and the submit role.
	for _, tc := range []struct {
		name   string
		client *queueclient.Client
		path   string
		status int
	}{
		{"no selection", e.submit, "/api/v1/graphs/" + g2.GraphID + "/rerun", http.StatusBadRequest},
		{"work role", e.work, "/api/v1/graphs/" + g2.GraphID + "/rerun?failed=true", http.StatusForbidden},
		{"unknown graph", e.submit, "/api/v1/graphs/nosuchgraph/rerun?failed=true", http.StatusNotFound},
		{"completed graph", e.submit, "/api/v1/graphs/" + g.GraphID + "/rerun?failed=true", http.StatusConflict},
	} {
		req, _ := http.NewRequest(http.MethodPost, e.http.URL+tc.path, nil)
		tok := submitTok
		if tc.client == e.work {
			tok = workTok
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %s, want %d", tc.name, resp.Status, tc.status)
		}
	}

	gr, err := e.submit.RerunFailed(ctx, g2.GraphID)
	if err != nil {
		t.Fatal(err)
	}
	if gr.Graph.State != taskdef.GraphRunning || len(gr.Rerun) != 3 {
		t.Fatalf("rerun --failed: %s %+v", gr.Graph.State, gr.Rerun)
	}
	if done := e.runAll(t); len(done) != 3 || done[2] != g2.Tasks[2].TaskID {
		t.Fatalf("ran %v after --failed, want both mappers then the reducer", done)
	}
	if gs, _ := e.reader.Graph(ctx, g2.GraphID); gs.State != taskdef.GraphCompleted {
		t.Errorf("graph %s after --failed ran", gs.State)
	}
}
