package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/af-project/af/internal/index"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/miniotest"
)

// writeFilter writes a filter over the telemetry schema with the given
// allowed_values per dimension ("" is "*").
func writeFilter(t *testing.T, dir, name string, av ...string) string {
	t.Helper()
	var parts []string
	for i, f := range layout.Telemetry().Fields {
		v := `"*"`
		if i < len(av) && av[i] != "" {
			v = av[i]
		}
		parts = append(parts, fmt.Sprintf(`{"field_name": %q, "allowed_values": %s}`, f, v))
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(`{"version": 1, "dimensions": [`+strings.Join(parts, ",\n")+`]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestIndexCommand runs `af index build/query/stats` against a real MinIO
// through the environment a user would set. Not parallel: it sets the
// AWS_* environment.
func TestIndexCommand(t *testing.T) {
	s := miniotest.Start(t, "telemetry")
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AF_INDEX_DB", "")
	dir := t.TempDir()
	db := filepath.Join(dir, "idx.db")

	// The two real submissions' keys, and a few more.
	keys := []string{
		"saved_session/Firefox/nightly/22.0a1/20130226031002.20131011.v2.log.e28a4032eb744f089a1828ac7399e5d8.lzma",
		"saved_session/Firefox/nightly/28.0a1/20131029030201.20131029.v2.log.0ab8723b6fb3455bb34b04d97482fda2.lzma",
		layout.Key("", []string{"idle-daily", "Firefox", "nightly", "30.0a1", "20140301030201", "20140308"}, 2, "a1", "gz"),
		layout.Key("", []string{"saved-session", "Firefox", "nightly", "30.0a1", "20140227030201", "20140309"}, 2, "a2", "xz"),
		layout.Key("", []string{"saved-session", "Firefox", "aurora", "29.0a2", "20140301030201", "20140308"}, 2, "a3", ""),
		layout.Key("", []string{"saved-session", "Fennec", "nightly", "30.0a1", "20140301030201", "20140309"}, 2, "a4", "zst"),
	}
	for i, k := range keys {
		s.Put(t, "telemetry", k, bytes.Repeat([]byte("x"), 100*(i+1)))
	}
	var stray []string
	for i := range 7 {
		k := fmt.Sprintf("logs/stray-%d.txt", i)
		s.Put(t, "telemetry", k, []byte("x"))
		stray = append(stray, k)
	}

	af := func(args ...string) (string, string, int) {
		t.Helper()
		var out, errOut bytes.Buffer
		code := run(args, &out, &errOut)
		return out.String(), errOut.String(), code
	}

	// No bucket on the first build.
	if _, errOut, code := af("index", "build", "--db", db); code != 2 || !strings.Contains(errOut, "--bucket is required") {
		t.Fatalf("build without --bucket: exit %d, %s", code, errOut)
	}

	out, errOut, code := af("index", "build", "--bucket", "telemetry", "--db", db)
	if code != 0 {
		t.Fatalf("build: exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"indexed s3://telemetry/ into " + db + ": 6 objects (13 listed)",
		"added 6, updated 0, removed 0, unchanged 0",
		"skipped 7 keys outside the layout (not indexed):\n  logs/stray-0.txt\n",
		"  ... and 2 more (--list-skipped prints them all)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("build output lacks %q:\n%s", want, out)
		}
	}
	if errOut != "" {
		t.Errorf("build wrote to stderr (not a terminal: no progress line): %q", errOut)
	}

	query := func(filter string, want ...string) {
		t.Helper()
		out, errOut, code := af("index", "query", filter, "--db", db)
		if code != 0 {
			t.Fatalf("query %s: exit %d: %s", filter, code, errOut)
		}
		var lines []string
		var total int
		for _, k := range want {
			i := slices.Index(keys, k)
			lines = append(lines, fmt.Sprintf("%s\t%d", k, 100*(i+1)))
			total += 100 * (i + 1)
		}
		slices.Sort(lines)
		wantOut := strings.Join(lines, "\n")
		if len(lines) > 0 {
			wantOut += "\n"
		}
		if out != wantOut {
			t.Errorf("query %s:\n got %q\nwant %q", filepath.Base(filter), out, wantOut)
		}
		if !strings.HasPrefix(errOut, fmt.Sprintf("%d files, %s in ", len(want), humanBytes(int64(total)))) {
			t.Errorf("query %s summary: %q", filepath.Base(filter), errOut)
		}
	}
	query(writeFilter(t, dir, "all.json"), keys...)
	query(writeFilter(t, dir, "string.json", `"saved_session"`), keys[0], keys[1], keys[3], keys[4], keys[5])
	query(writeFilter(t, dir, "list.json", `["idle-daily", "saved-session"]`, `["Firefox"]`, `["nightly"]`), keys[0], keys[1], keys[2], keys[3])
	query(writeFilter(t, dir, "range.json", "", "", "", "", "", `{"min": "20131029", "max": "20140308"}`), keys[1], keys[2], keys[4])
	query(writeFilter(t, dir, "min.json", "", "", "", "", `{"min": "20140228"}`), keys[2], keys[4], keys[5])
	query(writeFilter(t, dir, "none.json", `"main"`))
	query(filepath.Join("..", "filters", "saved-session-nightly-2013.json"), keys[0], keys[1])
	query(filepath.Join("..", "filters", "Filter.json"), keys[2])

	// A bad filter names the file and the problem.
	bad := writeFilter(t, dir, "bad.json", "", "", "7")
	if _, errOut, code := af("index", "query", "--db", db, bad); code != 1 || !strings.Contains(errOut, bad+`: dimension 3 "appUpdateChannel": allowed_values has unknown kind (a number)`) {
		t.Errorf("bad filter: exit %d: %s", code, errOut)
	}

	// Refresh after deleting and adding objects; --bucket may be left out.
	if _, err := s.S3.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String("telemetry"), Key: aws.String(keys[0])}); err != nil {
		t.Fatal(err)
	}
	added := layout.Key("", []string{"saved_session", "Firefox", "beta", "28.0", "20140220030201", "20140308"}, 2, "b1", "bz2")
	s.Put(t, "telemetry", added, []byte("new"))
	out, errOut, code = af("index", "build", "--db", db, "--list-skipped")
	if code != 0 {
		t.Fatalf("refresh: exit %d: %s", code, errOut)
	}
	for _, want := range append([]string{"indexed s3://telemetry/ into " + db + ": 6 objects (13 listed)", "added 1, updated 0, removed 1, unchanged 5"}, stray...) {
		if !strings.Contains(out, want) {
			t.Errorf("refresh output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "more (--list-skipped") {
		t.Errorf("--list-skipped still truncates:\n%s", out)
	}

	out, errOut, code = af("index", "stats", "--db", db)
	if code != 0 {
		t.Fatalf("stats: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"s3://telemetry/", "objects: 6\n", "reason: 2 values", "idle_daily", "appUpdateChannel: 3 values", "submission_date: 3 values", "20140308  3 objects"} {
		if !strings.Contains(out, want) {
			t.Errorf("stats output lacks %q:\n%s", want, out)
		}
	}

	// While a writer holds the index, the commands say so at once.
	w, err := index.Open(db, index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, errOut, code = af("index", "stats", "--db", db)
	w.Close()
	if code != 1 || !strings.Contains(errOut, "is in use (is `af serve` running?") {
		t.Errorf("stats while in use: exit %d: %s", code, errOut)
	}

	// Building another bucket into the same file is refused.
	s.MustBucket(t, "other")
	if _, errOut, code := af("index", "build", "--db", db, "--bucket", "other"); code != 1 || !strings.Contains(errOut, "the index holds s3://telemetry/ and cannot also hold s3://other/") {
		t.Errorf("another bucket: exit %d: %s", code, errOut)
	}
	// So is another prefix of the same bucket (the server refuses it
	// with the same words: internal/server TestIndexBuildRefusals).
	if _, errOut, code := af("index", "build", "--db", db, "--prefix", "logs"); code != 1 || !strings.Contains(errOut, "the index holds s3://telemetry/ and cannot also hold s3://telemetry/logs/") {
		t.Errorf("another prefix: exit %d: %s", code, errOut)
	}
	// A bucket that does not exist is a clear error, not S3's.
	if _, errOut, code := af("index", "build", "--db", filepath.Join(dir, "new.db"), "--bucket", "no-such-bucket"); code != 1 || !strings.Contains(errOut, `bucket "no-such-bucket" does not exist`) {
		t.Errorf("missing bucket: exit %d: %s", code, errOut)
	}
	if _, errOut, code := af("index", "frob"); code != 2 || !strings.Contains(errOut, `unknown subcommand "frob"`) {
		t.Errorf("unknown subcommand: exit %d: %s", code, errOut)
	}
	if _, errOut, code := af("index", "query", "--db", filepath.Join(dir, "missing.db"), bad); code != 2 || !strings.Contains(errOut, "af index build") {
		t.Errorf("missing index: exit %d: %s", code, errOut)
	}
}

func TestBuildProgressLine(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if p := newBuildProgressLine(&b); p.on {
		t.Fatal("a buffer is not a terminal")
	}
	p := &buildProgressLine{w: &b, on: true}
	p.update(index.BuildProgress{Listed: 1000, Elapsed: 100 * time.Millisecond}) // too soon
	p.update(index.BuildProgress{Listed: 250000, Skipped: 3, Elapsed: 500 * time.Millisecond})
	p.update(index.BuildProgress{Listed: 251000, Elapsed: 600 * time.Millisecond}) // too soon after
	p.update(index.BuildProgress{Listed: 1200000, Skipped: 3, Elapsed: 2 * time.Second})
	p.done()
	want := "\rlisted 250,000 objects (500,000/s), 3 outside the layout" +
		"\rlisted 1,200,000 objects (600,000/s), 3 outside the layout" +
		"\r" + strings.Repeat(" ", 58) + "\r"
	if b.String() != want {
		t.Errorf("progress output\n got %q\nwant %q", b.String(), want)
	}
}
