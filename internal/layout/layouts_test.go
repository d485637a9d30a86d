package layout

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The example keys of each era are telemetry-server's own:
//   - .vN names: analysis/example/test/input.txt of mozilla/telemetry-server;
//   - names without .vN: telemetry/test_telemetry_schema.py there (under
//     its "processed/" prefix);
//   - the all-directory telemetry-2 layout: the dimensions of
//     mapreduce/examples/heka/filter.json and s3util.list_heka_partitions
//     there (nine directory levels, the first being the "telemetry-2"
//     prefix), with a key from the test event of Mozilla's telemetry index
//     lambda, which read that bucket;
//   - Hive-style partitions: the dt=2024-01-01/hour=03/part-0001.json.gz
//     and Spark's part-<n>-<uuid>-c000 names.
const (
	keyV2     = "saved_session/Firefox/nightly/22.0a1/20130226031002.20131011.v2.log.e28a4032eb744f089a1828ac7399e5d8.lzma"
	keyNoV    = "processed/idle_daily/Firefox/nightly/26.0a1/20130826074752.20130903.log.e0c7ff434e474c8aa745763eed408b9c.lzma"
	keyT2     = "telemetry-2/20150928/telemetry/4/saved_session/Firefox/nightly/44.0a1/20150927150205/20150928035224.316_ip-172-31-25-174"
	keyT2Main = "telemetry-2/20151001/telemetry/4/main/Firefox/nightly/44.0a1/20150924030231/20151002225145.480_ip-172-31-32-149"
	keyHive   = "dt=2024-01-01/hour=03/part-0001.json.gz"
	keySpark  = "events/dt=2024-01-02/hour=23/part-00000-9f1c5b3e-2a4d-4b7e-8c1f-3d2e1a0b9c8d-c000.json.gz"
)

func loadRepoSchema(t *testing.T, name string) Schema {
	t.Helper()
	s, err := LoadSchema(filepath.Join("..", "..", "filters", "layouts", name))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseEveryEra(t *testing.T) {
	t.Parallel()
	tel := Telemetry()
	t2 := loadRepoSchema(t, "telemetry-2_schema.json")
	hive := loadRepoSchema(t, "hive_schema.json")
	for _, tc := range []struct {
		name   string
		schema Schema
		prefix string
		key    string
		want   []string // nil: does not fit
		why    string
	}{
		{".vN name", tel, "", keyV2, []string{"saved_session", "Firefox", "nightly", "22.0a1", "20130226031002", "20131011"}, ""},
		{"name without .vN", tel, "processed", keyNoV, []string{"idle_daily", "Firefox", "nightly", "26.0a1", "20130826074752", "20130903"}, ""},
		{"without .vN or extension", tel, "", "a/b/c/d/e.f.log.u", []string{"a", "b", "c", "d", "e", "f"}, ""},
		{"without .vN, bad extension", tel, "", "a/b/c/d/e.f.log.u.txt", nil, "extension"},
		{"without log", tel, "", "a/b/c/d/e.f.u.lzma", nil, "not <appBuildID>.<submission_date>.[v<N>.]log.<id>[.<ext>]"},
		{".vN dot-dot dir", tel, "", "saved_session/../nightly/22.0a1/1.2.v2.log.u", nil, `".."`},
		{".vN dot dir", tel, "", "saved_session/./nightly/22.0a1/1.2.v2.log.u", nil, `"."`},
		{"telemetry-2", t2, "telemetry-2", keyT2, []string{"20150928", "telemetry", "4", "saved_session", "Firefox", "nightly", "44.0a1", "20150927150205"}, ""},
		{"telemetry-2 main", t2, "telemetry-2/", keyT2Main, []string{"20151001", "telemetry", "4", "main", "Firefox", "nightly", "44.0a1", "20150924030231"}, ""},
		{"telemetry-2 too shallow", t2, "telemetry-2", "telemetry-2/20150928/telemetry/4/saved_session/x", nil, "directory level"},
		{"telemetry-2 too deep", t2, "telemetry-2", strings.Replace(keyT2, "/20150928035224", "/extra/20150928035224", 1), nil, "more than 8"},
		{"telemetry-2 unsanitised", t2, "", keyT2, nil, `submissionDate "telemetry-2" has characters outside`},
		{"telemetry-2 dot-dot file", t2, "telemetry-2", "telemetry-2/20150928/telemetry/4/saved_session/Firefox/nightly/44.0a1/20150927150205/..", nil, "file name"},
		{"telemetry-2 directory marker", t2, "telemetry-2", "telemetry-2/20150928/telemetry/4/saved_session/Firefox/nightly/44.0a1/20150927150205/", nil, "file name"},
		{"hive", hive, "", keyHive, []string{"2024-01-01", "03"}, ""},
		{"spark", hive, "events", keySpark, []string{"2024-01-02", "23"}, ""},
		{"hive wrong order", hive, "", "hour=03/dt=2024-01-01/part-0001.json.gz", nil, `directory "hour=03" is not dt=<value>`},
		{"hive repeated key", hive, "", "dt=2024-01-01/dt=2024-01-02/part-0001.json.gz", nil, `repeats dt=, which is dimension 1`},
		{"hive repeated last key", hive, "", "dt=2024-01-01/hour=03/hour=04/part-0001.json.gz", nil, `repeats hour=, which is dimension 2`},
		{"hive empty value", hive, "", "dt=/hour=03/part-0001.json.gz", nil, `dt "" is empty`},
		{"hive dot-dot value", hive, "", "dt=../hour=03/part-0001.json.gz", nil, `dt ".." is ".."`},
		{"hive no key", hive, "", "2024-01-01/hour=03/part-0001.json.gz", nil, "is not dt=<value>"},
		{"hive equals in value", hive, "", "dt=2024=01/hour=03/part-0001.json.gz", nil, "outside [a-zA-Z0-9_.-]"},
		{"hive escaped value", hive, "", "dt=2024-01-01%2003/hour=03/part-0001.json.gz", nil, "outside [a-zA-Z0-9_.-]"},
		{"hive no file", hive, "", "dt=2024-01-01/hour=03/", nil, "file name"},
		{"hive success marker", hive, "", "dt=2024-01-01/hour=03/_SUCCESS", []string{"2024-01-01", "03"}, ""},
		{"hive unicode file", hive, "", "dt=2024-01-01/hour=03/pärt", nil, "file name"},
		{"hive control in file", hive, "", "dt=2024-01-01/hour=03/a\nb", nil, "file name"},
		{"hive empty directory", hive, "", "dt=2024-01-01//part", nil, `is not hour=<value>`},
		{"hive too shallow", hive, "", "dt=2024-01-01/part-0001.json.gz", nil, "1 directory level(s); the layout has 2 (dt=<dt>/hour=<hour>/<file>)"},
	} {
		got, err := tc.schema.Parse(tc.prefix, tc.key)
		if tc.want != nil {
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("%s: Parse(%q) = %q, %v; want %q", tc.name, tc.key, got, err, tc.want)
			}
			continue
		}
		var ke *KeyError
		if !errors.As(err, &ke) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s: Parse(%q) = %q, %v; want a KeyError about %q", tc.name, tc.key, got, err, tc.why)
		}
	}
}

// TestEndsAndSplitStored checks the offsets the scope and the index cut
// keys at: a key=value directory's prefix includes its "key=".
func TestEndsAndSplitStored(t *testing.T) {
	t.Parallel()
	hive := loadRepoSchema(t, "hive_schema.json")
	t2 := loadRepoSchema(t, "telemetry-2_schema.json")
	for _, tc := range []struct {
		schema Schema
		rel    string
		want   []string // rel[:end] per dimension
	}{
		{Telemetry(), keyV2, []string{"saved_session/", "saved_session/Firefox/", "saved_session/Firefox/nightly/", "saved_session/Firefox/nightly/22.0a1/",
			"saved_session/Firefox/nightly/22.0a1/20130226031002.", "saved_session/Firefox/nightly/22.0a1/20130226031002.20131011."}},
		{hive, keyHive, []string{"dt=2024-01-01/", "dt=2024-01-01/hour=03/"}},
		{t2, strings.TrimPrefix(keyT2, "telemetry-2/"), []string{"20150928/", "20150928/telemetry/", "20150928/telemetry/4/", "20150928/telemetry/4/saved_session/",
			"20150928/telemetry/4/saved_session/Firefox/", "20150928/telemetry/4/saved_session/Firefox/nightly/",
			"20150928/telemetry/4/saved_session/Firefox/nightly/44.0a1/", "20150928/telemetry/4/saved_session/Firefox/nightly/44.0a1/20150927150205/"}},
	} {
		dims, ends, err := tc.schema.Ends(tc.rel, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range ends {
			got = append(got, tc.rel[:e])
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Ends(%q) cut %q, want %q", tc.rel, got, tc.want)
		}
		if split := tc.schema.SplitStored(tc.rel, nil); !slices.Equal(split, dims) {
			t.Errorf("SplitStored(%q) = %q, ParseRel gave %q", tc.rel, split, dims)
		}
	}
}

func TestParseSchemaLayouts(t *testing.T) {
	t.Parallel()
	dim := func(name, in string) string {
		if in == "" {
			return `{"field_name":"` + name + `","allowed_values":"*"}`
		}
		return `{"field_name":"` + name + `","in":"` + in + `","allowed_values":"*"}`
	}
	doc := func(extra string, dims ...string) string {
		return `{"version":1,"dimensions":[` + strings.Join(dims, ",") + `]` + extra + `}`
	}
	for _, tc := range []struct {
		name, doc string
		layout    string // Layout() of the parsed schema
		err       string
	}{
		{"no in: the .vN layout", doc("", dim("a", ""), dim("b", ""), dim("c", "")), "", ""},
		{"explicit .vN layout is the default", doc("", dim("a", "directory"), dim("b", "file_name"), dim("c", "file_name")), "", ""},
		{"explicit telemetry file", doc(`,"file_name":"telemetry"`, dim("a", "directory"), dim("b", "file_name"), dim("c", "file_name")), "", ""},
		{"all directories", doc(`,"file_name":"any"`, dim("a", "directory"), dim("b", "directory")), "dd:any", ""},
		{"all directories default any", doc("", dim("a", "directory")), "d:any", ""},
		{"hive", doc("", dim("dt", "key=value"), dim("hour", "key=value")), "kk:any", ""},
		{"mixed", doc("", dim("src", "directory"), dim("dt", "key=value"), dim("id", "file_name")), "dkn:telemetry", ""},
		{"name then any", doc(`,"file_name":"any"`, dim("date", "file_name")), "n:any", ""},
		{"one dimension without in", doc("", dim("a", "")), "", `s.json: the schema has 1 dimension(s); the layout needs at least 2`},
		{"no dimensions with in", doc(`,"file_name":"any"`), "", `the schema has 0 dimension(s)`},
		{"in missing on one", doc("", dim("a", "directory"), dim("b", "")), "", `s.json: dimension 2 "b": "in" is missing; dimension 1 says where it lives, so every dimension must: add "in": "directory", "file_name" or "key=value"`},
		{"unknown in", doc("", dim("a", "dir")), "", `s.json: dimension 1 "a": "in" is "dir"; want "directory" (a directory level), "file_name" (a dot-separated part of the file name) or "key=value" (a directory named a=<value>)`},
		{"in a number", `{"version":1,"dimensions":[{"field_name":"a","in":3}]}`, "", `"in" is a number; want "directory", "file_name" or "key=value"`},
		{"directory after file name", doc("", dim("a", "file_name"), dim("b", "directory")), "", `s.json: dimension 2 "b": "in" is "directory" after a dimension in the file name; the file name comes last`},
		{"key=value after file name", doc("", dim("a", "file_name"), dim("b", "key=value")), "", `dimension 2 "b": "in" is "key=value" after a dimension in the file name`},
		{"key=value needs a key name", doc("", dim("d.t", "key=value")), "", `s.json: dimension 1 "d.t": a key=value directory is "<field_name>=<value>", and "d.t" has characters outside [a-zA-Z0-9_]; rename`},
		{"key=value with equals", doc("", dim("d=t", "key=value")), "", `"d=t" has characters outside [a-zA-Z0-9_]`},
		{"unknown file_name", doc(`,"file_name":"parquet"`, dim("a", "directory")), "", `s.json: "file_name" is "parquet"; want "telemetry"`},
		{"empty file_name", doc(`,"file_name":""`, dim("a", "directory")), "", `s.json: "file_name" is empty`},
		{"file_name a list", doc(`,"file_name":["any"]`, dim("a", "directory")), "", `"file_name" is a list; want "telemetry" or "any"`},
		{"unknown file_name without in", doc(`,"file_name":"x"`, dim("a", ""), dim("b", "")), "", `"file_name" is "x"`},
		{"repeat", doc("", dim("dt", "key=value"), dim("dt", "key=value")), "", `dimension 2 "dt": field_name repeats dimension 1`},
	} {
		s, err := ParseSchema("s.json", []byte(tc.doc))
		if tc.err != "" {
			var de *DocError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: ParseSchema error = %v; want a DocError containing %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := s.Layout(); got != tc.layout {
			t.Errorf("%s: Layout() = %q, want %q", tc.name, got, tc.layout)
		}
		back, err := ParseLayout(s.Fields, s.Layout())
		if err != nil || !back.Equal(s) {
			t.Errorf("%s: ParseLayout(Layout()) = %v, %v; want %v", tc.name, back, err, s)
		}
	}
}

func TestParseLayoutRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		fields []string
		text   string
		err    string
	}{
		{[]string{"a"}, "", "at least 2"},
		{[]string{"a", "b"}, "d", `want one place per dimension (2)`},
		{[]string{"a", "b"}, "dx:any", `place "x" is not d, n or k`},
		{[]string{"a", "b"}, "nd:any", "dimension 2"},
		{[]string{"a", "b"}, "dd:zip", `"file_name" is "zip"`},
		{[]string{"a", "b.c"}, "dk:any", "dimension 2"},
		{[]string{"a", "b"}, "ddd:any", "want one place per dimension"},
	} {
		if _, err := ParseLayout(tc.fields, tc.text); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseLayout(%q, %q) = %v; want an error about %q", tc.fields, tc.text, err, tc.err)
		}
	}
	if s, err := FromWire(nil, ""); err != nil || !s.Equal(Telemetry()) {
		t.Errorf("FromWire(nil) = %v, %v; want the telemetry schema", s, err)
	}
}

func TestSanitizeValueByPlace(t *testing.T) {
	t.Parallel()
	hive := loadRepoSchema(t, "hive_schema.json")
	for _, tc := range []struct {
		s    Schema
		i    int
		v    string
		want string
	}{
		{Telemetry(), 0, "saved-session", "saved_session"},
		{Telemetry(), 5, "2014-03-08", "2014_03_08"},
		{hive, 0, "2024-01-01", "2024-01-01"},
		{hive, 0, "2024-01-01 03:00", "2024-01-01_03_00"},
		{hive, 1, "é", "_"},
	} {
		if got := tc.s.SanitizeValue(tc.i, tc.v); got != tc.want {
			t.Errorf("SanitizeValue(%d, %q) = %q, want %q", tc.i, tc.v, got, tc.want)
		}
	}
	if k := hive.KeyFor("p", []string{"2024-01-01", "03"}, "part-0001.json.gz"); k != "p/dt=2024-01-01/hour=03/part-0001.json.gz" {
		t.Errorf("KeyFor = %q", k)
	}
	if got := hive.String(); got != "dt, hour (dt=<dt>/hour=<hour>/<file>)" {
		t.Errorf("String() = %q", got)
	}
	if Telemetry().String() != "reason, appName, appUpdateChannel, appVersion, appBuildID, submission_date" || Telemetry().DirLevels() != 4 || hive.DirLevels() != 2 {
		t.Errorf("telemetry String %q DirLevels %d, hive %d", Telemetry(), Telemetry().DirLevels(), hive.DirLevels())
	}
}

// FuzzParseSchema: no document makes the parser panic; an accepted schema
// survives the wire (Layout, ParseLayout), and a key built in its layout
// from storable values parses back to them, while every key Parse accepts
// has only storable values.
func FuzzParseSchema(f *testing.F) {
	for _, d := range []string{
		`{"version":1,"dimensions":[{"field_name":"a"},{"field_name":"b"}]}`,
		`{"version":1,"dimensions":[{"field_name":"dt","in":"key=value"},{"field_name":"hour","in":"key=value"}],"file_name":"any"}`,
		`{"version":1,"dimensions":[{"field_name":"s","in":"directory"},{"field_name":"d","in":"file_name"}],"file_name":"telemetry"}`,
		`{"version":1,"dimensions":[{"field_name":"x","in":"file_name"},{"field_name":"y","in":"directory"}]}`,
		`{"version":1,"dimensions":[{"field_name":"a b","in":"key=value"}]}`,
		`{"version":1,"dimensions":[],"file_name":"any"}`,
		`{"version":1,"dimensions":[{"field_name":"a","in":null}]}`,
	} {
		f.Add(d, "dt=2024-01-01/hour=03/part-0001.json.gz")
	}
	f.Add(`{"version":1,"dimensions":[{"field_name":"a"},{"field_name":"b"},{"field_name":"c"}]}`, "x/1.2.log.u.gz")
	f.Fuzz(func(t *testing.T, doc, key string) {
		s, err := ParseSchema("f.json", []byte(doc))
		if err != nil {
			var de *DocError
			if !errors.As(err, &de) || !strings.HasPrefix(err.Error(), "f.json") {
				t.Fatalf("ParseSchema(%q): error %v is not a DocError naming the file", doc, err)
			}
			return
		}
		back, err := ParseLayout(s.Fields, s.Layout())
		if err != nil || !back.Equal(s) {
			t.Fatalf("ParseLayout(Layout() %q) = %v, %v; want %v", s.Layout(), back, err, s)
		}
		if dims, err := s.Parse("", key); err == nil {
			if len(dims) != len(s.Fields) {
				t.Fatalf("Parse(%q) = %d dims for %d fields", key, len(dims), len(s.Fields))
			}
			for i, d := range dims {
				if !s.Storable(i, d) {
					t.Fatalf("Parse(%q) gave dimension %d the value %q, which is not storable there", key, i+1, d)
				}
			}
			if got := s.SplitStored(key, nil); !slices.Equal(got, dims) {
				t.Fatalf("SplitStored(%q) = %q, Parse gave %q", key, got, dims)
			}
		} else if ke := (*KeyError)(nil); !errors.As(err, &ke) {
			t.Fatalf("Parse(%q): error %v is not a *KeyError", key, err)
		}
		vals := make([]string, len(s.Fields))
		for i := range vals {
			vals[i] = "v1"
		}
		file := "part-0001.json.gz"
		if s.FileName() == TelemetryFile {
			file = "v2.log.u.gz"
		}
		k := s.KeyFor("pre", vals, file)
		if dims, err := s.Parse("pre", k); err != nil || !slices.Equal(dims, vals) {
			t.Fatalf("Parse(KeyFor(...)) = %q, %v; want %q (key %q)", dims, err, vals, k)
		}
	})
}
