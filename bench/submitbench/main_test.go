package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/af-project/af/internal/layout"
)

// The synthetic listing must look like S3's: keys in the layout, sorted,
// unique, paged through continuation tokens, so the index it fills is the
// one a real build would make.
func TestListingPagesSortedLayoutKeys(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 999, 1000, 2500} {
		l := newListing(n)
		var keys []string
		in := &s3.ListObjectsV2Input{Bucket: aws.String(inputBucket)}
		for {
			out, err := l.ListObjectsV2(context.Background(), in)
			if err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			for _, o := range out.Contents {
				keys = append(keys, *o.Key)
				if *o.Size < 64<<10 || *o.Size >= 6<<20 {
					t.Errorf("n=%d: %s size %d outside 64 KiB–6 MiB", n, *o.Key, *o.Size)
				}
			}
			if !aws.ToBool(out.IsTruncated) {
				break
			}
			in.ContinuationToken = out.NextContinuationToken
		}
		if len(keys) != n {
			t.Fatalf("n=%d: listed %d keys", n, len(keys))
		}
		for i, k := range keys {
			if _, err := layout.Telemetry().Parse("", k); err != nil {
				t.Errorf("n=%d: %v", n, err)
			}
			if i > 0 && keys[i-1] >= k {
				t.Errorf("n=%d: keys out of order or repeated: %q then %q", n, keys[i-1], k)
			}
		}
	}
}

func TestListingRefusesOtherSources(t *testing.T) {
	t.Parallel()
	l := newListing(10)
	for _, in := range []*s3.ListObjectsV2Input{
		{Bucket: aws.String("other")},
		{Bucket: aws.String(inputBucket), Prefix: aws.String("x/")},
		{Bucket: aws.String(inputBucket), ContinuationToken: aws.String("nope")},
		{Bucket: aws.String(inputBucket), ContinuationToken: aws.String("11")},
	} {
		if _, err := l.ListObjectsV2(context.Background(), in); err == nil {
			t.Errorf("%+v: listed, want an error", in)
		}
	}
}

func TestParsePosted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		out     string
		want    posted
		wantErr bool
	}{
		{
			out:  "graph qMPFKcOWmt8jSTEaxeKMug posted: 3000 mapper tasks + 1 reducer over 150000 files, 450.2 GiB from s3://telemetry/ (in 1.234s)\nmonitor: http://x/graphs/qMPFKcOWmt8jSTEaxeKMug\n",
			want: posted{graphID: "qMPFKcOWmt8jSTEaxeKMug", mappers: 3000, files: 150000, own: "1.234s"},
		},
		{out: "af submit: the filter selects no files\n", wantErr: true},
		{out: "", wantErr: true},
	} {
		got, err := parsePosted(tc.out)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parsePosted(%q) = %+v, %v; want %+v, error %v", tc.out, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{ms(5, 1, 3, 2, 4), 50, 3 * time.Millisecond},
		{ms(5, 1, 3, 2, 4), 99, 5 * time.Millisecond},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{ms(20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 99, 20 * time.Millisecond},
		{ms(20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 50, 10 * time.Millisecond},
	} {
		if got := percentile(tc.in, tc.p); got != tc.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tc.in, tc.p, got, tc.want)
		}
	}
}

func TestProcessCPU(t *testing.T) {
	t.Parallel()
	// Burn some CPU so this process has used at least one tick.
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = strings.Repeat("x", x%64)
	}
	d, err := processCPU(os.Getpid())
	if err != nil || d <= 0 {
		t.Fatalf("processCPU(self) = %v, %v; want > 0", d, err)
	}
	if _, err := processCPU(1 << 30); err == nil {
		t.Fatal("processCPU of no process: no error")
	}
}

func TestWithoutAWS(t *testing.T) {
	t.Parallel()
	got := withoutAWS([]string{"PATH=/bin", "AWS_PROFILE=prod", "AF_TOKEN=x", "HOME=/root", "AWS_ENDPOINT_URL=http://s3"})
	if strings.Join(got, " ") != "PATH=/bin HOME=/root" {
		t.Fatalf("withoutAWS = %q", got)
	}
}
