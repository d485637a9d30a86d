package index

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/miniotest"
)

// TestBuildAgainstMinIO covers Build's listing path for real: pagination,
// ETags and sizes as S3 reports them, refresh after puts and deletes, keys
// outside the layout, and a query of each kind over the result.
func TestBuildAgainstMinIO(t *testing.T) {
	t.Parallel()
	s := miniotest.Start(t, "telemetry")
	ctx := context.Background()
	client := awsconf.S3(s.Config)
	key := func(reason, ch, ver, bid, date, id string) string {
		return layout.Key("v2", []string{reason, "Firefox", ch, ver, bid, date}, 2, id, "lzma")
	}
	var put []string
	for i, r := range []string{"saved_session", "idle_daily"} {
		for j, ch := range []string{"nightly", "aurora"} {
			for d := range 3 {
				k := key(r, ch, "30.0a1", fmt.Sprintf("2014022%d030201", 7+d), fmt.Sprintf("2014030%d", 7+d), fmt.Sprintf("%d%d%d", i, j, d))
				s.Put(t, "telemetry", k, []byte(strings.Repeat("x", 10+d)))
				put = append(put, k)
			}
		}
	}
	outside := []string{"v2/README.md", "v2/saved-session/Firefox/nightly/30.0a1/20140227030201.20140307.v2.log.u.lzma", "v2/saved_session/Firefox/nightly/x.txt"}
	for _, k := range outside {
		s.Put(t, "telemetry", k, []byte("not input"))
	}
	s.Put(t, "telemetry", "other/saved_session/Firefox/nightly/30.0a1/20140227030201.20140307.v2.log.u.lzma", []byte("outside the prefix"))

	db := openTemp(t, Options{})
	db.pageSize = 5
	rep, err := db.Build(ctx, client, "telemetry", "v2", layout.Telemetry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(outside)
	if rep.Listed != 15 || rep.Indexed != 12 || rep.Added != 12 || rep.Skipped != 3 || !slices.Equal(rep.SkippedKeys, outside) {
		t.Fatalf("first build %+v", rep)
	}

	check := func(name string, want []string, av ...string) {
		t.Helper()
		got, st := collect(t, db, mustFilter(t, av...))
		slices.Sort(want)
		if !slices.Equal(keys(got), want) {
			t.Errorf("%s: got %q, want %q", name, keys(got), want)
		}
		var bytes int64
		for _, o := range got {
			bytes += o.Size
			head, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("telemetry"), Key: aws.String(o.Key)})
			if err != nil {
				t.Fatal(err)
			}
			// HEAD gives whole seconds where the listing gives milliseconds.
			if o.Size != aws.ToInt64(head.ContentLength) || `"`+o.ETag+`"` != aws.ToString(head.ETag) || !o.LastModified.Truncate(time.Second).Equal(head.LastModified.UTC()) {
				t.Errorf("%s: %+v, S3 says size %d etag %s modified %v", name, o, *head.ContentLength, *head.ETag, head.LastModified)
			}
		}
		if st.Files != len(want) || st.Bytes != bytes {
			t.Errorf("%s: stats %+v", name, st)
		}
	}
	check("any", slices.Clone(put))
	check("string", []string{put[0], put[1], put[2], put[3], put[4], put[5]}, `"saved_session"`)
	check("list, sanitised", []string{put[0], put[1], put[2], put[6], put[7], put[8]}, `["saved-session", "idle-daily"]`, "", `["nightly"]`)
	check("range", []string{put[1], put[2], put[4], put[5], put[7], put[8], put[10], put[11]}, "", "", "", "", "", `{"min": "20140308"}`)
	check("range both bounds", []string{put[1], put[4], put[7], put[10]}, "", "", "", "", `{"min": "20140228", "max": "20140228999999"}`)

	// Refresh: delete two, add one, overwrite one with other content.
	for _, k := range []string{put[0], put[7]} {
		if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("telemetry"), Key: aws.String(k)}); err != nil {
			t.Fatal(err)
		}
	}
	added := key("saved_session", "beta", "29.0", "20140201000000", "20140308", "new")
	s.Put(t, "telemetry", added, []byte("new"))
	s.Put(t, "telemetry", put[3], []byte("changed content"))
	s.Put(t, "telemetry", "v2/notes.txt", []byte("another stray key"))
	rep, err = db.Build(ctx, client, "telemetry", "v2/", layout.Telemetry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Added != 1 || rep.Removed != 2 || rep.Updated != 1 || rep.Unchanged != 9 || rep.Indexed != 11 || rep.Skipped != 4 {
		t.Fatalf("refresh %+v", rep)
	}
	want := slices.DeleteFunc(slices.Clone(put), func(k string) bool { return k == put[0] || k == put[7] })
	check("after refresh", append(want, added))
	check("new channel", []string{added}, "", "", `"beta"`)
}

// TestEveryLayoutAgainstMinIO indexes one MinIO bucket per layout, with
// telemetry-server's and Hive's own example keys among generated ones,
// and queries each with a filter: the selection is what matching every
// listed key gives, and each selected key is a real object of that size.
func TestEveryLayoutAgainstMinIO(t *testing.T) {
	t.Parallel()
	buckets := map[string]string{".vN": "tel-v2", "without .vN": "tel-nov", "telemetry-2": "tel-2", "hive": "hive"}
	s := miniotest.Start(t, "tel-v2", "tel-nov", "tel-2", "hive")
	ctx := context.Background()
	client := awsconf.S3(s.Config)
	real := map[string]string{
		".vN":         "saved_session/Firefox/nightly/22.0a1/20130226031002.20131011.v2.log.e28a4032eb744f089a1828ac7399e5d8.lzma",
		"without .vN": "processed/idle_daily/Firefox/nightly/26.0a1/20130826074752.20130903.log.e0c7ff434e474c8aa745763eed408b9c.lzma",
		"telemetry-2": "telemetry-2/20150928/telemetry/4/saved_session/Firefox/nightly/44.0a1/20150927150205/20150928035224.316_ip-172-31-25-174",
		"hive":        "events/dt=2024-01-01/hour=03/part-0001.json.gz",
	}
	for _, e := range eras(t) {
		bucket := buckets[e.name]
		// Fewer objects than the unit test: MinIO puts are the cost.
		objs := append(slices.Clone(e.keys[:60]), real[e.name])
		// MinIO refuses keys with "." or ".." segments (AWS stores them;
		// the unit tests list them).
		e.outside = slices.DeleteFunc(slices.Clone(e.outside), func(k string) bool {
			return slices.ContainsFunc(strings.Split(k, "/"), func(seg string) bool { return seg == "." || seg == ".." })
		})
		for i, k := range append(slices.Clone(objs), e.outside...) {
			s.Put(t, bucket, k, []byte(strings.Repeat("x", 1+i%7)))
		}
		db := openTemp(t, Options{})
		db.pageSize = 17
		rep, err := db.Build(ctx, client, bucket, e.prefix, e.schema, nil)
		if err != nil {
			t.Fatalf("%s: %v", e.name, err)
		}
		if rep.Indexed != len(slices.Compact(slices.Sorted(slices.Values(objs)))) || rep.Skipped != len(e.outside) {
			t.Fatalf("%s: build %+v", e.name, rep)
		}
		// The real key's own values select it.
		realDims, err := e.schema.Parse(e.prefix, real[e.name])
		if err != nil {
			t.Fatalf("%s: %v", e.name, err)
		}
		exact := make([]string, len(realDims))
		for i, v := range realDims {
			exact[i] = fmt.Sprintf("%q", v)
		}
		for _, av := range append(slices.Clone(e.filters), exact) {
			f := eraFilter(t, e.schema, av)
			got, st := collect(t, db, f)
			var want []string
			for _, k := range objs {
				if dims, err := e.schema.Parse(e.prefix, k); err == nil && f.Match(dims) {
					want = append(want, k)
				}
			}
			slices.Sort(want)
			want = slices.Compact(want)
			if !slices.Equal(keys(got), want) {
				t.Errorf("%s: filter %s: got %q, want %q", e.name, f.Name, keys(got), want)
			}
			if st.Files != len(want) {
				t.Errorf("%s: filter %s: stats %+v", e.name, f.Name, st)
			}
			for _, o := range got {
				head, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(o.Key)})
				if err != nil || aws.ToInt64(head.ContentLength) != o.Size {
					t.Errorf("%s: %s: index size %d, S3 %v %v", e.name, o.Key, o.Size, head, err)
				}
			}
		}
		if got, _ := collect(t, db, eraFilter(t, e.schema, exact)); !slices.Contains(keys(got), real[e.name]) {
			t.Errorf("%s: the real key %s is not selected by its own values", e.name, real[e.name])
		}
	}
}
