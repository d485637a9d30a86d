package filter

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/af-project/af/internal/layout"
)

// TestSameFilterEveryLayout: one filter document means the same over the
// same dimension names wherever the schema puts them (the .vN names, all
// directories, key=value directories, the file name): the same values
// match, ranges included, and listed values are sanitised as each place
// stores them.
func TestSameFilterEveryLayout(t *testing.T) {
	t.Parallel()
	fields := layout.Telemetry().Fields
	schemas := map[string]layout.Schema{
		".vN":            layout.Telemetry(),
		"all directory":  {Fields: fields, Places: slices.Repeat([]layout.Place{layout.InDirectory}, 6)},
		"all key=value":  {Fields: fields, Places: slices.Repeat([]layout.Place{layout.InKeyValue}, 6)},
		"key=value+name": {Fields: fields, Places: []layout.Place{layout.InKeyValue, layout.InKeyValue, layout.InDirectory, layout.InDirectory, layout.InFileName, layout.InFileName}, File: layout.AnyFile},
	}
	data := []byte(doc(`["saved-session", "idle_daily"]`, `"Firefox"`, "", `{"max": "28.0a1"}`, `{"min": "20140228"}`, `{"min": "20140308", "max": "20140309"}`))
	for name, s := range schemas {
		// The reason directory as a writer of this layout made it from
		// "saved-session": saved_session in a telemetry-server directory,
		// saved-session in a key=value one.
		dims := []string{s.SanitizeValue(0, "saved-session"), "Firefox", "nightly", "28.0a1", "20140301000000", "20140308"}
		with := func(i int, v string) []string { d := slices.Clone(dims); d[i] = v; return d }
		f, err := Parse("f.json", data, s)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, tc := range []struct {
			dims []string
			want bool
		}{
			{dims, true},
			{with(0, "idle_daily"), true},
			{with(0, "main"), false},
			{with(1, "Fennec"), false},
			{with(3, "28.0"), true},
			{with(3, "28.0a2"), false},
			{with(4, "20140227999999"), false},
			{with(5, "20140309"), true},
			{with(5, "20140310"), false},
		} {
			if got := f.Match(tc.dims); got != tc.want {
				t.Errorf("%s: Match(%q) = %v, want %v", name, tc.dims, got, tc.want)
			}
		}
	}
	// A listed date keeps its "-" in a key=value directory (Hive writes
	// dt=2024-01-01) and loses it in a telemetry-server directory, which
	// never held one.
	hive := layout.Schema{Fields: []string{"dt", "hour"}, Places: []layout.Place{layout.InKeyValue, layout.InKeyValue}}
	dirs := layout.Schema{Fields: []string{"dt", "hour"}, Places: []layout.Place{layout.InDirectory, layout.InDirectory}}
	list := []byte(`{"version":1,"dimensions":[{"field_name":"dt","allowed_values":["2024-01-01"]},{"field_name":"hour","allowed_values":{"min":"03","max":"11"}}]}`)
	for _, tc := range []struct {
		s    layout.Schema
		want []string
	}{{hive, []string{"2024-01-01"}}, {dirs, []string{"2024_01_01"}}} {
		f, err := Parse("f.json", list, tc.s)
		if err != nil || !slices.Equal(f.Dims[0].Values, tc.want) || !f.Match([]string{tc.want[0], "03"}) || f.Match([]string{tc.want[0], "12"}) {
			t.Errorf("%v: %+v, %v; want values %q", tc.s, f, err, tc.want)
		}
	}
}

// TestParseLayoutFilters: the example filters of filters/layouts parse
// against their schemas and select what their comments in the README say.
func TestParseLayoutFilters(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("..", "..", "filters", "layouts")
	for _, tc := range []struct {
		schema, filter string
		match, miss    [][]string
	}{
		{"telemetry-2_schema.json", "telemetry-2-saved-session.json",
			[][]string{{"20150928", "telemetry", "4", "saved_session", "Firefox", "nightly", "44.0a1", "20150927150205"}},
			[][]string{{"20150928", "telemetry", "4", "main", "Firefox", "nightly", "44.0a1", "20150927150205"}, {"20151001", "telemetry", "4", "saved_session", "Firefox", "nightly", "44.0a1", "20150927150205"}}},
		{"hive_schema.json", "hive-morning.json",
			[][]string{{"2024-01-01", "03"}, {"2024-01-02", "11"}},
			[][]string{{"2024-01-03", "03"}, {"2024-01-01", "12"}, {"2024-01-01", "02"}}},
	} {
		s, err := layout.LoadSchema(filepath.Join(dir, tc.schema))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseFile(filepath.Join(dir, tc.schema), s); err != nil {
			t.Errorf("the schema %s as a filter: %v", tc.schema, err)
		}
		f, err := ParseFile(filepath.Join(dir, tc.filter), s)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range tc.match {
			if !f.Match(d) {
				t.Errorf("%s: %q not matched", tc.filter, d)
			}
		}
		for _, d := range tc.miss {
			if f.Match(d) {
				t.Errorf("%s: %q matched", tc.filter, d)
			}
		}
	}
}
