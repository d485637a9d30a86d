package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

// Task and graph records are written on every state change, inside the
// single writer, so they use a small hand-rolled binary encoding instead of
// JSON (which spent most of a claim's CPU parsing times). Definitions stay
// JSON: they are written once and read back whole.
//
// Layout: a version byte, then fields in order: unsigned/signed varints,
// strings as length-prefixed bytes, times as signed varint Unix nanoseconds
// (0 = absent).
//
// Task records are version 2: each run ends with its token hash. Version 1
// records (written before run tokens) still decode, their runs without a
// hash; such a run cannot be reclaimed or reported (no token matches), so
// it expires and the task runs again.
//
// Task records are version 3 since the audit trail: the task's creator
// after NumDeps, and each run's createdBy, claimedBy and resolvedBy after
// its token hash, and the task's priority at the end. Graph records are
// version 2: createdBy, canceledBy and the priority at the end. Older
// versions decode with those fields empty (priority normal).
const (
	recVersion       = 2 // graph records
	recVersionV1     = 1
	taskRecVersion   = 3
	taskRecVersionV2 = 2
	taskRecVersionV1 = 1
)

var errShortRecord = errors.New("record is truncated")

type encoder struct{ b []byte }

func (e *encoder) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) str(s string)  { e.uint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.int(0)
		return
	}
	e.int(t.UnixNano())
}
func (e *encoder) ptime(t *time.Time) {
	if t == nil {
		e.int(0)
		return
	}
	e.time(*t)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShortRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShortRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uint()
	if d.err != nil {
		return ""
	}
	if uint64(len(d.b)) < n {
		d.err = errShortRecord
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) time() time.Time {
	n := d.int()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func (d *decoder) ptime() *time.Time {
	t := d.time()
	if t.IsZero() {
		return nil
	}
	return &t
}

func encodeTask(t *taskRec) []byte { return encodeTaskVersion(t, taskRecVersion) }

// encodeTaskVersion writes version v; tests write version 1 to stand in for
// an old database.
func encodeTaskVersion(t *taskRec, v byte) []byte {
	e := encoder{b: make([]byte, 0, 128+len(t.Runs)*128)}
	e.b = append(e.b, v)
	e.str(string(t.State))
	e.int(int64(t.RetriesLeft))
	e.int(int64(t.Waiting))
	e.str(t.GraphID)
	e.int(int64(t.Retries))
	e.str(string(t.Requires))
	e.time(t.Deadline)
	e.time(t.Expires)
	e.str(t.Name)
	e.str(string(t.Kind))
	e.int(int64(t.Files))
	e.int(t.Bytes)
	e.int(int64(t.NumDeps))
	if v >= 3 {
		e.str(t.CreatedBy)
	}
	e.uint(uint64(len(t.Runs)))
	for i := range t.Runs {
		r := &t.Runs[i]
		e.int(int64(r.RunID))
		e.str(string(r.State))
		e.str(r.ReasonCreated)
		e.str(r.ReasonResolved)
		e.str(r.WorkerGroup)
		e.str(r.WorkerID)
		e.ptime(r.TakenUntil)
		e.ptime(r.Scheduled)
		e.ptime(r.Started)
		e.ptime(r.Resolved)
		s := &r.Stats
		for _, v := range [...]int64{s.Files, s.Bytes, s.RawBytes, s.RecordsIn, s.RecordsOut, s.BadLines, s.BadFiles} {
			e.int(v)
		}
		e.str(r.Message)
		if v >= 2 {
			e.str(string(r.TokenHash))
		}
		if v >= 3 {
			e.str(r.CreatedBy)
			e.str(r.ClaimedBy)
			e.str(r.ResolvedBy)
		}
	}
	if v >= 3 {
		e.str(string(t.Priority))
	}
	return e.b
}

func decodeTask(b []byte, t *taskRec) error {
	if len(b) == 0 || b[0] < taskRecVersionV1 || b[0] > taskRecVersion {
		return fmt.Errorf("task record has unknown encoding")
	}
	v := b[0]
	d := decoder{b: b[1:]}
	*t = taskRec{}
	t.State = taskdef.TaskState(d.str())
	t.RetriesLeft = int(d.int())
	t.Waiting = int(d.int())
	t.GraphID = d.str()
	t.Retries = int(d.int())
	t.Requires = taskdef.Requires(d.str())
	t.Deadline = d.time()
	t.Expires = d.time()
	t.Name = d.str()
	t.Kind = taskdef.Kind(d.str())
	t.Files = int(d.int())
	t.Bytes = d.int()
	t.NumDeps = int(d.int())
	if v >= 3 {
		t.CreatedBy = d.str()
	}
	n := d.uint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = errShortRecord
	}
	if d.err == nil && n > 0 {
		t.Runs = make([]taskdef.Run, n)
	}
	for i := 0; d.err == nil && i < int(n); i++ {
		r := &t.Runs[i]
		r.RunID = int(d.int())
		r.State = taskdef.TaskState(d.str())
		r.ReasonCreated = d.str()
		r.ReasonResolved = d.str()
		r.WorkerGroup = d.str()
		r.WorkerID = d.str()
		r.TakenUntil = d.ptime()
		r.Scheduled = d.ptime()
		r.Started = d.ptime()
		r.Resolved = d.ptime()
		s := &r.Stats
		for _, p := range [...]*int64{&s.Files, &s.Bytes, &s.RawBytes, &s.RecordsIn, &s.RecordsOut, &s.BadLines, &s.BadFiles} {
			*p = d.int()
		}
		r.Message = d.str()
		if v >= 2 {
			if h := d.str(); h != "" {
				r.TokenHash = []byte(h)
			}
		}
		if v >= 3 {
			r.CreatedBy = d.str()
			r.ClaimedBy = d.str()
			r.ResolvedBy = d.str()
		}
	}
	if v >= 3 {
		t.Priority = taskdef.Priority(d.str())
	}
	return d.err
}

func encodeGraph(g *graphRec) []byte {
	e := encoder{b: make([]byte, 0, 128)}
	e.b = append(e.b, recVersion)
	e.str(g.Name)
	e.str(g.Owner)
	e.time(g.Created)
	e.ptime(g.Resolved)
	e.str(string(g.State))
	e.int(int64(g.Tasks))
	e.int(int64(g.Unresolved))
	for _, s := range allStates {
		e.int(int64(g.Counts[s]))
	}
	e.str(g.ResultTaskID)
	e.str(g.ResolvedBy)
	e.int(int64(g.ResolvedRun))
	e.str(g.CreatedBy)
	e.str(g.CanceledBy)
	e.str(string(g.Priority))
	return e.b
}

func decodeGraph(b []byte, g *graphRec) error {
	if len(b) == 0 || (b[0] != recVersion && b[0] != recVersionV1) {
		return fmt.Errorf("graph record has unknown encoding")
	}
	v := b[0]
	d := decoder{b: b[1:]}
	*g = graphRec{}
	g.Name = d.str()
	g.Owner = d.str()
	g.Created = d.time()
	g.Resolved = d.ptime()
	g.State = taskdef.GraphState(d.str())
	g.Tasks = int(d.int())
	g.Unresolved = int(d.int())
	g.Counts = make(map[taskdef.TaskState]int, len(allStates))
	for _, s := range allStates {
		if n := int(d.int()); n != 0 {
			g.Counts[s] = n
		}
	}
	g.ResultTaskID = d.str()
	g.ResolvedBy = d.str()
	g.ResolvedRun = int(d.int())
	if v >= 2 {
		g.CreatedBy = d.str()
		g.CanceledBy = d.str()
		g.Priority = taskdef.Priority(d.str())
	}
	return d.err
}
