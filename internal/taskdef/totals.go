package taskdef

// GraphTotals is what a graph's tasks processed, summed over each task's
// latest run. Input is the graph's input, its mappers' files and records;
// the reducer's own counts (the mapper outputs it merged, the lines it
// wrote) are kept apart in Reducer, never added to Input: a graph over
// 1,600 documents read 1,600 records, however many pairs its reducer
// merged. TotalsOf computes it; GET /api/v1/graphs/{id} sends it as
// GraphStatus.Totals, and `af status`, `af submit --json` and the
// monitor page show it.
type GraphTotals struct {
	Input   InputTotals   `json:"input"`
	Reducer ReducerTotals `json:"reducer"`
}

// InputTotals are the mappers' counts: what the graph was given (the
// *All fields, from the task definitions) and what has been read of it.
type InputTotals struct {
	// Tasks is the number of mapper tasks, Completed how many completed.
	Tasks     int `json:"tasks"`
	Completed int `json:"completed"`
	// Files and Bytes are the input files and compressed bytes read so
	// far (a completed mapper counts what its run reported); FilesAll
	// and BytesAll are what the filter selected.
	Files    int64 `json:"files"`
	FilesAll int64 `json:"filesAll"`
	Bytes    int64 `json:"bytes"`
	BytesAll int64 `json:"bytesAll"`
	// RawBytes is the decompressed size of what was read.
	RawBytes int64 `json:"rawBytes"`
	// Records is the documents fed to the mappers, Pairs the key/value
	// pairs they wrote.
	Records int64 `json:"records"`
	Pairs   int64 `json:"pairs"`
	// BadLines and BadFiles are input lines and files that could not
	// be read and were skipped (within analysis-tools.yml's limits).
	BadLines int64 `json:"badLines"`
	BadFiles int64 `json:"badFiles"`
}

// ReducerTotals are the reducer's own counts.
type ReducerTotals struct {
	// Tasks is the number of reducer tasks (one per graph af submit
	// makes), Completed how many completed.
	Tasks     int `json:"tasks"`
	Completed int `json:"completed"`
	// Inputs is the mapper outputs it merged and Bytes their size.
	Inputs int64 `json:"inputs"`
	Bytes  int64 `json:"bytes"`
	// Pairs is the key/value pairs it read, Lines the lines of the
	// result it wrote.
	Pairs int64 `json:"pairs"`
	Lines int64 `json:"lines"`
}

// TotalsOf sums the tasks' latest runs into a graph's totals.
func TotalsOf(tasks []TaskStatus) GraphTotals {
	var g GraphTotals
	for _, t := range tasks {
		var st Stats
		if n := len(t.Runs); n > 0 {
			st = t.Runs[n-1].Stats
		}
		done := t.State == StateCompleted
		switch t.Kind {
		case KindMapper:
			in := &g.Input
			in.Tasks++
			if done {
				in.Completed++
			}
			in.FilesAll += int64(t.InputFiles)
			in.BytesAll += t.InputBytes
			// A run's progress never counts past what the task was
			// given (a report could say more; the input is fixed).
			in.Files += min(st.Files, int64(t.InputFiles))
			in.Bytes += min(st.Bytes, t.InputBytes)
			in.RawBytes += st.RawBytes
			in.Records += st.RecordsIn
			in.Pairs += st.RecordsOut
			in.BadLines += st.BadLines
			in.BadFiles += st.BadFiles
		case KindReducer:
			r := &g.Reducer
			r.Tasks++
			if done {
				r.Completed++
			}
			r.Inputs += st.Files
			r.Bytes += st.Bytes
			r.Pairs += st.RecordsIn
			r.Lines += st.RecordsOut
		}
	}
	return g
}
