package creds

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/af-project/af/internal/layout"
)

// TestScopeForEveryLayout: the narrowest prefixes follow each layout's
// separators, a key=value directory's prefix includes its "key=", and
// Permits accepts exactly the selected keys' subtrees.
func TestScopeForEveryLayout(t *testing.T) {
	t.Parallel()
	hive := layout.Schema{Fields: []string{"dt", "hour"}, Places: []layout.Place{layout.InKeyValue, layout.InKeyValue}}
	t2 := layout.Schema{Fields: []string{"submissionDate", "sourceName", "sourceVersion", "docType", "appName", "appUpdateChannel", "appVersion", "appBuildId"},
		Places: slices.Repeat([]layout.Place{layout.InDirectory}, 8)}
	mixed := layout.Schema{Fields: []string{"source", "dt", "date"}, Places: []layout.Place{layout.InDirectory, layout.InKeyValue, layout.InFileName}, File: layout.AnyFile}
	var manyHours []string
	for h := range 24 {
		for d := range 3 {
			manyHours = append(manyHours, fmt.Sprintf("events/dt=2024-01-%02d/hour=%02d/part-0001.json.gz", d+1, h))
		}
	}
	for _, tc := range []struct {
		name      string
		schema    layout.Schema
		prefix    string
		keys      []string
		want      []string
		dimension string
		outside   []string // keys Permits must refuse
	}{
		{"without .vN", layout.Telemetry(), "processed",
			[]string{"processed/idle_daily/Firefox/nightly/26.0a1/20130826074752.20130903.log.e0c7ff434e474c8aa745763eed408b9c.lzma"},
			[]string{"processed/idle_daily/Firefox/nightly/26.0a1/20130826074752.20130903."}, "submission_date",
			[]string{"processed/idle_daily/Firefox/nightly/26.0a1/20130826074752.20130904.log.u.lzma"}},
		{"telemetry-2", t2, "telemetry-2",
			[]string{"telemetry-2/20150928/telemetry/4/saved_session/Firefox/nightly/44.0a1/20150927150205/20150928035224.316_ip-172-31-25-174",
				"telemetry-2/20150928/telemetry/4/saved_session/Firefox/nightly/44.0a1/20150927150205/20150928040000.100_ip-172-31-25-174"},
			[]string{"telemetry-2/20150928/telemetry/4/saved_session/Firefox/nightly/44.0a1/20150927150205/"}, "appBuildId",
			[]string{"telemetry-2/20150928/telemetry/4/saved_session/Firefox/nightly/44.0a1/20150927150206/x", "telemetry-2/20150928/telemetry/4/saved_session/Firefox/nightly/44.0a1/20150927150205/../../../../../../../../../x"}},
		{"hive", hive, "events",
			[]string{"events/dt=2024-01-01/hour=03/part-0001.json.gz", "events/dt=2024-01-01/hour=03/part-0002.json.gz", "events/dt=2024-01-02/hour=23/part-0001.json.gz"},
			[]string{"events/dt=2024-01-01/hour=03/", "events/dt=2024-01-02/hour=23/"}, "hour",
			[]string{"events/dt=2024-01-01/hour=04/part-0001.json.gz", "events/dt=2024-01-01/hour=0/x", "events/dt=2024-01-01/hour=03/../../dt=2024-01-05/hour=00/p"}},
		{"hive widened to the day, with dt= in the prefix", hive, "events", manyHours,
			[]string{"events/dt=2024-01-01/", "events/dt=2024-01-02/", "events/dt=2024-01-03/"}, "dt",
			[]string{"events/dt=2024-01-04/hour=00/part-0001.json.gz", "events/dt=2024-01-0/x"}},
		{"mixed", mixed, "",
			[]string{"web/dt=2024-01-01/20240101.part-1.json", "web/dt=2024-01-01/20240102.part-1.json"},
			[]string{"web/dt=2024-01-01/20240101.", "web/dt=2024-01-01/20240102."}, "date",
			[]string{"web/dt=2024-01-01/20240103.part-1.json", "web/dt=2024-01-01/2024010.x"}},
	} {
		sc, err := ScopeFor("telemetry", tc.prefix, tc.schema, tc.keys)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !slices.Equal(sc.Prefixes, tc.want) || sc.Dimension != tc.dimension {
			t.Errorf("%s: prefixes %q at %s, want %q at %s", tc.name, sc.Prefixes, sc.Dimension, tc.want, tc.dimension)
		}
		c := Credentials{GraphID: "g", Image: "img", Bucket: "telemetry", Prefix: tc.prefix, Prefixes: sc.Prefixes}
		use := Use{GraphID: "g", Image: "img", Bucket: "telemetry", Prefix: tc.prefix, Keys: tc.keys}
		if err := c.Permits(use); err != nil {
			t.Errorf("%s: Permits(selected keys) = %v", tc.name, err)
		}
		for _, k := range tc.outside {
			use.Keys = []string{k}
			if err := c.Permits(use); !errors.Is(err, ErrOutOfScope) {
				t.Errorf("%s: Permits(%q) = %v; want ErrOutOfScope", tc.name, k, err)
			}
		}
	}
}
