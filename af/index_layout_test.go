package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/af-project/af/internal/miniotest"
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

// TestIndexCommandHiveLayout: `af index build --schema` with the Hive
// schema of filters/layouts indexes key=value partitions, `af index query`
// with its example filter prints the selected keys, stats print the
// layout, and a schema file with a wrong "in" is refused naming the file,
// the dimension and the fix.
func TestIndexCommandHiveLayout(t *testing.T) {
	s := miniotest.Start(t, "events")
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AF_INDEX_DB", "")
	dir := t.TempDir()
	db := filepath.Join(dir, "idx.db")
	for _, k := range []string{
		"logs/dt=2024-01-01/hour=03/part-0001.json.gz", "logs/dt=2024-01-01/hour=12/part-0001.json.gz",
		"logs/dt=2024-01-02/hour=11/part-0001.json.gz", "logs/dt=2024-01-03/hour=05/part-0001.json.gz",
		"logs/dt=2024-01-02/_SUCCESS",
	} {
		s.Put(t, "events", k, []byte("x"))
	}
	af := func(args ...string) (string, string, int) {
		t.Helper()
		var out, errOut bytes.Buffer
		code := run(args, &out, &errOut)
		return out.String(), errOut.String(), code
	}
	schema := filepath.Join("..", "filters", "layouts", "hive_schema.json")
	out, errOut, code := af("index", "build", "--bucket", "events", "--prefix", "logs", "--schema", schema, "--db", db)
	if code != 0 || !strings.Contains(out, "4 objects (5 listed)") || !strings.Contains(out, "logs/dt=2024-01-02/_SUCCESS") {
		t.Fatalf("build: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = af("index", "query", filepath.Join("..", "filters", "layouts", "hive-morning.json"), "--db", db)
	if code != 0 || out != "logs/dt=2024-01-01/hour=03/part-0001.json.gz\t1\nlogs/dt=2024-01-02/hour=11/part-0001.json.gz\t1\n" {
		t.Fatalf("query: exit %d\n%q\n%s", code, out, errOut)
	}
	out, _, code = af("index", "stats", "--db", db)
	if code != 0 || !strings.Contains(out, "layout:  dt=<dt>/hour=<hour>/<file>") {
		t.Fatalf("stats: exit %d\n%s", code, out)
	}
	bad := filepath.Join(dir, "bad_schema.json")
	if err := os.WriteFile(bad, []byte(`{"version":1,"dimensions":[{"field_name":"dt","in":"key-value"},{"field_name":"hour","in":"key=value"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = af("index", "build", "--bucket", "events", "--schema", bad, "--db", filepath.Join(dir, "other.db"))
	if code == 0 || !strings.Contains(errOut, bad+`: dimension 1 "dt": "in" is "key-value"; want "directory"`) || !strings.Contains(errOut, `"key=value" (a directory named dt=<value>)`) {
		t.Fatalf("bad schema: exit %d\n%s", code, errOut)
	}
}
