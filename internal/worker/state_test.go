package worker

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/af-project/af/internal/taskdef"
)

func TestDefaultStateDir(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/tmp/af-worker-w1":  "/tmp/af-worker-w1.state",
		"/var/lib/af/scr/":   "/var/lib/af/scr.state",
		"rel/scratch":        "rel/scratch.state",
		"/srv/af/scratch/./": "/srv/af/scratch.state",
	} {
		if got := DefaultStateDir(in); got != want {
			t.Errorf("DefaultStateDir(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOpenRunStateRefuses(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	scratch := filepath.Join(root, "scratch")
	if err := os.Mkdir(scratch, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link.state")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "file.state")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dir, want string }{
		{scratch, "inside the scratch root"},
		{filepath.Join(scratch, "state"), "inside the scratch root"},
		{link, "not a directory (a symlink?)"},
		{file, "state dir"},
	} {
		if _, err := openRunState(tc.dir, scratch); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("openRunState(%s): %v, want an error saying %q", tc.dir, err, tc.want)
		}
	}
	// A loose existing dir is made private.
	loose := filepath.Join(root, "loose.state")
	if err := os.Mkdir(loose, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := openRunState(loose, scratch); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(loose); fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v, want 0700", fi.Mode().Perm())
	}
}

func TestRunStateRecordListForget(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	s, err := openRunState(filepath.Join(root, "s.state"), filepath.Join(root, "scratch"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	claims := []taskdef.Claim{
		{TaskID: "task-aaaaaaaa", RunID: 0, RunToken: "tok-a"},
		{TaskID: "task-bbbbbbbb", RunID: 3, RunToken: "tok-b"},
	}
	for _, c := range claims {
		if err := s.record(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.record(taskdef.Claim{TaskID: "../escape", RunID: 1}); err == nil {
		t.Error("a record named by an invalid task id was written")
	}
	// Leftovers of a kill mid-write and foreign or damaged entries are
	// dropped by list.
	for name, body := range map[string]string{
		".run-123.tmp":         "{",
		"junk.json":            "not json",
		"task-cccccccc-1.json": `{"taskId":"task-dddddddd","runId":1}`,
	} {
		if err := os.WriteFile(filepath.Join(s.dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(s.dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	recs, err := s.list(log)
	if err != nil {
		t.Fatal(err)
	}
	var got []taskdef.Claim
	for _, r := range recs {
		got = append(got, taskdef.Claim{TaskID: r.TaskID, RunID: r.RunID, RunToken: r.RunToken})
		if r.Claimed.IsZero() {
			t.Errorf("record %s has no claim time", r.TaskID)
		}
	}
	if !reflect.DeepEqual(got, claims) {
		t.Fatalf("list %+v, want %+v", got, claims)
	}
	entries, _ := os.ReadDir(s.dir)
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("state dir holds %v, want the two records", names)
	}
	for _, e := range entries {
		if fi, _ := e.Info(); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	if err := s.forget("task-aaaaaaaa", 0); err != nil {
		t.Fatal(err)
	}
	if err := s.forget("task-aaaaaaaa", 0); err != nil {
		t.Errorf("forgetting twice: %v", err)
	}
	if recs, _ := s.list(log); len(recs) != 1 || recs[0].TaskID != "task-bbbbbbbb" {
		t.Fatalf("after forget: %+v", recs)
	}
}
