package server

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

// TestAppendClaimResponse checks the hand-written claim answer against
// encoding/json's encoding of the same claims, and that a client decodes it
// to the definitions that went in.
func TestAppendClaimResponse(t *testing.T) {
	t.Parallel()
	def := testTask("g1234567", "mapper-0001", time.Now())
	raw, err := json.Marshal(def)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 22, 23, 4, 5, 123456789, time.UTC)
	tests := []struct {
		name   string
		claims []taskdef.RawClaim
	}{
		{"none", nil},
		{"empty", []taskdef.RawClaim{}},
		{"one", []taskdef.RawClaim{{TaskID: "abcdefgh", RunID: 0, TakenUntil: at, RunToken: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Task: raw}}},
		{"several", []taskdef.RawClaim{
			{TaskID: "A-b_c0123456789", RunID: 3, TakenUntil: at.Add(time.Minute), RunToken: "3q-_Zz09abcdefghijklmnopqrstuvwxyzABCDEFGHI", Task: raw},
			{TaskID: "zzzzzzzz", RunID: 12, TakenUntil: at.Truncate(time.Second), RunToken: "_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_", Task: raw},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := appendClaimResponse(nil, tc.claims)
			want := struct {
				Tasks []taskdef.RawClaim `json:"tasks"`
			}{Tasks: tc.claims}
			if want.Tasks == nil {
				want.Tasks = []taskdef.RawClaim{}
			}
			wb, err := json.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(bytes.TrimSuffix(got, []byte("\n")), wb) {
				t.Fatalf("hand-written answer differs from encoding/json's:\n got %s\nwant %s", got, wb)
			}
			var resp taskdef.ClaimResponse
			if err := json.Unmarshal(got, &resp); err != nil {
				t.Fatalf("client cannot decode %s: %v", got, err)
			}
			if len(resp.Tasks) != len(tc.claims) {
				t.Fatalf("decoded %d claims, want %d", len(resp.Tasks), len(tc.claims))
			}
			for i, c := range resp.Tasks {
				in := tc.claims[i]
				if c.TaskID != in.TaskID || c.RunID != in.RunID || c.RunToken != in.RunToken || !c.TakenUntil.Equal(in.TakenUntil) || c.Task.Metadata.Name != def.Metadata.Name || c.Task.GraphID != def.GraphID {
					t.Errorf("claim %d decoded as %+v, want %+v", i, c, in)
				}
			}
		})
	}
}
