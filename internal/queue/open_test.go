package queue

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/clocktest"
	"github.com/af-project/af/internal/taskdef"
	bolt "go.etcd.io/bbolt"
)

func fileState(t *testing.T, path string) (sum [32]byte, mod time.Time) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b), fi.ModTime()
}

func TestOpenRefusesForeignFiles(t *testing.T) {
	t.Parallel()
	// makeQueueFile writes a real queue file then edits its meta bucket.
	editedQueue := func(edit func(m *bolt.Bucket) error) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			q, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			q.Close()
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error { return edit(tx.Bucket(bMeta)) }); err != nil {
				t.Fatal(err)
			}
			db.Close()
		}
	}
	tests := []struct {
		name string
		make func(t *testing.T, path string)
		want string
	}{
		{"newer schema", editedQueue(func(m *bolt.Bucket) error { return m.Put(keySchema, []byte("3")) }), "schema version 3 is newer than this af supports (2)"},
		{"no schema version", editedQueue(func(m *bolt.Bucket) error { return m.Delete(keySchema) }), "no schema version"},
		{"garbled schema version", editedQueue(func(m *bolt.Bucket) error { return m.Put(keySchema, []byte("x")) }), "not a number"},
		{"another bbolt database", func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("files")); return err }); err != nil {
				t.Fatal(err)
			}
			db.Close()
		}, "not an af queue database"},
		{"not bbolt", func(t *testing.T, path string) {
			if err := os.WriteFile(path, bytes.Repeat([]byte("af queue? no.\n"), 5000), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "not an af queue database or damaged"},
		{"truncated", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "not an af queue database or damaged"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "queue.db")
			tc.make(t, path)
			sum, mod := fileState(t, path)
			q, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
			if err == nil {
				q.Close()
				t.Fatal("Open accepted the file")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q should name the file and say %q", err, tc.want)
			}
			if sum2, mod2 := fileState(t, path); sum2 != sum || !mod2.Equal(mod) {
				t.Errorf("refused file was modified")
			}
		})
	}
}

func TestOpenInUse(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	_, err = Open(path, Options{LockTimeout: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("second Open: %v", err)
	}
}

func TestOpenEmptyFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "queue.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	q, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open of an empty file: %v", err)
	}
	q.Close()
	q, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	q.Close()
}

// TestReopenKeepsEverything closes the queue in the middle of a graph and
// opens the file again, as after a restart: nothing is lost, the running
// run whose lease passed while the queue was down expires on the first
// Tick and retries, the completed task is not run again.
func TestReopenKeepsEverything(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "queue.db")
	clk := clocktest.New(t0)
	q, err := Open(path, Options{Clock: clk, LeaseDuration: testLease})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, q, mapReduce("graph-rope", 2, 5))
	done := claimOne(t, q)
	if _, err := q.ReportCompleted(bg, done.TaskID, done.RunID, done.RunToken, taskdef.ReportRequest{}); err != nil {
		t.Fatal(err)
	}
	lost := claimOne(t, q)
	before, _ := q.Graph(bg, "graph-rope")
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Task(bg, done.TaskID); err == nil {
		t.Errorf("read after Close succeeded")
	}
	if _, err := q.Claim(bg, worker); err == nil {
		t.Errorf("claim after Close succeeded")
	}

	clk.Advance(testLease + time.Second)
	q, err = Open(path, Options{Clock: clk, LeaseDuration: testLease})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	after, _ := q.Graph(bg, "graph-rope")
	if len(after.Tasks) != len(before.Tasks) {
		t.Fatalf("reopen: %d tasks, had %d", len(after.Tasks), len(before.Tasks))
	}
	for i := range after.Tasks {
		if !eqStrings(runSummary(after.Tasks[i]), runSummary(before.Tasks[i])) {
			t.Errorf("task %s: %v, had %v", after.Tasks[i].TaskID, runSummary(after.Tasks[i]), runSummary(before.Tasks[i]))
		}
	}
	rep, err := q.Tick(bg)
	if err != nil || rep.ClaimsExpired != 1 || rep.Retried != 1 {
		t.Fatalf("first tick after restart: %+v %v", rep, err)
	}
	again := claimOne(t, q)
	if again.TaskID != lost.TaskID || again.RunID != 1 {
		t.Fatalf("claimed %s run %d, want %s run 1", again.TaskID, again.RunID, lost.TaskID)
	}
	if _, err := q.ReportCompleted(bg, again.TaskID, again.RunID, again.RunToken, taskdef.ReportRequest{}); err != nil {
		t.Fatal(err)
	}
	red := claimOne(t, q)
	if r, err := q.ReportCompleted(bg, red.TaskID, red.RunID, red.RunToken, taskdef.ReportRequest{}); err != nil || !r.GraphResolved {
		t.Fatalf("reducer: %+v %v", r, err)
	}
	if s := mustTask(t, q, done.TaskID); len(s.Runs) != 1 {
		t.Errorf("completed task ran again: %v", runSummary(s))
	}
	checkConsistent(t, q)
}
