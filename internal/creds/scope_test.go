package creds

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/af-project/af/internal/layout"
)

// key makes a telemetry key: reason/app/channel/version/buildid.date.v2.log.uuid.gz.
func key(prefix, reason, app, channel, version, build, date, uuid string) string {
	return layout.Key(prefix, []string{reason, app, channel, version, build, date}, 2, uuid, "gz")
}

func TestScopeFor(t *testing.T) {
	t.Parallel()
	tel := layout.Telemetry()
	// manyDays are files of one build on 60 days: 60 leaves of ~90
	// characters do not fit 2,048, their one build prefix does.
	var manyDays []string
	for d := range 60 {
		manyDays = append(manyDays, key("v2", "saved_session", "Firefox", "release", "40.0", "20150101000000", fmt.Sprintf("201502%02d", d), "u"))
	}
	// manyBuilds are 60 builds of one version, each on one day.
	var manyBuilds []string
	for b := range 60 {
		manyBuilds = append(manyBuilds, key("v2", "saved_session", "Firefox", "release", "40.0", fmt.Sprintf("201501010000%02d", b), "20150105", "u"))
	}
	// manyVersions spread over 60 versions of two channels.
	var manyVersions []string
	for v := range 60 {
		ch := []string{"release", "beta"}[v%2]
		manyVersions = append(manyVersions, key("v2", "saved_session", "Firefox", ch, fmt.Sprintf("%d.0", v), "20150101000000", "20150105", "u"))
	}
	tests := []struct {
		name      string
		prefix    string
		keys      []string
		want      []string
		dimension string
		widened   bool
		narrowest int
	}{
		{"one file", "v2",
			[]string{key("v2", "saved_session", "Firefox", "release", "40.0", "20150101000000", "20150105", "a")},
			[]string{"v2/saved_session/Firefox/release/40.0/20150101000000.20150105."}, "submission_date", false, 1},
		{"one file, prefix with slash", "v2/",
			[]string{key("v2/", "saved_session", "Firefox", "release", "40.0", "20150101000000", "20150105", "a")},
			[]string{"v2/saved_session/Firefox/release/40.0/20150101000000.20150105."}, "submission_date", false, 1},
		{"no index prefix", "",
			[]string{key("", "saved_session", "Firefox", "release", "40.0", "20150101000000", "20150105", "a"), key("", "idle_daily", "Fennec", "beta", "41.0", "20150102000000", "20150106", "b")},
			[]string{"idle_daily/Fennec/beta/41.0/20150102000000.20150106.", "saved_session/Firefox/release/40.0/20150101000000.20150105."}, "submission_date", false, 2},
		{"files sharing every dimension make one prefix", "v2",
			[]string{
				key("v2", "saved_session", "Firefox", "release", "40.0", "20150101000000", "20150105", "a"),
				key("v2", "saved_session", "Firefox", "release", "40.0", "20150101000000", "20150105", "b"),
			},
			[]string{"v2/saved_session/Firefox/release/40.0/20150101000000.20150105."}, "submission_date", false, 1},
		{"a whole dimension kept: every channel of one version, two dates", "v2",
			[]string{
				key("v2", "saved_session", "Firefox", "release", "40.0", "20150101000000", "20150105", "a"),
				key("v2", "saved_session", "Firefox", "beta", "40.0", "20150101000000", "20150105", "b"),
				key("v2", "saved_session", "Firefox", "nightly", "40.0", "20150101000000", "20150106", "c"),
			},
			[]string{
				"v2/saved_session/Firefox/beta/40.0/20150101000000.20150105.",
				"v2/saved_session/Firefox/nightly/40.0/20150101000000.20150106.",
				"v2/saved_session/Firefox/release/40.0/20150101000000.20150105.",
			}, "submission_date", false, 3},
		{"file-name dims constrained: one build, one date of a directory of many", "v2",
			[]string{
				key("v2", "saved_session", "Firefox", "release", "40.0", "20150101000000", "20150105", "a"),
				key("v2", "saved_session", "Firefox", "release", "40.0", "20150101000000", "20150106", "b"),
			},
			[]string{
				"v2/saved_session/Firefox/release/40.0/20150101000000.20150105.",
				"v2/saved_session/Firefox/release/40.0/20150101000000.20150106.",
			}, "submission_date", false, 2},
		{"widened to the build: 60 days", "v2", manyDays,
			[]string{"v2/saved_session/Firefox/release/40.0/20150101000000."}, "appBuildID", true, 60},
		{"widened to the version directory: 60 builds", "v2", manyBuilds,
			[]string{"v2/saved_session/Firefox/release/40.0/"}, "appVersion", true, 60},
		{"widened to the channel: 60 versions", "v2", manyVersions,
			[]string{"v2/saved_session/Firefox/beta/", "v2/saved_session/Firefox/release/"}, "appUpdateChannel", true, 60},
		{"a key outside the layout is granted exactly", "v2",
			[]string{"v2/odd/file.txt", key("v2", "saved_session", "Firefox", "release", "40.0", "20150101000000", "20150105", "a")},
			[]string{"v2/odd/file.txt", "v2/saved_session/Firefox/release/40.0/20150101000000.20150105."}, "submission_date", false, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := ScopeFor("telemetry", tc.prefix, tel, tc.keys)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Prefixes, tc.want) {
				t.Errorf("prefixes\n%q\nwant\n%q", s.Prefixes, tc.want)
			}
			if s.Dimension != tc.dimension || s.Widened != tc.widened || s.Narrowest != tc.narrowest {
				t.Errorf("level %d %q widened %v narrowest %d; want %q %v %d", s.Level, s.Dimension, s.Widened, s.Narrowest, tc.dimension, tc.widened, tc.narrowest)
			}
			policy, err := SessionPolicyFor(s.Bucket, s.Prefixes)
			if err != nil {
				t.Fatal(err)
			}
			if len(policy) > MaxSessionPolicy {
				t.Errorf("policy is %d characters", len(policy))
			}
			// Every selected key is covered, so the worker's check agrees.
			c := Credentials{GraphID: "g", Image: "af/os-count", Bucket: "telemetry", Prefix: tc.prefix, Prefixes: s.Prefixes}
			if err := c.Permits(Use{GraphID: "g", Image: "af/os-count", Bucket: "telemetry", Prefix: tc.prefix, Keys: tc.keys}); err != nil {
				t.Errorf("scope does not cover its own keys: %v", err)
			}
			d := s.Describe()
			if tc.widened != strings.Contains(d, fmt.Sprintf("widened from %d", tc.narrowest)) || !strings.Contains(d, tc.dimension+" level") {
				t.Errorf("describe %q", d)
			}
		})
	}
}

func TestScopeForWidensToThePrefix(t *testing.T) {
	t.Parallel()
	// 40 reasons: even one prefix per reason is over the limit.
	var keys []string
	for r := range 40 {
		keys = append(keys, key("v2", fmt.Sprintf("reason_with_a_long_name_%02d", r), "Firefox", "release", "40.0", "20150101000000", "20150105", "a"))
	}
	s, err := ScopeFor("telemetry", "v2", layout.Telemetry(), keys)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Prefixes, []string{"v2/"}) || s.Level != 0 || !s.Widened || s.Narrowest != 40 {
		t.Fatalf("scope %+v", s)
	}
	if d := s.Describe(); !strings.Contains(d, "every key under s3://telemetry/v2") || !strings.Contains(d, "widened from 40") {
		t.Fatalf("describe %q", d)
	}
}

func TestScopeForRefuses(t *testing.T) {
	t.Parallel()
	tel := layout.Telemetry()
	good := key("v2", "saved_session", "Firefox", "release", "40.0", "20150101000000", "20150105", "a")
	tests := []struct {
		name, bucket, prefix string
		keys                 []string
		want                 string
	}{
		{"no keys", "telemetry", "v2", nil, "no input keys"},
		{"key outside the prefix", "telemetry", "v2", []string{"v3/x"}, "not under the index's prefix"},
		{"lookalike prefix", "telemetry", "v2", []string{"v2x/a"}, "not under the index's prefix"},
		{"wildcard in a key", "telemetry", "v2", []string{"v2/a*"}, "wildcard"},
		{"bad bucket", "Tele", "v2", []string{good}, "not a valid S3 bucket"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := ScopeFor(tc.bucket, tc.prefix, tel, tc.keys); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSessionPolicyForGrantsOnlyGetObject(t *testing.T) {
	t.Parallel()
	p, err := SessionPolicyFor("telemetry", []string{"v2/a/", "v2/b<c."})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Statement []struct {
			Effect    string
			Action    []string
			Resource  []string
			Condition any
		}
	}
	if err := json.Unmarshal([]byte(p), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Statement) != 1 || doc.Statement[0].Effect != "Allow" || !slices.Equal(doc.Statement[0].Action, []string{"s3:GetObject"}) ||
		!slices.Equal(doc.Statement[0].Resource, []string{"arn:aws:s3:::telemetry/v2/a/*", "arn:aws:s3:::telemetry/v2/b<c.*"}) {
		t.Fatalf("policy %s", p)
	}
	if strings.Contains(p, `\u003c`) {
		t.Fatalf("policy HTML-escapes, wasting characters: %s", p)
	}
	if _, err := SessionPolicyFor("telemetry", nil); err == nil {
		t.Fatal("policy with no prefixes")
	}
}

func TestPermits(t *testing.T) {
	t.Parallel()
	c := Credentials{
		GraphID: "graphA", Image: "af/os-count", Bucket: "telemetry", Prefix: "v2",
		Prefixes: []string{"v2/saved_session/Firefox/release/40.0/20150101000000.20150105.", "v2/saved_session/Firefox/beta/"},
	}
	in := "v2/saved_session/Firefox/release/40.0/20150101000000.20150105.v2.log.a.gz"
	use := func(graph, image, bucket, prefix string, keys ...string) Use {
		return Use{GraphID: graph, Image: image, Bucket: bucket, Prefix: prefix, Keys: keys}
	}
	const img = "af/os-count"
	tests := []struct {
		name string
		use  Use
		want []string // nil: permitted
	}{
		{"own graph and keys", use("graphA", img, "telemetry", "v2", in, "v2/saved_session/Firefox/beta/41.0/x.y.v2.log.b.gz"), nil},
		{"no inputs", use("graphA", img, "telemetry", "v2"), nil},
		{"copied into another graph", use("graphB", img, "telemetry", "v2", in), []string{"minted for graph graphA", "graph graphB", "resubmit"}},
		{"other image", use("graphA", "af/os-count-go", "telemetry", "v2", in),
			[]string{"minted for image af/os-count,", "this task runs image af/os-count-go", "submit it with af submit"}},
		{"same image, other tag", use("graphA", "af/os-count:evil", "telemetry", "v2", in), []string{"image af/os-count,", "image af/os-count:evil"}},
		{"no image", use("graphA", "", "telemetry", "v2", in), []string{"minted for image af/os-count"}},
		{"other bucket", use("graphA", img, "private", "v2", in), []string{"s3://telemetry/v2", "s3://private/v2"}},
		{"other prefix", use("graphA", img, "telemetry", "", in), []string{"s3://telemetry/v2", "s3://telemetry/"}},
		{"sibling dimension value", use("graphA", img, "telemetry", "v2", in, "v2/saved_session/Firefox/nightly/40.0/20150101000000.20150105.v2.log.a.gz"),
			[]string{`input "v2/saved_session/Firefox/nightly/`, "graph graphA", "none of the 2 key prefixes"}},
		{"same directory, other date", use("graphA", img, "telemetry", "v2", "v2/saved_session/Firefox/release/40.0/20150101000000.20150106.v2.log.a.gz"), []string{"20150106"}},
		{"longer build id sharing the start", use("graphA", img, "telemetry", "v2", "v2/saved_session/Firefox/release/40.0/201501010000001.20150105.v2.log.a.gz"), []string{"201501010000001"}},
		{"path climbing", use("graphA", img, "telemetry", "v2", "v2/saved_session/Firefox/beta/../../Fennec/x"), []string{`"." or ".." segment`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := c.Permits(tc.use)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrOutOfScope) {
				t.Fatalf("err %v, want ErrOutOfScope", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if err := (Credentials{Bucket: "telemetry", Prefixes: []string{"v2/"}}).Permits(Use{Bucket: "telemetry"}); !errors.Is(err, ErrOutOfScope) {
		t.Fatalf("unbound credentials permitted: %v", err)
	}
	// Credentials naming no image (only a hand-built value can: Open
	// refuses such an envelope) fit no task, even one naming no image.
	if err := (Credentials{GraphID: "g", Bucket: "telemetry", Prefixes: []string{"v2/"}}).Permits(Use{GraphID: "g", Bucket: "telemetry"}); !errors.Is(err, ErrOutOfScope) || !strings.Contains(err.Error(), "no job image") {
		t.Fatalf("credentials bound to no image permitted: %v", err)
	}
}

// BenchmarkScopeFor150k is af submit's benchmark selection: 150,000 files.
func BenchmarkScopeFor150k(b *testing.B) {
	var keys []string
	for i := range 150000 {
		keys = append(keys, key("v2", "saved_session", "Firefox", []string{"release", "beta", "nightly"}[i%3], fmt.Sprintf("%d.0", i%40),
			fmt.Sprintf("2015%04d000000", i%300), fmt.Sprintf("2015%04d", i%90), fmt.Sprint(i)))
	}
	b.ResetTimer()
	for range b.N {
		s, err := ScopeFor("telemetry", "v2", layout.Telemetry(), keys)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(s.Prefixes)), "prefixes")
	}
}
