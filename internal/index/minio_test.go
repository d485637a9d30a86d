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
