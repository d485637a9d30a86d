package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	t.Parallel()
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, .5, 0},
		{"one", ms(7), .9, 7 * time.Millisecond},
		{"p50 of odd", ms(5, 1, 3), .5, 3 * time.Millisecond},
		{"p50 of even is the lower middle", ms(4, 1, 3, 2), .5, 2 * time.Millisecond},
		{"p90 of 20", ms(20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1), .9, 18 * time.Millisecond},
		{"max", ms(2, 9, 4), 1, 9 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := append([]time.Duration(nil), tc.in...)
			if got := quantile(tc.in, tc.q); got != tc.want {
				t.Fatalf("quantile(%v, %v) = %v, want %v", tc.in, tc.q, got, tc.want)
			}
			for i := range in {
				if in[i] != tc.in[i] {
					t.Fatalf("quantile reordered its input: %v", tc.in)
				}
			}
		})
	}
}

func TestBestKeepsTheFasterCheckedRun(t *testing.T) {
	t.Parallel()
	slow := measure{name: "x", seconds: 3, raw: 300, ok: true}
	fast := measure{name: "x", seconds: 2, raw: 300, ok: true}
	for _, tc := range []struct {
		name    string
		a, b    measure
		wantSec float64
	}{
		{"first run", measure{}, slow, 3},
		{"faster second", slow, fast, 2},
		{"slower second", fast, slow, 2},
		{"unchecked second is ignored", fast, measure{seconds: 1}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := best(tc.a, tc.b); got.seconds != tc.wantSec {
				t.Fatalf("best = %+v, want %v s", got, tc.wantSec)
			}
		})
	}
	if got := fast.mbs(); got < 149.999e-6 || got > 150.001e-6 {
		t.Fatalf("mbs = %v, want 150 bytes/s in MB/s", got)
	}
}

// TestRunSmall runs the whole benchmark on a few MiB: MinIO, the queue
// server, a worker on the Docker engine with the three job images, the boto3
// and Dask scripts under Debian's Python. Each system's counts are checked
// inside run, so a wrong count fails here.
func TestRunSmall(t *testing.T) {
	var out bytes.Buffer
	err := run(config{
		rawBytes: 4 << 20, files: 16, hist: 4, filesPerTask: 8, workers: 1, capacity: 2,
		fixedTasks: 2, runs: 1, python: "/usr/bin/python3", scripts: ".",
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	md := out.String()
	t.Log(md)
	for _, want := range []string{
		"## The job end to end",
		"| af job, Python helper (af/os-count, `af_helper.field`) |",
		"| af job, Python helper, `json.loads` per document (af/os-count-loads) |",
		"| boto3 script + `af_helper.field`, one process |",
		"| af job, Go SDK (af/os-count-go) |",
		"| boto3 script, one process |",
		"| Dask LocalCluster, 2 workers × 1 thread |",
		"| gunzip ceiling, klauspost/compress/gzip, 2 goroutines |",
		"| af job, Go SDK, workers with Go gzip (`--gzip go`) |",
		"| gunzip, ISA-L (af's reader), 2 goroutines |",
		"(gzip: isal)",
		"(gzip: go)",
		"Fixed cost of a task with no input",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "not run") {
		t.Errorf("a system did not run:\n%s", md)
	}
	// Every system row carries a positive rate.
	row := regexp.MustCompile(`(?m)^\| (af job|boto3|Dask|gunzip)[^|]*\| ([0-9.]+) \|`)
	rows := row.FindAllStringSubmatch(md, -1)
	if len(rows) != 10 {
		t.Fatalf("want 10 system rows with a rate, got %d:\n%s", len(rows), md)
	}
	for _, r := range rows {
		if r[2] == "0.0" {
			t.Errorf("row %q has no rate", r[0])
		}
	}
}
