package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/miniotest"
	"github.com/af-project/af/internal/synth"
	"github.com/af-project/af/internal/taskdef"
)

// cutProxy is an HTTP proxy in front of a real MinIO that breaks chosen
// object GETs off after a number of body bytes (the connection is
// aborted, as a network fault or a restarting S3 would), and records
// every GET's Range and If-Match headers.
type cutProxy struct {
	URL string
	rp  *httputil.ReverseProxy

	mu sync.Mutex
	// cuts are, per object path (/bucket/key), the body lengths after
	// which the next GETs break off, in order.
	cuts map[string][]int64
	// beforeResume, when set, runs before a ranged GET is forwarded.
	beforeResume func(path string)
	gets         []proxiedGet
}

type proxiedGet struct{ path, rng, ifMatch string }

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{cuts: map[string][]int64{}}
	// The Host header stays the proxy's: the client signed it.
	p.rp = httputil.NewSingleHostReverseProxy(u)
	p.rp.FlushInterval = -1
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p, ErrorLog: nil}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	p.URL = "http://" + ln.Addr().String()
	return p
}

func (p *cutProxy) cut(path string, after ...int64) {
	p.mu.Lock()
	p.cuts[path] = append(p.cuts[path], after...)
	p.mu.Unlock()
}

func (p *cutProxy) ranged() []proxiedGet {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []proxiedGet
	for _, g := range p.gets {
		if g.rng != "" {
			out = append(out, g)
		}
	}
	return out
}

func (p *cutProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	limit := int64(-1)
	if r.Method == http.MethodGet {
		p.mu.Lock()
		p.gets = append(p.gets, proxiedGet{path: r.URL.Path, rng: r.Header.Get("Range"), ifMatch: r.Header.Get("If-Match")})
		if c := p.cuts[r.URL.Path]; len(c) > 0 {
			limit, p.cuts[r.URL.Path] = c[0], c[1:]
		}
		hook := p.beforeResume
		p.mu.Unlock()
		if hook != nil && r.Header.Get("Range") != "" {
			hook(r.URL.Path)
		}
	}
	if limit < 0 {
		p.rp.ServeHTTP(w, r)
		return
	}
	p.rp.ServeHTTP(&cutWriter{ResponseWriter: w, left: limit}, r)
}

// cutWriter passes left body bytes on, then aborts the connection.
type cutWriter struct {
	http.ResponseWriter
	left int64
}

func (c *cutWriter) Write(b []byte) (int, error) {
	if int64(len(b)) <= c.left {
		c.left -= int64(len(b))
		return c.ResponseWriter.Write(b)
	}
	n, _ := c.ResponseWriter.Write(b[:c.left])
	c.left = 0
	http.NewResponseController(c.ResponseWriter).Flush()
	_ = n
	panic(http.ErrAbortHandler)
}

func (c *cutWriter) Flush() { http.NewResponseController(c.ResponseWriter).Flush() }

func proxiedS3(t *testing.T, endpoint string) *s3.Client {
	t.Helper()
	cfg, err := awsconf.Load(context.Background(), awsconf.Options{
		Endpoint: endpoint, Region: awsconf.DefaultRegion,
		AccessKeyID: miniotest.RootUser, SecretAccessKey: miniotest.RootPassword,
	})
	if err != nil {
		t.Fatal(err)
	}
	return awsconf.S3(cfg)
}

// fastRetry keeps the tests' backoff short.
var fastRetry = s3Retry{Tries: 3, First: time.Millisecond, Max: 5 * time.Millisecond}

// TestResumingReader: a body cut at any point is resumed with a ranged GET
// from the byte reached and If-Match the object's ETag, and reads whole;
// an object rewritten before the resume is an error naming it, not a
// splice; a stream that keeps breaking gives up after its tries, naming
// the object and the count.
func TestResumingReader(t *testing.T) {
	t.Parallel()
	mc := miniotest.Start(t, "telemetry")
	proxy := startCutProxy(t, mc.Endpoint)
	client := proxiedS3(t, proxy.URL)
	body := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	n := int64(len(body))

	tests := []struct {
		name        string
		cuts        []int64
		change      bool
		wantRanges  []string
		wantErr     string
		wantChanged bool
	}{
		{name: "no cut", wantRanges: nil},
		{name: "cut at 0", cuts: []int64{0}, wantRanges: []string{"bytes=0-"}},
		{name: "cut mid", cuts: []int64{n / 2}, wantRanges: []string{fmt.Sprintf("bytes=%d-", n/2)}},
		{name: "cut twice", cuts: []int64{1000, 5000}, wantRanges: []string{"bytes=1000-", "bytes=6000-"}},
		{name: "cut before the last byte", cuts: []int64{n - 1}, wantRanges: []string{fmt.Sprintf("bytes=%d-", n-1)}},
		{name: "cut at the end", cuts: []int64{n}, wantRanges: nil},
		{name: "etag changed", cuts: []int64{n / 3}, change: true, wantChanged: true,
			wantRanges: []string{fmt.Sprintf("bytes=%d-", n/3)}, wantErr: "changed while it was read"},
		{name: "retries exhausted", cuts: []int64{10, 0, 0, 0, 0}, wantRanges: []string{"bytes=10-", "bytes=10-"},
			wantErr: "after 3 tries"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := "resume/" + strings.ReplaceAll(tc.name, " ", "-")
			path := "/telemetry/" + key
			mc.Put(t, "telemetry", key, body)
			proxy.cut(path, tc.cuts...)
			if tc.change {
				proxy.mu.Lock()
				proxy.beforeResume = func(p string) {
					if p == path {
						mc.Put(t, "telemetry", key, append([]byte("new version "), body...))
					}
				}
				proxy.mu.Unlock()
				defer func() { proxy.mu.Lock(); proxy.beforeResume = nil; proxy.mu.Unlock() }()
			}
			before := len(proxy.ranged())
			r, err := openS3(context.Background(), client, "telemetry", key, "", fastRetry, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			var ranges []string
			for _, g := range proxy.ranged()[before:] {
				if g.path != path {
					continue
				}
				ranges = append(ranges, g.rng)
				if g.ifMatch == "" || g.ifMatch != r.etag {
					t.Errorf("ranged GET %s with If-Match %q, want the ETag %q", g.rng, g.ifMatch, r.etag)
				}
			}
			if fmt.Sprint(ranges) != fmt.Sprint(tc.wantRanges) {
				t.Errorf("ranged GETs %q, want %q", ranges, tc.wantRanges)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "telemetry/"+key) {
					t.Fatalf("err %v, want one naming telemetry/%s with %q", err, key, tc.wantErr)
				}
				var changed *s3ObjectChanged
				if errors.As(err, &changed) != tc.wantChanged {
					t.Fatalf("err %T %v: object-changed %v, want %v", err, err, !tc.wantChanged, tc.wantChanged)
				}
				// The feeder's view: a changed object is the file's
				// problem (a bad file); exhausted retries are an
				// exception the queue retries.
				var ie *inputException
				isExc := errors.As(classifyS3(key, err), &ie)
				if isExc == tc.wantChanged || isExc && ie.reason != taskdef.ReasonResourceUnavail {
					t.Fatalf("classified %v (exception %v), want exception/resource-unavailable only when retries ran out", classifyS3(key, err), isExc)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("read %d bytes, not the object's %d (first difference spliced?)", len(got), len(body))
			}
		})
	}
}

// TestResumingReaderMissingObjectIsNotRetried: a missing object is the
// file's problem: one GET, no retries, and the feeder calls it a bad file.
func TestResumingReaderMissingObjectIsNotRetried(t *testing.T) {
	t.Parallel()
	mc := miniotest.Start(t, "telemetry")
	proxy := startCutProxy(t, mc.Endpoint)
	client := proxiedS3(t, proxy.URL)
	retries := 0
	_, err := openS3(context.Background(), client, "telemetry", "no/such-key", "", fastRetry, func(int, time.Duration, error) { retries++ })
	if err == nil || retries != 0 {
		t.Fatalf("err %v after %d retries, want a missing-object error and none", err, retries)
	}
	var ie *inputException
	if errors.As(classifyS3("no/such-key", err), &ie) || !strings.Contains(classifyS3("no/such-key", err).Error(), "is missing") {
		t.Fatalf("classified %v, want a missing (bad) file", classifyS3("no/such-key", err))
	}
}

// TestFeederResumesCutStreams: a mapper's feeder whose S3 streams are cut
// mid-file, several files at once, delivers every record: the counts
// equal the data's, and the cut files were resumed by ranged GETs.
func TestFeederResumesCutStreams(t *testing.T) {
	t.Parallel()
	mc := miniotest.Start(t, "telemetry")
	proxy := startCutProxy(t, mc.Endpoint)
	set, err := synth.Generate(synth.Spec{
		Prefix: "data", Reasons: []string{"saved-session"}, Channels: []string{"nightly"}, Versions: []string{"28.0a1"},
		BuildIDs: []string{"20131029030201"}, Days: []string{"20131029"}, FilesPerPartition: 8,
		DocsPerFile: 300, HistogramSize: 4, Formats: []string{"gz", "zst", ""}, Seed: 7,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.Upload(context.Background(), mc.S3, "telemetry", set.Files); err != nil {
		t.Fatal(err)
	}
	var inputs []taskdef.InputFile
	cut := 0
	for i, f := range set.Files {
		inputs = append(inputs, taskdef.InputFile{Key: f.Key, Size: int64(len(f.Body))})
		if i%2 == 0 && len(f.Body) > 100 {
			proxy.cut("/telemetry/"+f.Key, int64(len(f.Body))/2, int64(len(f.Body))/4)
			cut++
		}
	}
	logs := &lineLog{}
	f := &feeder{s3: proxiedS3(t, proxy.URL), bucket: "telemetry", prefix: "data", schema: layout.Telemetry(), parallel: 3,
		policy: inputPolicy{maxBadLineRatio: 1}, logLine: logs.logf, retry: fastRetry}
	var out bytes.Buffer
	if err := f.feed(context.Background(), inputs, &out); err != nil {
		t.Fatalf("feed: %v\n%s", err, logs)
	}
	_, byOS := decodeStream(t, out.Bytes())
	if got, want := synth.FormatOSCounts(byOS), synth.FormatOSCounts(set.CountByOS(nil)); got != want {
		t.Fatalf("counts\n%s\nwant\n%s", got, want)
	}
	st := f.stats()
	docs, compressed, _ := set.Totals()
	if st.RecordsIn != int64(docs) || st.Files != int64(len(inputs)) || st.BadFiles != 0 || st.Bytes != compressed {
		t.Fatalf("stats %+v, want %d records of %d files, %d bytes, no bad file", st, docs, len(inputs), compressed)
	}
	if got := len(proxy.ranged()); got != 2*cut {
		t.Fatalf("%d ranged GETs, want %d (two cuts in each of %d files)", got, 2*cut, cut)
	}
	if !strings.Contains(logs.String(), "s3 GET telemetry/") {
		t.Fatalf("the task log does not name the retried GETs:\n%s", logs)
	}
}

// TestResumingReaderWaitsForS3: a GET made while MinIO is down (connection
// refused) is retried with backoff and succeeds once MinIO is back.
func TestResumingReaderWaitsForS3(t *testing.T) {
	t.Parallel()
	mc := miniotest.Start(t, "telemetry")
	mc.Put(t, "telemetry", "k", []byte("the object\n"))
	mc.Kill()
	var mu sync.Mutex
	var retries []string
	type result struct {
		body []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		r, err := openS3(context.Background(), mc.S3, "telemetry", "k", "", s3Retry{Tries: 40, First: 50 * time.Millisecond, Max: 500 * time.Millisecond},
			func(try int, _ time.Duration, err error) {
				mu.Lock()
				retries = append(retries, err.Error())
				mu.Unlock()
			})
		if err != nil {
			done <- result{err: err}
			return
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		done <- result{b, err}
	}()
	// Restart once the reader has retried at least once.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(retries)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reader did not retry while MinIO was down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := mc.Restart(); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil || string(res.body) != "the object\n" {
		t.Fatalf("read %q, %v; want the object once MinIO is back (retries: %q)", res.body, res.err, retries)
	}
	if !strings.Contains(retries[0], "connection refused") {
		t.Errorf("first retry was for %q, want connection refused", retries[0])
	}
}
