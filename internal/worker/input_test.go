package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/records"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
)

type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// decodeStream reads a framed stream back: the file keys in order and the
// documents' info.OS counts.
func decodeStream(t *testing.T, stream []byte) (keys []string, byOS map[string]int) {
	t.Helper()
	byOS = map[string]int{}
	r := records.NewReader(bytes.NewReader(stream))
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return keys, byOS
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.File != nil {
			keys = append(keys, rec.File.Key)
			continue
		}
		var doc struct {
			Info struct{ OS string } `json:"info"`
		}
		if err := json.Unmarshal(rec.JSON, &doc); err != nil {
			t.Fatalf("line %d: %v", rec.Line, err)
		}
		byOS[doc.Info.OS]++
	}
}

func TestFeederStreamsEveryFormatInOrder(t *testing.T) {
	t.Parallel()
	mc := miniotest.Start(t, "telemetry")
	set, err := synth.Generate(synth.Spec{
		Prefix: "data", Reasons: []string{"saved-session"}, Channels: []string{"nightly"}, Versions: []string{"28.0a1"},
		BuildIDs: []string{"20131029030201"}, Days: []string{"20131029", "20131030"}, FilesPerPartition: 6,
		DocsPerFile: 40, HistogramSize: 2, Formats: []string{"gz", "xz", "lzma", "zst", "bz2", ""}, BadLineEvery: 13, Seed: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Upload(context.Background(), mc.S3, "telemetry", set.Files); err != nil {
		t.Fatal(err)
	}
	var inputs []taskdef.InputFile
	wantBad := 0
	for _, f := range set.Files {
		inputs = append(inputs, taskdef.InputFile{Key: f.Key, Size: int64(len(f.Body))})
		wantBad += f.BadLines
	}
	for _, parallel := range []int{1, 3, 16} {
		t.Run(fmt.Sprintf("parallel=%d", parallel), func(t *testing.T) {
			t.Parallel()
			logs := &lineLog{}
			f := &feeder{s3: mc.S3, bucket: "telemetry", prefix: "data", schema: layout.Telemetry(), parallel: parallel,
				policy: inputPolicy{maxBadLineRatio: 1}, logLine: logs.logf}
			var out bytes.Buffer
			if err := f.feed(context.Background(), inputs, &out); err != nil {
				t.Fatal(err)
			}
			keys, byOS := decodeStream(t, out.Bytes())
			for i, k := range keys {
				if k != inputs[i].Key {
					t.Fatalf("file %d in stream is %s, want %s (task order)", i, k, inputs[i].Key)
				}
			}
			if len(keys) != len(inputs) {
				t.Fatalf("%d files in stream, want %d", len(keys), len(inputs))
			}
			if got, want := synth.FormatOSCounts(byOS), synth.FormatOSCounts(set.CountByOS(nil)); got != want {
				t.Fatalf("counts\n%s\nwant\n%s", got, want)
			}
			st := f.stats()
			docs, compressed, raw := set.Totals()
			if st.RecordsIn != int64(docs) || st.BadLines != int64(wantBad) || st.Files != int64(len(inputs)) || st.Bytes != compressed || st.RawBytes != raw {
				t.Fatalf("stats %+v; want records %d bad %d files %d bytes %d raw %d", st, docs, wantBad, len(inputs), compressed, raw)
			}
			if !strings.Contains(logs.String(), "bad line data/saved_session/") {
				t.Fatalf("bad lines not named in the log:\n%s", logs)
			}
		})
	}
}

func TestFeederBadFiles(t *testing.T) {
	t.Parallel()
	mc := miniotest.Start(t, "telemetry")
	good, err := synth.Compress("gz", []byte("id1\t{\"a\":1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	corrupt := append([]byte(nil), good...)
	corrupt[len(corrupt)/2] ^= 0xff
	corrupt[len(corrupt)/2+1] ^= 0xff
	mc.Put(t, "telemetry", "a/good.gz", good)
	mc.Put(t, "telemetry", "b/corrupt.gz", corrupt)
	inputs := []taskdef.InputFile{{Key: "a/good.gz"}, {Key: "b/corrupt.gz"}, {Key: "c/missing.gz"}}

	tests := []struct {
		name        string
		maxBadFiles int64
		wantFail    string
	}{
		{name: "default fails on the first bad file", maxBadFiles: 0, wantFail: "b/corrupt.gz"},
		{name: "one tolerated, missing file fails", maxBadFiles: 1, wantFail: "c/missing.gz"},
		{name: "both tolerated", maxBadFiles: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logs := &lineLog{}
			f := &feeder{s3: mc.S3, bucket: "telemetry", schema: layout.Telemetry(), parallel: 3,
				policy: inputPolicy{maxBadFiles: tc.maxBadFiles, maxBadLineRatio: 1}, logLine: logs.logf}
			err := f.feed(context.Background(), inputs, io.Discard)
			if tc.wantFail == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(logs.String(), "bad file b/corrupt.gz") || !strings.Contains(logs.String(), "bad file c/missing.gz") {
					t.Fatalf("bad files not named in the log:\n%s", logs)
				}
				return
			}
			var fail *inputFailure
			if !errors.As(err, &fail) {
				t.Fatalf("err = %v, want an input failure", err)
			}
			if !strings.Contains(err.Error(), tc.wantFail) {
				t.Fatalf("failure %q does not name %s", err, tc.wantFail)
			}
		})
	}
}

// TestFeederReadsPinnedVersions: a task that pins its inputs' ETags reads
// them at those versions; a file rewritten since fails the task, naming
// it, even where max_bad_files would skip a bad file.
func TestFeederReadsPinnedVersions(t *testing.T) {
	t.Parallel()
	mc := miniotest.Start(t, "telemetry")
	mc.Put(t, "telemetry", "x/a", []byte("id1\t{}\n"))
	mc.Put(t, "telemetry", "x/b", []byte("id2\t{}\n"))
	etag := func(key string) string {
		head, err := mc.S3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("telemetry"), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		return strings.Trim(aws.ToString(head.ETag), `"`)
	}
	inputs := []taskdef.InputFile{{Key: "x/a"}, {Key: "x/b"}}
	pins := []string{etag("x/a"), etag("x/b")}
	feed := func() (*feeder, error) {
		f := &feeder{s3: mc.S3, bucket: "telemetry", schema: layout.Telemetry(), parallel: 2, etags: pins,
			policy: inputPolicy{maxBadFiles: 10, maxBadLineRatio: 1}, logLine: (&lineLog{}).logf}
		return f, f.feed(context.Background(), inputs, io.Discard)
	}
	if f, err := feed(); err != nil || f.files.Load() != 2 {
		t.Fatalf("at their pinned versions: %v (%d files)", err, f.files.Load())
	}
	mc.Put(t, "telemetry", "x/b", []byte("id2\t{\"rewritten\":1}\n"))
	_, err := feed()
	var fail *inputFailure
	if !errors.As(err, &fail) || !strings.Contains(err.Error(), "telemetry/x/b is no longer the version this graph was made with (ETag \""+pins[1]+"\")") {
		t.Fatalf("after a rewrite: %v, want the task to fail naming x/b", err)
	}
	// Without pins the rewritten file is simply read.
	f := &feeder{s3: mc.S3, bucket: "telemetry", schema: layout.Telemetry(), parallel: 2,
		policy: inputPolicy{maxBadLineRatio: 1}, logLine: (&lineLog{}).logf}
	if err := f.feed(context.Background(), inputs, io.Discard); err != nil {
		t.Fatal(err)
	}
}

func TestFeederBadLineRatio(t *testing.T) {
	t.Parallel()
	mc := miniotest.Start(t, "telemetry")
	mc.Put(t, "telemetry", "x/half-bad", []byte("id1\t{}\nno tab here\nid2\t{}\nalso bad\n"))
	f := &feeder{s3: mc.S3, bucket: "telemetry", schema: layout.Telemetry(), parallel: 1,
		policy: inputPolicy{maxBadLineRatio: 0.25}, logLine: (&lineLog{}).logf}
	err := f.feed(context.Background(), []taskdef.InputFile{{Key: "x/half-bad"}}, io.Discard)
	var fail *inputFailure
	if !errors.As(err, &fail) || !strings.Contains(err.Error(), "2 of 4 input lines were bad") {
		t.Fatalf("err = %v, want the bad line ratio failure", err)
	}
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errors.New("broken pipe")
	}
	w.after--
	return len(p), nil
}

func TestFeederStopsWhenTheJobGoesAway(t *testing.T) {
	t.Parallel()
	mc := miniotest.Start(t, "telemetry")
	set, err := synth.Generate(synth.Spec{Reasons: []string{"saved-session"}, Channels: []string{"nightly"}, Versions: []string{"28.0a1"},
		BuildIDs: []string{"20131029030201"}, Days: []string{"20131029"}, FilesPerPartition: 12, DocsPerFile: 300, HistogramSize: 20, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Upload(context.Background(), mc.S3, "telemetry", set.Files); err != nil {
		t.Fatal(err)
	}
	var inputs []taskdef.InputFile
	for _, f := range set.Files {
		inputs = append(inputs, taskdef.InputFile{Key: f.Key})
	}
	f := &feeder{s3: mc.S3, bucket: "telemetry", schema: layout.Telemetry(), parallel: 4,
		policy: inputPolicy{maxBadLineRatio: 1}, logLine: (&lineLog{}).logf}
	err = f.feed(context.Background(), inputs, &failingWriter{after: 2})
	if err == nil || !strings.Contains(err.Error(), "write records to the job") {
		t.Fatalf("err = %v, want the write error", err)
	}
}

// countingSlowWriter is a job that reads slowly: the decoders run as far
// ahead of it as the feeder lets them.
type countingSlowWriter struct{ n int64 }

func (w *countingSlowWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	time.Sleep(200 * time.Microsecond)
	return len(p), nil
}

// TestFeederMemoryIsBounded streams 4 gzip files of about 46 MiB each
// (decompressed), all four decoding at once, from MinIO into a slow reader
// and samples the heap: what the feeder holds must stay below one file's
// size, let alone the input's, since it streams instead of buffering files.
// Not parallel, so other tests' allocations stay out of the heap samples,
// and with a low GOGC, so garbage between collections does not hide what
// is live.
func TestFeederMemoryIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams ~290 MB; run without -short")
	}
	mc := miniotest.Start(t, "telemetry")
	set, err := synth.Generate(synth.Spec{Reasons: []string{"saved-session"}, Channels: []string{"nightly"}, Versions: []string{"28.0a1"},
		BuildIDs: []string{"20131029030201"}, Days: []string{"20131029"}, FilesPerPartition: 1, DocsPerFile: 15000, HistogramSize: 16, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	one := set.Files[0]
	const files = 4
	var inputs []taskdef.InputFile
	var uploads []synth.File
	for i := range files {
		f := one
		f.Key = layout.Key("", one.Dims, 2, fmt.Sprintf("%08d-0000-4000-8000-000000000000", i), "gz")
		uploads = append(uploads, f)
		inputs = append(inputs, taskdef.InputFile{Key: f.Key})
	}
	if err := synth.Upload(context.Background(), mc.S3, "telemetry", uploads); err != nil {
		t.Fatal(err)
	}
	set, uploads = nil, nil
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)

	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	f := &feeder{s3: mc.S3, bucket: "telemetry", schema: layout.Telemetry(), parallel: 4,
		policy: inputPolicy{maxBadLineRatio: 1}, logLine: (&lineLog{}).logf}
	w := &countingSlowWriter{}
	err = f.feed(context.Background(), inputs, w)
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	if want := files * one.RawBytes; w.n < want {
		t.Fatalf("the job received %d bytes, want at least the %d raw bytes", w.n, want)
	}
	grew := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("streamed %d MB (%d MB per file) with the heap %d MB above its start at the peak", w.n>>20, one.RawBytes>>20, grew>>20)
	// The feeder's own bound is parallel × (chunksPerFile+2) × chunkSize
	// (24 MiB); the rest is decoders, S3 bodies and garbage. Buffering
	// even one whole file would pass the limit.
	if limit := one.RawBytes; grew > limit {
		t.Fatalf("heap grew by %d MB while streaming; files are %d MB each, so the feeder buffers instead of streaming (limit %d MB)", grew>>20, one.RawBytes>>20, limit>>20)
	}
}
