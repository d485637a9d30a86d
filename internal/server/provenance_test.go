package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
)

// TestProvenanceRoutes: a graph's provenance is written by whoever may
// change the graph, once, and read by whoever may read the graph; a
// record for another graph than its path, or with ETags that do not match
// its inputs, is refused.
func TestProvenanceRoutes(t *testing.T) {
	t.Parallel()
	e := newUsersEnv(t, "")
	ctx := ctxT(t)
	alice, aliceTok := e.addUser(t, "alice@example.com", "submit", nil)
	bob, _ := e.addUser(t, "bob@example.com", "submit", nil)
	reader, _ := e.addUser(t, "lead@example.com", "read", nil)
	anon := queueclient.New(e.url, "")

	g := testGraph(2, e.clock.Now())
	g.Owner = "alice@example.com"
	for i := range g.Tasks {
		g.Tasks[i].Task.Metadata.Owner = g.Owner
	}
	if _, err := alice.CreateGraph(ctx, g); err != nil {
		t.Fatal(err)
	}
	p := taskdef.Provenance{
		GraphID: g.GraphID, MadeBy: "af submit", Image: taskdef.ImageRecord{Asked: "af/os-count", Ref: "sha256:" + strings.Repeat("c", 64), Source: "image-id"},
		Filter: json.RawMessage(`{"version":1}`), Rendered: json.RawMessage(`{"version":1}`), Bucket: "telemetry",
	}
	status := func(err error) int {
		var ae *queueclient.APIError
		if errors.As(err, &ae) {
			return ae.Status
		}
		if err != nil {
			t.Fatalf("not an API error: %v", err)
		}
		return 200
	}
	if got := status(bob.PutProvenance(ctx, p)); got != http.StatusForbidden {
		t.Errorf("bob writes alice's graph's record: %d, want 403", got)
	}
	// The input list is the graph's own: a record may not name another.
	bad := p
	bad.Inputs = []taskdef.InputFile{{Key: "secret/other-team.gz", Size: 1}}
	if err := alice.PutProvenance(ctx, bad); status(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "the record's input list is the graph's own") {
		t.Errorf("a record naming inputs: %v", err)
	}
	missing := p
	missing.GraphID = "no-such-graph"
	if got := status(alice.PutProvenance(ctx, missing)); got != http.StatusNotFound {
		t.Errorf("record of a graph that does not exist: %d, want 404", got)
	}
	// The path's graph, not the body's.
	body, _ := json.Marshal(missing)
	req, _ := http.NewRequest(http.MethodPut, e.url+"/api/v1/graphs/"+g.GraphID+"/provenance", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+aliceTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var msg bytes.Buffer
	_, _ = msg.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(msg.String(), "is not the graph of the path") {
		t.Errorf("a record under another graph's path: %d %s", resp.StatusCode, msg.String())
	}

	huge := p
	huge.JobSpec = strings.Repeat("x", maxProvenanceBody)
	if err := alice.PutProvenance(ctx, huge); status(err) != http.StatusRequestEntityTooLarge || !strings.Contains(err.Error(), "provenance record is larger than") {
		t.Errorf("a record over the cap: %v", err)
	}
	var ae *queueclient.APIError
	if _, err := alice.Provenance(ctx, g.GraphID); !errors.Is(err, queueclient.ErrNotFound) || !errors.As(err, &ae) || ae.Code != "NoProvenance" {
		t.Errorf("before it is written: %v, want a 404 NoProvenance", err)
	}
	if err := alice.PutProvenance(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := alice.PutProvenance(ctx, p); err != nil {
		t.Errorf("the same record again: %v", err)
	}
	other := p
	other.Env = map[string]string{"K": "V"}
	if got := status(alice.PutProvenance(ctx, other)); got != http.StatusConflict {
		t.Errorf("another record for the graph: %d, want 409", got)
	}

	for name, c := range map[string]*queueclient.Client{"alice": alice, "a read identity": reader} {
		got, err := c.Provenance(ctx, g.GraphID)
		// The inputs come from the graph's two mappers (one file each).
		if err != nil || got.GraphID != g.GraphID || got.Image != p.Image || len(got.Inputs) != 2 || got.ETags != nil || fmt.Sprint(got.Loads) != "[1 1]" || got.Env != nil {
			t.Errorf("%s reads the record: %+v %v", name, got, err)
		}
	}
	if _, err := bob.Provenance(ctx, g.GraphID); status(err) != http.StatusForbidden {
		t.Errorf("bob reads alice's graph's record: %v", err)
	}
	if _, err := anon.Provenance(ctx, g.GraphID); status(err) != http.StatusUnauthorized {
		t.Errorf("an anonymous caller reads the record: %v", err)
	}
}
