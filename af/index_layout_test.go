package main

import (
	"strings"
	"testing"

	"github.com/af-project/af/internal/taskdef"
)

// TestPrintIndexStatsShowsTheLayout: stats of an index in another layout
// than telemetry-server's .vN one say where its dimensions live.
func TestPrintIndexStatsShowsTheLayout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		schema taskdef.IndexSchema
		want   string // "" : no layout line
	}{
		{taskdef.IndexSchema{Fields: []string{"dt", "hour"}, Layout: "kk:any"}, "layout:  dt=<dt>/hour=<hour>/<file>\n"},
		{taskdef.IndexSchema{Fields: []string{"a", "b"}}, ""},
	} {
		var b strings.Builder
		printIndexStats(&b, "x.db", taskdef.IndexStats{Bucket: "b", Schema: tc.schema})
		if got := strings.Contains(b.String(), "layout:"); got != (tc.want != "") || tc.want != "" && !strings.Contains(b.String(), tc.want) {
			t.Errorf("%+v: printed\n%s\nwant %q", tc.schema, b.String(), tc.want)
		}
	}
}
