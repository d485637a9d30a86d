package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/clocktest"
	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/server"
	"github.com/af-project/af/internal/taskdef"
)

// TestCommandsSayExpired: `af status`, `af result` and `af logs` of a graph
// and task that af serve deleted at expiry say "expired", not "not found".
func TestCommandsSayExpired(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := clocktest.New(start)
	dir := t.TempDir()
	q, err := queue.Open(filepath.Join(dir, "queue.db"), queue.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	adminTok := server.NewToken()
	cfg := server.Config{Data: dir, Tokens: []server.Token{{Name: "admin", Role: server.RoleAdmin, Token: adminTok}}}
	if err := cfg.Normalize("test"); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, server.Deps{Queue: q, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	ctx := context.Background()
	gid, tid := taskdef.NewID(), taskdef.NewID()
	task := taskdef.Task{
		GraphID: gid, Created: start, Deadline: start.Add(time.Hour), Expires: start.Add(2 * time.Hour),
		Metadata: taskdef.Metadata{Name: "reducer", Owner: "owner@example.org"},
		Payload:  taskdef.Payload{Kind: taskdef.KindReducer, Image: "af/os-count", MaxRunTime: 60},
	}
	if _, err := q.CreateGraph(ctx, taskdef.Graph{GraphID: gid, Name: "job", Owner: "owner@example.org", Tasks: []taskdef.GraphTask{{TaskID: tid, Task: task}}}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(3 * time.Hour)
	if _, err := q.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	if rep, err := srv.SweepExpired(ctx); err != nil || rep.Graphs != 1 {
		t.Fatalf("sweep %+v %v", rep, err)
	}
	for _, args := range [][]string{{"status", gid}, {"result", gid}, {"logs", tid}} {
		var stdout, stderr bytes.Buffer
		code := run(append(args, "--queue", hs.URL, "--token", adminTok), &stdout, &stderr)
		// An expired id is one the queue no longer knows: a usage error.
		if code != 2 || !strings.Contains(stderr.String(), "expired at "+start.Add(2*time.Hour).Format(time.RFC3339)) || !strings.Contains(stderr.String(), "410") {
			t.Errorf("af %s: exit %d, stderr %q; want the expiry", strings.Join(args, " "), code, stderr.String())
		}
	}
}
