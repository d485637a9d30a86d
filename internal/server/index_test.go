package server

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/af-project/af/internal/index"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
)

func filterDoc(channel string) []byte {
	return []byte(`{"version":1,"dimensions":[
		{"field_name":"reason","allowed_values":"*"},
		{"field_name":"appName","allowed_values":"Firefox"},
		{"field_name":"appUpdateChannel","allowed_values":["` + channel + `"]},
		{"field_name":"appVersion","allowed_values":"*"},
		{"field_name":"appBuildID","allowed_values":"*"},
		{"field_name":"submission_date","allowed_values":{"min":"20140301","max":"20140307"}}]}`)
}

func TestIndexRoutesBuildAndQueryThroughServer(t *testing.T) {
	t.Parallel()
	m := miniotest.Start(t, "telemetry")
	ctx := ctxT(t)
	e := newEnv(t, envOpts{s3: m.S3})

	// Before any build: a 404 that says what to run.
	if _, err := e.reader.IndexQuery(ctx, filterDoc("nightly"), false); !errors.Is(err, queueclient.ErrNotFound) || !strings.Contains(err.Error(), "af index build") {
		t.Fatalf("query before build: %v", err)
	}

	// 700 objects: enough that the streamed answer spans several buffer
	// flushes.
	var want []string
	var wantBytes int64
	type obj struct {
		key  string
		size int
	}
	var objs []obj
	for i := range 700 {
		channel := []string{"nightly", "release"}[i%2]
		date := fmt.Sprintf("201403%02d", 1+i%10)
		dims := []string{"saved-session", "Firefox", channel, "30.0a1", fmt.Sprintf("2014022%d", i%10), date}
		key := layout.Key("data", dims, 2, fmt.Sprintf("%08x-0000-0000-0000-%012d", i, i), "lzma")
		size := 10 + i
		objs = append(objs, obj{key, size})
		if channel == "nightly" && date <= "20140307" {
			want = append(want, key)
			wantBytes += int64(size)
		}
	}
	objs = append(objs, obj{"data/not-in-the-layout.txt", 3})
	var wg sync.WaitGroup
	ch := make(chan obj)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range ch {
				m.Put(t, "telemetry", o.key, bytes.Repeat([]byte("x"), o.size))
			}
		}()
	}
	for _, o := range objs {
		ch <- o
	}
	close(ch)
	wg.Wait()

	// Building needs the submit role; the first build names the bucket.
	if _, err := e.work.IndexBuild(ctx, taskdef.IndexBuildRequest{Bucket: "telemetry", Prefix: ptr("data")}); !errors.Is(err, queueclient.ErrForbidden) {
		t.Fatalf("build with a work token: %v", err)
	}
	if _, err := e.submit.IndexBuild(ctx, taskdef.IndexBuildRequest{}); !errors.Is(err, queueclient.ErrInvalid) {
		t.Fatalf("first build without a bucket: %v", err)
	}
	rep, err := e.submit.IndexBuild(ctx, taskdef.IndexBuildRequest{Bucket: "telemetry", Prefix: ptr("data")})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Listed != 701 || rep.Indexed != 700 || rep.Skipped != 1 || rep.Added != 700 || rep.Bucket != "telemetry" ||
		len(rep.SkippedKeys) != 1 || rep.SkippedKeys[0] != "data/not-in-the-layout.txt" {
		t.Fatalf("build report %+v", rep)
	}

	res, err := e.reader.IndexQuery(ctx, filterDoc("nightly"), false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range res.Objects {
		got = append(got, o.Key)
	}
	sort.Strings(want)
	sort.Strings(got)
	if res.Bucket != "telemetry" || res.Prefix != "data/" || res.Files != int64(len(want)) || res.Bytes != wantBytes || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("query: bucket %q prefix %q files %d bytes %d (%d keys), want %d files %d bytes", res.Bucket, res.Prefix, res.Files, res.Bytes, len(got), len(want), wantBytes)
	}

	// Asked for, the ETags come in the objects' order and are S3's.
	pinned, err := e.reader.IndexQuery(ctx, filterDoc("nightly"), true)
	if err != nil || len(pinned.ETags) != len(pinned.Objects) || len(res.ETags) != 0 {
		t.Fatalf("query with etags: %d etags for %d objects (%d without asking), %v", len(pinned.ETags), len(pinned.Objects), len(res.ETags), err)
	}
	for i, o := range pinned.Objects[:3] {
		head, err := m.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("telemetry"), Key: aws.String(o.Key)})
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Trim(aws.ToString(head.ETag), `"`); pinned.ETags[i] != want || want == "" {
			t.Errorf("%s: etag %q, S3 says %q", o.Key, pinned.ETags[i], want)
		}
	}

	// A refresh after a delete, with no source named: the index's own.
	if _, err := m.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("telemetry"), Key: aws.String(want[0])}); err != nil {
		t.Fatal(err)
	}
	rep, err = e.admin.IndexBuild(ctx, taskdef.IndexBuildRequest{})
	if err != nil || rep.Listed != 700 || rep.Removed != 1 {
		t.Fatalf("refresh %+v %v", rep, err)
	}
	res, err = e.reader.IndexQuery(ctx, filterDoc("nightly"), false)
	if err != nil || res.Files != int64(len(want)-1) {
		t.Fatalf("after refresh: %d files %v", res.Files, err)
	}

	// A bad filter is a 400 that says where.
	_, err = e.reader.IndexQuery(ctx, []byte(`{"version":1,"dimensions":[{"field_name":"appName","allowed_values":"*"}]}`), false)
	var ae *queueclient.APIError
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Code != "InvalidFilter" || !strings.Contains(ae.Message, "appName") {
		t.Fatalf("bad filter: %v", err)
	}

	stats, err := e.reader.IndexStats(ctx)
	if err != nil || stats.Objects != 699 || len(stats.Dims) != 6 {
		t.Fatalf("stats %+v %v", stats, err)
	}

	// The server holds the index file: another open of it is refused as
	// in use, which is why `af index build` goes through this route.
	other, err := index.Open(filepath.Join(e.cfg.Data, "index.db"), index.Options{Timeout: 50 * time.Millisecond})
	if err == nil {
		other.Close()
		t.Fatal("a second open of the served index succeeded")
	}
	if !errors.Is(err, index.ErrInUse) {
		t.Fatalf("second open: %v, want ErrInUse", err)
	}
}
