package server

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/taskdef"
)

// TestIndexOfHivePartitionsThroughServer: a build that sends a schema with
// key=value directories indexes Hive-style partitions, and the query
// answer names the schema and layout, which af submit passes on to the
// credentials' scope and to every mapper's payload.
func TestIndexOfHivePartitionsThroughServer(t *testing.T) {
	t.Parallel()
	m := miniotest.Start(t, "events")
	ctx := ctxT(t)
	e := newEnv(t, envOpts{s3: m.S3})
	for _, k := range []string{
		"logs/dt=2024-01-01/hour=03/part-0001.json.gz", "logs/dt=2024-01-01/hour=04/part-0001.json.gz",
		"logs/dt=2024-01-02/hour=03/part-0001.json.gz", "logs/dt=2024-01-01/_SUCCESS",
	} {
		m.Put(t, "events", k, []byte("x"))
	}
	schema, err := os.ReadFile(filepath.Join("..", "..", "filters", "layouts", "hive_schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := e.submit.IndexBuild(ctx, taskdef.IndexBuildRequest{Bucket: "events", Prefix: ptr("logs"), Schema: schema})
	if err != nil || rep.Indexed != 3 || rep.Skipped != 1 {
		t.Fatalf("build %+v %v", rep, err)
	}
	res, err := e.reader.IndexQuery(ctx, []byte(`{"version":1,"dimensions":[
		{"field_name":"dt","allowed_values":["2024-01-01"]},
		{"field_name":"hour","allowed_values":{"max":"03"}}]}`), false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 1 || res.Objects[0].Key != "logs/dt=2024-01-01/hour=03/part-0001.json.gz" || !slices.Equal(res.Schema, []string{"dt", "hour"}) || res.Layout != "kk:any" {
		t.Fatalf("query %+v", res)
	}
	stats, err := e.reader.IndexStats(ctx)
	if err != nil || stats.Schema.Layout != "kk:any" || len(stats.Dims) != 2 || len(stats.Dims[0].Values) != 2 || stats.Dims[0].Values[0].Value != "2024-01-01" {
		t.Fatalf("stats %+v %v", stats, err)
	}
}
