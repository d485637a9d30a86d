package queue

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/af-project/af/internal/taskdef"
	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the layout of the buckets below. Open refuses a file with
// a newer version and migrates an older one: version 1 had one pending
// index in claim order (be64(scheduled) | taskID); version 2 keys it by
// priority and owner and counts each owner's tasks (fair.go).
const SchemaVersion = 2

// Buckets. Index buckets hold empty values: their keys are the index.
var (
	bMeta      = []byte("meta")       // "schema" -> decimal version
	bDefs      = []byte("defs")       // taskID -> taskdef.Task JSON (immutable)
	bTasks     = []byte("tasks")      // taskID -> taskRec JSON (mutable state)
	bPendingV1 = []byte("pending")    // schema 1: be64(scheduled) taskID -> "" (claim order)
	bPendq     = []byte("pendingq")   // rank(priority) uvarint(len) owner be64(scheduled) taskID -> "" (fair.go)
	bOwners    = []byte("owners")     // state 0 owner -> be64 count of the owner's tasks in that state (unresolved states)
	bRunning   = []byte("running")    // be64(takenUntil) taskID -> "" (lease expiry)
	bDeadlines = []byte("deadlines")  // be64(deadline) taskID -> ""   (unresolved tasks; resolved ones until Tick passes their deadline)
	bDeps      = []byte("dependents") // depID 0 dependentID -> {0 unsatisfied | 1 satisfied}
	bGraphs    = []byte("graphs")     // graphID -> graphRec JSON
	bGraphTask = []byte("graphtasks") // graphID 0 taskID -> ""
	bGraphTime = []byte("graphtime")  // be64(created) graphID -> "" (newest-first listing)
	bCounts    = []byte("counts")     // TaskState -> be64 count of tasks in that state
	allBuckets = [][]byte{bMeta, bDefs, bTasks, bPendq, bOwners, bRunning, bDeadlines, bDeps, bGraphs, bGraphTask, bGraphTime, bCounts}
	// v1Buckets are schema 1's.
	v1Buckets = [][]byte{bMeta, bDefs, bTasks, bPendingV1, bRunning, bDeadlines, bDeps, bGraphs, bGraphTask, bGraphTime, bCounts}
	keySchema = []byte("schema")
)

func schemaVersion(m *bolt.Bucket) (int, error) {
	v := m.Get(keySchema)
	if v == nil {
		return 0, fmt.Errorf("meta bucket has no schema version; the file is damaged")
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		return 0, fmt.Errorf("schema version %q is not a number; the file is damaged", v)
	}
	return n, nil
}

// initSchema creates the buckets of a fresh file; on an existing file it
// only re-checks the version (checkExisting already refused a bad file
// before this read-write open, this guards the race with another writer).
func initSchema(tx *bolt.Tx) error {
	if m := tx.Bucket(bMeta); m != nil {
		v, err := schemaVersion(m)
		if err != nil {
			return err
		}
		if v > SchemaVersion {
			return fmt.Errorf("schema version %d is newer than this af supports (%d)", v, SchemaVersion)
		}
		want := allBuckets
		if v < 2 {
			want = v1Buckets
		}
		for _, b := range want {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("bucket %q is missing; the file is damaged", b)
			}
		}
		for _, b := range addedBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		if v < 2 {
			if err := migratePending(tx); err != nil {
				return err
			}
			return m.Put(keySchema, []byte(strconv.Itoa(SchemaVersion)))
		}
		return nil
	}
	nonEmpty := false
	_ = tx.ForEach(func([]byte, *bolt.Bucket) error { nonEmpty = true; return nil })
	if nonEmpty {
		return fmt.Errorf("not an af queue database (no %q bucket)", bMeta)
	}
	for _, b := range append(append([][]byte(nil), allBuckets...), addedBuckets...) {
		if _, err := tx.CreateBucket(b); err != nil {
			return fmt.Errorf("create bucket %s: %w", b, err)
		}
	}
	return tx.Bucket(bMeta).Put(keySchema, []byte(strconv.Itoa(SchemaVersion)))
}

// taskRec is a task's mutable state. The definition lives apart in bDefs so
// that the frequent state writes stay small; the few definition fields a
// status needs are copied here.
type taskRec struct {
	State       taskdef.TaskState `json:"s"`
	RetriesLeft int               `json:"rl"`
	// Waiting counts dependencies not yet satisfied while unscheduled.
	Waiting  int              `json:"w,omitempty"`
	Runs     []taskdef.Run    `json:"runs,omitempty"`
	GraphID  string           `json:"g"`
	Retries  int              `json:"r"`
	Requires taskdef.Requires `json:"rq,omitempty"`
	Deadline time.Time        `json:"d"`
	Expires  time.Time        `json:"e"`
	Name     string           `json:"n"`
	Kind     taskdef.Kind     `json:"k"`
	Files    int              `json:"f,omitempty"`
	Bytes    int64            `json:"b,omitempty"`
	NumDeps  int              `json:"nd,omitempty"`
	// CreatedBy is the identity that created the task.
	CreatedBy string `json:"cb,omitempty"`
	// Priority is the task's effective claim priority ("" is normal): its
	// own, or its graph's.
	Priority taskdef.Priority `json:"p,omitempty"`
}

// current is the last run, or nil before the first.
func (t *taskRec) current() *taskdef.Run {
	if len(t.Runs) == 0 {
		return nil
	}
	return &t.Runs[len(t.Runs)-1]
}

// graphRec is a graph's summary, updated by every transition of its tasks.
type graphRec struct {
	Name         string                    `json:"n"`
	Owner        string                    `json:"o"`
	Created      time.Time                 `json:"c"`
	Resolved     *time.Time                `json:"rv,omitempty"`
	State        taskdef.GraphState        `json:"s"`
	Tasks        int                       `json:"t"`
	Unresolved   int                       `json:"u"`
	Counts       map[taskdef.TaskState]int `json:"cn"`
	ResultTaskID string                    `json:"res,omitempty"`
	// ResolvedBy and ResolvedRun name the report whose transaction resolved
	// the graph, so a retried report from the same run still learns that it
	// ended the graph (and the owner is emailed once).
	ResolvedBy  string `json:"rb,omitempty"`
	ResolvedRun int    `json:"rr,omitempty"`
	// CreatedBy and CanceledBy are the audit trail's identities: who
	// created the graph, and whose cancel last ended it.
	CreatedBy  string `json:"cb,omitempty"`
	CanceledBy string `json:"xb,omitempty"`
	// Priority is the graph's ("" is normal).
	Priority taskdef.Priority `json:"p,omitempty"`
}

func timeKey(t time.Time, id string) []byte {
	k := make([]byte, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(t.UnixNano()))
	copy(k[8:], id)
	return k
}

func keyTime(k []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))
}

func pairKey(a, b string) []byte {
	k := make([]byte, 0, len(a)+1+len(b))
	k = append(k, a...)
	k = append(k, 0)
	return append(k, b...)
}

func getTask(b *bolt.Bucket, id string, t *taskRec) (bool, error) {
	raw := b.Get([]byte(id))
	if raw == nil {
		return false, nil
	}
	if err := decodeTask(raw, t); err != nil {
		return false, fmt.Errorf("decode task %s: %w", id, err)
	}
	return true, nil
}

func putTask(b *bolt.Bucket, id string, t *taskRec) error {
	return b.Put([]byte(id), encodeTask(t))
}

func getGraph(b *bolt.Bucket, id string, g *graphRec) (bool, error) {
	raw := b.Get([]byte(id))
	if raw == nil {
		return false, nil
	}
	if err := decodeGraph(raw, g); err != nil {
		return false, fmt.Errorf("decode graph %s: %w", id, err)
	}
	return true, nil
}

func addCount(b *bolt.Bucket, s taskdef.TaskState, d int) error {
	var n int64
	if v := b.Get([]byte(s)); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	n += int64(d)
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(n))
	return b.Put([]byte(s), v[:])
}

func tp(t time.Time) *time.Time { return &t }
