package server

import (
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/testbin"
)

// TestUpgradeFromOldDataDir starts today's `af serve --data DIR` on a data
// dir made by af at commit 37f7396, before identities
// (testdata/make-upgrade-fixture.sh regenerates it), with no edit to its
// config: the old admin, submit and work tokens still work as the named
// identities admin, submit and work; the old graph reads back with its
// owner (and no audit trail, which it predates); the shared submit token
// still changes it; and the old admin token adds new identities, whose
// graphs the shared submit token cannot touch.
func TestUpgradeFromOldDataDir(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	fix := filepath.Join("testdata", "upgrade-37f7396")
	cfgText, err := os.ReadFile(filepath.Join(fix, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "config.yaml"), cfgText, 0o600); err != nil {
		t.Fatal(err)
	}
	gz, err := os.Open(filepath.Join(fix, "queue.db.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer gz.Close()
	zr, err := gzip.NewReader(gz)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.OpenFile(filepath.Join(data, "queue.db"), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(db, zr); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	old, err := LoadConfig(filepath.Join(data, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	toks := map[Role]string{}
	for _, tk := range old.Tokens {
		toks[tk.Role] = tk.Token
	}

	bin := buildAF(t, data)
	addr := freePort(t)
	url := "http://" + addr
	logs := &testbin.SyncBuffer{}
	cmd := exec.Command(bin, "serve", "--data", data, "--listen", addr, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=none", "AWS_SECRET_ACCESS_KEY=none", "AWS_ENDPOINT_URL=http://127.0.0.1:1", "AWS_EC2_METADATA_DISABLED=true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	ctx := ctxT(t)
	for {
		resp, err := http.Get(url + "/api/v1/ping")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case <-done:
			t.Fatalf("af serve exited:\n%s", logs.String())
		case <-ctx.Done():
			t.Fatalf("af serve never answered:\n%s", logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}

	const graphID, owner = "legacyGraph0000001", "legacy@example.org"
	submit := queueclient.New(url, toks[RoleSubmit])
	gs, err := submit.Graph(ctx, graphID)
	if err != nil {
		t.Fatalf("the old graph with the old submit token: %v", err)
	}
	if gs.Owner != owner || len(gs.Tasks) != 1 || gs.Tasks[0].Name != "mapper-0000" || gs.CreatedBy != "" {
		t.Fatalf("the old graph: %+v", gs)
	}
	admin := queueclient.New(url, toks[RoleAdmin])
	us, err := admin.Users(ctx)
	if err != nil {
		t.Fatalf("old admin token: %v", err)
	}
	names := map[string]string{}
	for _, u := range us {
		names[u.Name] = u.Role + "/" + u.Source
	}
	if names["admin"] != "admin/config" || names["submit"] != "submit/config" || names["work"] != "work/config" {
		t.Fatalf("identities after the upgrade: %v", names)
	}
	work := queueclient.New(url, toks[RoleWork])
	cs, err := work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 1}, 0)
	if err != nil {
		t.Fatalf("old work token: %v", err)
	}
	if len(cs) == 1 {
		// The fixture's deadline may have passed (then the tick ended
		// it); when it is still open the claim names the work identity.
		if _, err := work.Claimed(cs[0]).ReportCompleted(ctx, taskdef.ReportRequest{}); err != nil {
			t.Fatal(err)
		}
		if st, err := submit.Task(ctx, cs[0].TaskID); err != nil || st.Runs[len(st.Runs)-1].ClaimedBy != "work" {
			t.Fatalf("claim after the upgrade: %+v %v", st, err)
		}
	}
	// The shared submit token keeps what it could do to graphs no
	// registered identity owns.
	if _, err := submit.CancelGraph(ctx, graphID); err != nil {
		t.Fatalf("old submit token cancels the old graph: %v", err)
	}

	// New identities on the old data dir.
	out, err := admin.AddUser(ctx, taskdef.UserRequest{Name: "dana@example.com", Role: "submit"})
	if err != nil {
		t.Fatal(err)
	}
	dana := queueclient.New(url, out.Token)
	g := unowned(1, time.Now())
	if st, err := dana.CreateGraph(ctx, g); err != nil || st.Owner != "dana@example.com" {
		t.Fatalf("dana's graph: %+v %v", st, err)
	}
	if _, err := submit.CancelGraph(ctx, g.GraphID); !errors.Is(err, queueclient.ErrForbidden) || !strings.Contains(err.Error(), "owned by dana@example.com") {
		t.Fatalf("the shared submit token on dana's graph: %v, want 403", err)
	}
	spoof := unowned(1, time.Now())
	spoof.Owner = "dana@example.com"
	if _, err := submit.CreateGraph(ctx, spoof); !errors.Is(err, queueclient.ErrForbidden) {
		t.Fatalf("the shared submit token posing as dana: %v, want 403", err)
	}
	// Old scripts' free-text --owner still works for the shared token.
	legacy := unowned(1, time.Now())
	legacy.Owner = "someone@example.org"
	if st, err := submit.CreateGraph(ctx, legacy); err != nil || st.Owner != "someone@example.org" || st.CreatedBy != "submit" {
		t.Fatalf("a legacy --owner: %+v %v", st, err)
	}
}
