package layout

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSanitize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"saved-session", "saved_session"},
		{"Firefox", "Firefox"},
		{"22.0a1", "22.0a1"},
		{"a/b.c_d", "a/b.c_d"},
		{"a b*c", "a_b_c"},
		{"é", "_"},
		{"", ""},
		{"\xff", "_"},
	} {
		if got := Sanitize(tc.in); got != tc.want {
			t.Errorf("Sanitize(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !IsSanitized(Sanitize(tc.in)) {
			t.Errorf("Sanitize(%q) is not sanitised", tc.in)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	s := Telemetry()
	for _, tc := range []struct {
		name, prefix, key string
		want              []string // nil: does not fit
		why               string   // part of the reason when it does not fit
	}{
		{"real key", "", "saved_session/Firefox/nightly/22.0a1/20130226031002.20131011.v2.log.e28a4032eb744f089a1828ac7399e5d8.lzma",
			[]string{"saved_session", "Firefox", "nightly", "22.0a1", "20130226031002", "20131011"}, ""},
		{"under prefix", "data", "data/idle_daily/Fennec/beta/30.0/20140301000000.20140302.v3.log.abc-def.gz",
			[]string{"idle_daily", "Fennec", "beta", "30.0", "20140301000000", "20140302"}, ""},
		{"prefix with slash", "data/", "data/a/b/c/d/e.f.v1.log.u", []string{"a", "b", "c", "d", "e", "f"}, ""},
		{"no extension", "", "a/b/c/d/e.f.v1.log.u", []string{"a", "b", "c", "d", "e", "f"}, ""},
		{"every compression", "", "a/b/c/d/e.f.v1.log.u.zst", []string{"a", "b", "c", "d", "e", "f"}, ""},
		{"outside prefix", "data", "other/a/b/c/d/e.f.v1.log.u", nil, "not under the prefix"},
		{"too few levels", "", "a/b/c/e.f.v1.log.u", nil, "directory level"},
		{"too many levels", "", "a/b/c/d/x/e.f.v1.log.u", nil, "more than 4"},
		{"directory marker", "", "a/b/c/d/", nil, "not <appBuildID>"},
		{"unsanitised dir", "", "saved-session/b/c/d/e.f.v1.log.u", nil, "outside"},
		{"empty dir", "", "a//c/d/e.f.v1.log.u", nil, "empty"},
		{"bad version", "", "a/b/c/d/e.f.2.log.u", nil, "not <appBuildID>"},
		{"no log", "", "a/b/c/d/e.f.v2.txt.u", nil, "not <appBuildID>"},
		{"unknown ext", "", "a/b/c/d/e.f.v2.log.u.txt", nil, "extension"},
		{"too many parts", "", "a/b/c/d/e.f.v2.log.u.gz.gz", nil, "not <appBuildID>"},
		{"empty build id", "", "a/b/c/d/.f.v2.log.u.gz", nil, "appBuildID"},
		{"bad char in date", "", "a/b/c/d/e.f-g.v2.log.u.gz", nil, "submission_date"},
		{"readme", "", "README.md", nil, "directory level"},
	} {
		got, err := s.Parse(tc.prefix, tc.key)
		if tc.want != nil {
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("%s: Parse(%q) = %q, %v; want %q", tc.name, tc.key, got, err, tc.want)
			}
			continue
		}
		var ke *KeyError
		if !errors.As(err, &ke) || ke.Key != tc.key || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s: Parse(%q) = %q, %v; want a KeyError about %q", tc.name, tc.key, got, err, tc.why)
		}
	}
}

func TestKeyRoundTrip(t *testing.T) {
	t.Parallel()
	s := Telemetry()
	dims := []string{"saved-session", "Firefox", "nightly", "28.0a1", "20131029030201", "20131029"}
	for _, ext := range []string{"", "gz", "xz", "lzma", "zst", "bz2"} {
		k := Key("pre", dims, 2, "0ab8723b6fb3455bb34b04d97482fda2", ext)
		got, err := s.Parse("pre", k)
		want := slices.Clone(dims)
		want[0] = "saved_session"
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Parse(Key(...%q)) = %q, %v; want %q", ext, got, err, want)
		}
		if c := CompressionOf(k); string(c) != ext {
			t.Errorf("CompressionOf(%q) = %q, want %q", k, c, ext)
		}
	}
}

func TestCompressionOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		key  string
		want Compression
		name string
	}{
		{"a/b.v1.log.u.gz", Gzip, "gzip"},
		{"a/b.v1.log.u.xz", Xz, "xz"},
		{"a/b.v1.log.u.lzma", Lzma, "lzma"},
		{"a/b.v1.log.u.zst", Zstd, "zstd"},
		{"a/b.v1.log.u.bz2", Bzip2, "bzip2"},
		{"a/b.v1.log.u", None, "none"},
		{"a/b.v1.log.u.txt", None, "none"},
		{"a.gz/b", None, "none"},
		{"plain", None, "none"},
	} {
		got := CompressionOf(tc.key)
		if got != tc.want || got.String() != tc.name {
			t.Errorf("CompressionOf(%q) = %q (%s), want %q (%s)", tc.key, got, got, tc.want, tc.name)
		}
	}
}

func TestParseSchema(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, doc string
		want      []string
		err       string
	}{
		{"telemetry", `{"version":1,"dimensions":[{"field_name":"a","allowed_values":"*"},{"field_name":"b","allowed_values":["x"]}]}`, []string{"a", "b"}, ""},
		{"not json", "{\n  \"version\": 1,\n  ]", nil, "s.json:3:3: not valid JSON"},
		{"truncated", `{"version": 1, "dimensions": [`, nil, "s.json:1:31: not valid JSON: the document ends too early"},
		{"empty", "  \n", nil, "s.json: the file is empty"},
		{"list", `[1]`, nil, "s.json:1:2: the document is a list; want a JSON object"},
		{"string version", `{"version":"1"}`, nil, `s.json:1:15: "version" is a string; want a whole number`},
		{"no version", `{"dimensions":[{"field_name":"a"},{"field_name":"b"}]}`, nil, `"version" is missing`},
		{"version 2", `{"version":2,"dimensions":[{"field_name":"a"},{"field_name":"b"}]}`, nil, `"version" is 2; af understands version 1 only`},
		{"no dimensions", `{"version":1}`, nil, `"dimensions" is missing`},
		{"dimensions object", `{"version":1,"dimensions":{}}`, nil, `"dimensions" is an object; want a list`},
		{"dimension number", `{"version":1,"dimensions":[5]}`, nil, `an entry of "dimensions" is a number`},
		{"one dimension", `{"version":1,"dimensions":[{"field_name":"a"}]}`, nil, "has 1 dimension(s); the layout needs at least 2"},
		{"no field name", `{"version":1,"dimensions":[{"field_name":"a"},{"allowed_values":"*"}]}`, nil, `s.json: dimension 2: "field_name" is missing`},
		{"field name number", `{"version":1,"dimensions":[{"field_name":7}]}`, nil, `"field_name" is a number; want a string`},
		{"repeat", `{"version":1,"dimensions":[{"field_name":"a"},{"field_name":"a"}]}`, nil, `dimension 2 "a": field_name repeats dimension 1`},
	} {
		s, err := ParseSchema("s.json", []byte(tc.doc))
		if tc.err == "" {
			if err != nil || !slices.Equal(s.Fields, tc.want) {
				t.Errorf("%s: ParseSchema = %v, %v; want %q", tc.name, s, err, tc.want)
			}
			continue
		}
		var de *DocError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: ParseSchema error = %v; want a DocError containing %q", tc.name, err, tc.err)
		}
	}
}

func TestLoadSchemaFile(t *testing.T) {
	t.Parallel()
	s, err := LoadSchema(filepath.Join("..", "..", DefaultSchemaPath))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Equal(Telemetry()) {
		t.Errorf("filters/telemetry_schema.json = %v, want %v", s, Telemetry())
	}
	_, err = LoadSchema(filepath.Join(t.TempDir(), "missing.json"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "--schema") {
		t.Errorf("missing schema: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, k := range []string{
		"saved_session/Firefox/nightly/22.0a1/20130226031002.20131011.v2.log.e28a4032eb744f089a1828ac7399e5d8.lzma",
		"a/b/c/d/e.f.v1.log.u", "a//c/d/e.f.v1.log.u", "a/b/c/d/e.f.v1.log.u.txt", "x", "",
		"processed/idle_daily/Firefox/nightly/26.0a1/20130826074752.20130903.log.e0c7ff434e474c8aa745763eed408b9c.lzma", "a/../c/d/e.f.log.u",
	} {
		f.Add(k)
	}
	s := Telemetry()
	f.Fuzz(func(t *testing.T, key string) {
		dims, err := s.Parse("", key)
		if err != nil {
			var ke *KeyError
			if !errors.As(err, &ke) {
				t.Fatalf("Parse(%q): error %v is not a *KeyError", key, err)
			}
			return
		}
		if len(dims) != len(s.Fields) {
			t.Fatalf("Parse(%q) = %d dims", key, len(dims))
		}
		for _, d := range dims {
			if d == "" || !IsSanitized(d) || strings.ContainsRune(d, '/') {
				t.Fatalf("Parse(%q) gave value %q", key, d)
			}
		}
		// Every .vN key that fits is rebuilt by Key from its parts.
		base := key[strings.LastIndexByte(key, '/')+1:]
		parts := strings.Split(base, ".")
		if !isVersion(parts[2]) {
			if parts[2] != "log" || len(parts) > 5 {
				t.Fatalf("Parse(%q) accepted a name that is neither .vN nor .log", key)
			}
			return
		}
		var v int
		for _, c := range parts[2][1:] {
			v = v*10 + int(c-'0')
		}
		ext := ""
		if len(parts) == 6 {
			ext = parts[5]
		}
		if len(parts[2]) < 10 && parts[2][1] != '0' {
			if k := Key("", dims, v, parts[4], ext); k != key {
				t.Fatalf("Key(Parse(%q)) = %q", key, k)
			}
		}
	})
}
