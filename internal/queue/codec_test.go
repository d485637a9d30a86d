package queue

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

func sampleRec() taskRec {
	at := func(s int) *time.Time { t := t0.Add(time.Duration(s) * time.Second); return &t }
	return taskRec{
		State: sPending, RetriesLeft: 3, Waiting: 0, GraphID: "graph-code", Retries: 5,
		Requires: taskdef.RequiresAllResolved, Deadline: t0.Add(time.Hour), Expires: t0.Add(48 * time.Hour),
		Name: "mapper ü", Kind: taskdef.KindMapper, Files: 12, Bytes: 1 << 40, NumDeps: 2,
		Runs: []taskdef.Run{
			{RunID: 0, State: sException, ReasonCreated: "scheduled", ReasonResolved: "claim-expired",
				WorkerGroup: "g", WorkerID: "w", TakenUntil: at(60), Scheduled: at(0), Started: at(1), Resolved: at(61),
				Stats: taskdef.Stats{Files: 1, Bytes: 2, RawBytes: 3, RecordsIn: 4, RecordsOut: 5, BadLines: 6, BadFiles: 7}, Message: "lease",
				TokenHash: hashRunToken("run-0-token"), CreatedBy: "af serve", ClaimedBy: "pool-a", ResolvedBy: "af serve"},
			{RunID: 1, State: sPending, ReasonCreated: "retry", Scheduled: at(61), CreatedBy: "alice@example.com"},
		},
		CreatedBy: "alice@example.com",
	}
}

func TestRecordCodecRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []taskRec{{}, sampleRec(), {State: sUnscheduled, Waiting: 2000, Retries: 50, RetriesLeft: -1}}
	for i, rec := range tests {
		var got taskRec
		if err := decodeTask(encodeTask(&rec), &got); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, rec) {
			t.Errorf("case %d: round trip\n got %+v\nwant %+v", i, got, rec)
		}
	}
	g := graphRec{Name: "n", Owner: "o@x", Created: t0, Resolved: &t0, State: taskdef.GraphFailed, Tasks: 3, Unresolved: 0,
		Counts: map[taskdef.TaskState]int{sCompleted: 2, sException: 1}, ResultTaskID: "r", ResolvedBy: "b", ResolvedRun: 4,
		CreatedBy: "admin", CanceledBy: "bob@example.com"}
	var gg graphRec
	if err := decodeGraph(encodeGraph(&g), &gg); err != nil || !reflect.DeepEqual(gg, g) {
		t.Errorf("graph round trip: %v\n got %+v\nwant %+v", err, gg, g)
	}
	for _, bad := range [][]byte{nil, {}, {9}, encodeTask(&tests[1])[:20]} {
		if err := decodeTask(bad, &taskRec{}); err == nil {
			t.Errorf("decoded %x", bad)
		}
	}
}

// FuzzDecodeRecord: stored records are parsed on every operation; damaged
// bytes must give an error, never a panic or a huge allocation, and what
// decodes must encode back to something that decodes the same.
func FuzzDecodeRecord(f *testing.F) {
	rec := sampleRec()
	f.Add(encodeTask(&rec))
	f.Add(encodeTaskVersion(&rec, taskRecVersionV1))
	f.Add(encodeTask(&taskRec{}))
	g := graphRec{Name: "n", Counts: map[taskdef.TaskState]int{sPending: 1}}
	f.Add(encodeGraph(&g))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r taskRec
		if err := decodeTask(b, &r); err == nil {
			var again taskRec
			if err := decodeTask(encodeTask(&r), &again); err != nil || !reflect.DeepEqual(again, r) {
				t.Fatalf("task re-encode differs: %v", err)
			}
		}
		var gr graphRec
		if err := decodeGraph(b, &gr); err == nil {
			var again graphRec
			if err := decodeGraph(encodeGraph(&gr), &again); err != nil || !reflect.DeepEqual(again, gr) {
				t.Fatalf("graph re-encode differs: %v", err)
			}
		}
	})
}

// FuzzPrepareDefinition feeds arbitrary JSON task definitions to the
// validation and normalization that decide idempotency: an accepted
// definition, encoded and submitted again, must be accepted and byte-equal
// (so a retried create is a no-op), and diffTasks must not panic.
func FuzzPrepareDefinition(f *testing.F) {
	def := mkTask("graph-fuzz", taskdef.KindMapper, 5)
	seed, _ := json.Marshal(def)
	f.Add(seed)
	red := mkTask("graph-fuzz", taskdef.KindReducer, 0, "task-aaaaaaaa", "task-bbbbbbbb")
	seed2, _ := json.Marshal(red)
	f.Add(seed2)
	f.Add([]byte(`{"graphId":"graph-fuzz","created":"2030-01-02T03:04:05+02:00","deadline":"2030-01-02T05:04:05Z","metadata":{"name":"x","owner":"y"},"payload":{"kind":"mapper","image":"i","maxRunTime":1}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var td taskdef.Task
		if json.Unmarshal(b, &td) != nil {
			return
		}
		nt, err := prepare("fuzz", "task-fuzzing", td)
		if err != nil {
			return
		}
		var again taskdef.Task
		if err := json.Unmarshal(nt.raw, &again); err != nil {
			t.Fatalf("stored definition does not decode: %v", err)
		}
		nt2, err := prepare("fuzz", "task-fuzzing", again)
		if err != nil {
			t.Fatalf("stored definition is refused on re-create: %v", err)
		}
		if !bytes.Equal(nt.raw, nt2.raw) {
			t.Fatalf("re-create is not byte-equal:\n%s\n%s", nt.raw, nt2.raw)
		}
		_ = diffTasks(nt.raw, seed)
	})
}

// TestOlderRecordsDecodeWithoutTheAuditTrail: task records of versions 1
// and 2 and graph records of version 1 (written before the audit trail)
// still decode, with every "by" empty and everything else kept.
func TestOlderRecordsDecodeWithoutTheAuditTrail(t *testing.T) {
	t.Parallel()
	rec := sampleRec()
	want := rec
	want.CreatedBy = ""
	want.Runs = append([]taskdef.Run(nil), rec.Runs...)
	for i := range want.Runs {
		want.Runs[i].CreatedBy, want.Runs[i].ClaimedBy, want.Runs[i].ResolvedBy = "", "", ""
	}
	for _, v := range []byte{taskRecVersionV1, taskRecVersionV2} {
		w := want
		w.Runs = append([]taskdef.Run(nil), want.Runs...)
		if v == taskRecVersionV1 {
			for i := range w.Runs {
				w.Runs[i].TokenHash = nil
			}
		}
		var got taskRec
		if err := decodeTask(encodeTaskVersion(&rec, v), &got); err != nil || !reflect.DeepEqual(got, w) {
			t.Errorf("task record v%d: %v\n got %+v\nwant %+v", v, err, got, w)
		}
	}
	// A version 1 graph record is version 2's without the two names.
	g := graphRec{Name: "n", Owner: "o@x", Created: t0, State: taskdef.GraphRunning, Tasks: 1, Unresolved: 1,
		Counts: map[taskdef.TaskState]int{sPending: 1}, CreatedBy: "x", CanceledBy: "y"}
	b := encodeGraph(&g)
	b = b[:len(b)-4] // the two one-byte names and their lengths
	b[0] = recVersionV1
	var got graphRec
	g.CreatedBy, g.CanceledBy = "", ""
	if err := decodeGraph(b, &got); err != nil || !reflect.DeepEqual(got, g) {
		t.Errorf("graph record v1: %v\n got %+v\nwant %+v", err, got, g)
	}
}
