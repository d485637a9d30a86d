package filter

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/af-project/af/internal/layout"
)

// doc builds a filter document over the telemetry schema with the given
// allowed_values (raw JSON) per dimension.
func doc(av ...string) string {
	fields := layout.Telemetry().Fields
	var b strings.Builder
	b.WriteString(`{"version": 1, "dimensions": [`)
	for i, f := range fields {
		v := `"*"`
		if i < len(av) && av[i] != "" {
			v = av[i]
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "\n  {\"field_name\": %q, \"allowed_values\": %s}", f, v)
	}
	b.WriteString("\n]}")
	return b.String()
}

func TestParseKinds(t *testing.T) {
	t.Parallel()
	schema := layout.Telemetry()
	dims := []string{"saved_session", "Firefox", "nightly", "28.0a1", "20140301000000", "20140308"}
	with := func(i int, v string) []string { d := slices.Clone(dims); d[i] = v; return d }
	for _, tc := range []struct {
		name  string
		av    []string
		kind  Kind // of the first constrained dimension
		match [][]string
		miss  [][]string
	}{
		{"all any", nil, Any, [][]string{dims, with(0, "idle_daily")}, nil},
		{"string exact", []string{`"saved_session"`}, Set,
			[][]string{dims}, [][]string{with(0, "idle_daily"), with(0, "saved_session2")}},
		{"string is not sanitised", []string{`"saved-session"`}, Set,
			nil, [][]string{dims}},
		{"list sanitised", []string{`["saved-session", "idle-daily"]`}, Set,
			[][]string{dims, with(0, "idle_daily")}, [][]string{with(0, "main"), with(0, "saved-session")}},
		{"list of one", []string{"", "", `["nightly"]`}, Set, [][]string{dims}, [][]string{with(2, "beta"), with(2, "nightly2")}},
		{"range both", []string{"", "", "", "", "", `{"min": "20140308", "max": "20140309"}`}, Range,
			[][]string{dims, with(5, "20140309")}, [][]string{with(5, "20140307"), with(5, "20140310"), with(5, "2014031")}},
		{"range min only", []string{"", "", "", "", `{"min": "20140228"}`}, Range,
			[][]string{dims, with(4, "20140228"), with(4, "99")}, [][]string{with(4, "20140227999999"), with(4, "2014")}},
		{"range max only", []string{"", "", "", `{"max": "28.0"}`}, Range,
			[][]string{with(3, "28.0"), with(3, "27.0a1"), with(3, "28")}, [][]string{dims, with(3, "29.0")}},
		{"range equal bounds", []string{"", "", "", `{"min": "28.0a1", "max": "28.0a1"}`}, Range,
			[][]string{dims}, [][]string{with(3, "28.0a2")}},
		{"range empty object", []string{`{}`}, Any, [][]string{dims, with(0, "x")}, nil},
	} {
		f, err := Parse("f.json", []byte(doc(tc.av...)), schema)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		first := f.Dims[0].Kind
		for _, d := range f.Dims {
			if d.Kind != Any {
				first = d.Kind
				break
			}
		}
		if first != tc.kind {
			t.Errorf("%s: kind %v, want %v", tc.name, first, tc.kind)
		}
		for _, m := range tc.match {
			if !f.Match(m) {
				t.Errorf("%s: %q not matched", tc.name, m)
			}
		}
		for _, m := range tc.miss {
			if f.Match(m) {
				t.Errorf("%s: %q matched", tc.name, m)
			}
		}
		if f.Match(dims[:5]) {
			t.Errorf("%s: matched too few dimensions", tc.name)
		}
	}
}

func TestParseSetIsSortedAndUnique(t *testing.T) {
	t.Parallel()
	f, err := Parse("f.json", []byte(doc(`["b", "a-x", "a_x", "b"]`)), layout.Telemetry())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.Dims[0].Values, []string{"a_x", "b"}; !slices.Equal(got, want) {
		t.Errorf("values %q, want %q", got, want)
	}
	if f.Dims[0].Field != "reason" || f.Name != "f.json" {
		t.Errorf("field %q name %q", f.Dims[0].Field, f.Name)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	schema := layout.Telemetry()
	five := strings.Replace(doc(), ", \n  {\"field_name\": \"submission_date\", \"allowed_values\": \"*\"}", "", 1)
	swapped := strings.Replace(strings.Replace(doc(), `"appName"`, `"X"`, 1), `"appUpdateChannel"`, `"appName"`, 1)
	swapped = strings.Replace(swapped, `"X"`, `"appUpdateChannel"`, 1)
	for _, tc := range []struct {
		name, doc, want string
		dim             int
	}{
		{"not json", "{\n  \"version\": 1,\n  \"dimensions\": [}\n", "Filter.json:3:18: not valid JSON: invalid character '}'", 0},
		{"trailing garbage", doc() + " x", "not valid JSON: invalid character 'x' after top-level value", 0},
		{"empty", "", "Filter.json: the file is empty", 0},
		{"version 2", strings.Replace(doc(), `"version": 1`, `"version": 2`, 1), `Filter.json: "version" is 2; af understands version 1 only`, 0},
		{"no version", strings.Replace(doc(), `"version": 1,`, ``, 1), `"version" is missing`, 0},
		{"too few dimensions", five, "Filter.json: it has 5 dimension(s); the schema has 6, in this order: reason, appName, appUpdateChannel, appVersion, appBuildID, submission_date", 0},
		{"wrong order", swapped, `Filter.json: dimension 2 "appUpdateChannel": the schema has "appName" here; dimensions must follow the schema's order`, 2},
		{"unknown dimension", strings.Replace(doc(), `"appVersion"`, `"version"`, 1), `dimension 4 "version": the schema has no dimension "version"`, 4},
		{"number", doc("", "", "7"), `Filter.json: dimension 3 "appUpdateChannel": allowed_values has unknown kind (a number); want "*", a string, a list of strings or {"min","max"}`, 3},
		{"bool", doc("true"), `dimension 1 "reason": allowed_values has unknown kind (true/false)`, 1},
		{"null", doc("null"), `dimension 1 "reason": allowed_values is missing`, 1},
		{"missing", strings.Replace(doc(), `, "allowed_values": "*"}`, `}`, 1), `dimension 1 "reason": allowed_values is missing`, 1},
		{"list of numbers", doc(`["a", 3]`), `allowed_values[1] is a number; a list holds strings`, 1},
		{"empty list", doc(`[]`), `allowed_values is an empty list`, 1},
		{"star in list", doc(`["*"]`), `use "*" on its own`, 1},
		{"min greater than max", doc("", "", "", "", "", `{"min": "20140309", "max": "20140308"}`), `dimension 6 "submission_date": allowed_values min "20140309" is greater than max "20140308"`, 6},
		{"numeric bound", doc("", "", "", "", `{"min": 20140228}`), `allowed_values "min" is a number; bounds are strings, compared as strings (write "min": "20140228")`, 5},
		{"unknown range key", doc(`{"min": "a", "mx": "b"}`), `allowed_values has "mx"; a range has only "min" and "max"`, 1},
	} {
		_, err := Parse("Filter.json", []byte(tc.doc), schema)
		var de *layout.DocError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.want) || de.Dim != tc.dim {
			t.Errorf("%s: error %v; want a DocError in dimension %d containing %q", tc.name, err, tc.dim, tc.want)
		}
	}
}

func TestParseRepositoryFilters(t *testing.T) {
	t.Parallel()
	schema, err := layout.LoadSchema(filepath.Join("..", "..", layout.DefaultSchemaPath))
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join("..", "..", "filters", "*.json"))
	if err != nil || len(files) < 4 {
		t.Fatalf("filters: %v %v", files, err)
	}
	for _, p := range files {
		if _, err := ParseFile(p, schema); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	// The original AF filter: saved-session and idle-daily Firefox
	// nightly, build ids from 20140228, submitted 2014-03-08 and -09.
	f, err := ParseFile(filepath.Join("..", "..", "filters", "Filter.json"), schema)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dims []string
		want bool
	}{
		{[]string{"saved_session", "Firefox", "nightly", "30.0a1", "20140228030203", "20140308"}, true},
		{[]string{"idle_daily", "Firefox", "nightly", "30.0a1", "20140301030203", "20140309"}, true},
		{[]string{"idle_daily", "Firefox", "nightly", "30.0a1", "20140227030203", "20140309"}, false},
		{[]string{"idle_daily", "Firefox", "aurora", "30.0a1", "20140301030203", "20140309"}, false},
		{[]string{"idle_daily", "Firefox", "nightly", "30.0a1", "20140301030203", "20140310"}, false},
		{[]string{"main", "Firefox", "nightly", "30.0a1", "20140301030203", "20140309"}, false},
	} {
		if got := f.Match(tc.dims); got != tc.want {
			t.Errorf("Filter.json Match(%q) = %v, want %v", tc.dims, got, tc.want)
		}
	}
	if _, err := ParseFile("no-such-filter.json", schema); err == nil || !strings.Contains(err.Error(), "no-such-filter.json") {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(doc())
	f.Add(doc(`["saved-session", "idle-daily"]`, `"Firefox"`, "", "", `{"min": "20140228"}`, `{"min": "1", "max": "2"}`))
	f.Add(doc("7", `[1]`, `{"mx": 1}`))
	f.Add(`{"version": 1, "dimensions": [}`)
	f.Add(`[]`)
	schema := layout.Telemetry()
	f.Fuzz(func(t *testing.T, data string) {
		flt, err := Parse("fuzz.json", []byte(data), schema)
		if err != nil {
			var de *layout.DocError
			if !errors.As(err, &de) || !strings.HasPrefix(err.Error(), "fuzz.json") {
				t.Fatalf("error %v is not a DocError naming the file", err)
			}
			return
		}
		if len(flt.Dims) != len(schema.Fields) {
			t.Fatalf("%d dims", len(flt.Dims))
		}
		for i, d := range flt.Dims {
			if d.Field != schema.Fields[i] {
				t.Fatalf("dim %d field %q", i, d.Field)
			}
			switch d.Kind {
			case Set:
				if len(d.Values) == 0 || !slices.IsSorted(d.Values) {
					t.Fatalf("dim %d values %q", i, d.Values)
				}
				for _, v := range d.Values {
					if !d.Allows(v) {
						t.Fatalf("dim %d does not allow its own value %q", i, v)
					}
				}
			case Range:
				if !d.HasMin && !d.HasMax || d.HasMin && d.HasMax && d.Min > d.Max {
					t.Fatalf("dim %d range %+v", i, d)
				}
				if d.HasMin && !d.Allows(d.Min) && (!d.HasMax || d.Min <= d.Max) {
					t.Fatalf("dim %d does not allow its min", i)
				}
			}
		}
	})
}
