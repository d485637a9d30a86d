package taskdef

import "testing"

// TestTotalsOf: the graph's input is its mappers' files and records; the
// reducer's counts (one file per mapper output, the pairs it merged) are
// apart, never added to the input (`af status` once said 49/48 files).
func TestTotalsOf(t *testing.T) {
	t.Parallel()
	run := func(st Stats) []Run { return []Run{{Stats: Stats{Files: 99}}, {Stats: st}} } // the latest run counts
	tasks := []TaskStatus{
		{Kind: KindMapper, State: StateCompleted, InputFiles: 24, InputBytes: 1000,
			Runs: run(Stats{Files: 24, Bytes: 1000, RawBytes: 5000, RecordsIn: 800, RecordsOut: 5, BadLines: 1})},
		{Kind: KindMapper, State: StateRunning, InputFiles: 24, InputBytes: 1000,
			Runs: run(Stats{Files: 30, Bytes: 1500, RecordsIn: 400, RecordsOut: 3})}, // over its input: clamped
		{Kind: KindMapper, State: StatePending, InputFiles: 1, InputBytes: 10},
		{Kind: KindReducer, State: StateCompleted,
			Runs: run(Stats{Files: 3, Bytes: 300, RecordsIn: 8, RecordsOut: 4})},
	}
	got := TotalsOf(tasks)
	want := GraphTotals{
		Input: InputTotals{Tasks: 3, Completed: 1, Files: 48, FilesAll: 49, Bytes: 2000, BytesAll: 2010, RawBytes: 5000,
			Records: 1200, Pairs: 8, BadLines: 1},
		Reducer: ReducerTotals{Tasks: 1, Completed: 1, Inputs: 3, Bytes: 300, Pairs: 8, Lines: 4},
	}
	if got != want {
		t.Fatalf("TotalsOf\n got %+v\nwant %+v", got, want)
	}
}

func TestGraphListQueryEncode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		q    GraphListQuery
		want string
	}{
		{GraphListQuery{}, ""},
		{GraphListQuery{Limit: 5, Owner: "a@b.org", Name: "os count", States: []GraphState{GraphFailed, GraphCanceled}},
			"limit=5&name=os+count&owner=a%40b.org&state=failed&state=canceled"},
	}
	for _, tc := range tests {
		if got := tc.q.Encode(); got != tc.want {
			t.Errorf("%+v.Encode() = %q, want %q", tc.q, got, tc.want)
		}
	}
}
