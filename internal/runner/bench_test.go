package runner

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// records is an endless stream of telemetry-like input lines
// (`<uuid>\t<json>\n`), cut at size bytes. It serves a pre-built block so
// its own cost stays far below any path into a container.
type records struct {
	block []byte
	off   int
	left  int64
}

var recordBlock = sync.OnceValue(func() []byte {
	var b []byte
	for i := 0; len(b) < 4<<20; i++ {
		b = fmt.Appendf(b, "%08x-1c2d-4e5f-8a9b-%012x\t{\"info\":{\"OS\":\"%s\",\"appName\":\"Firefox\",\"reason\":\"saved-session\"},\"simpleMeasurements\":{\"uptime\":%d,\"main\":%d}}\n",
			i, i*7919, []string{"WINNT", "Darwin", "Linux"}[i%3], i%9973, i%131)
	}
	return b
})

func newRecords(size int64) *records {
	return &records{block: recordBlock(), left: size}
}

func (r *records) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n := copy(p, r.block[r.off:])
	r.off = (r.off + n) % len(r.block)
	r.left -= int64(n)
	return n, nil
}

func benchInputBytes(b *testing.B) int64 {
	if s := os.Getenv("AF_BENCH_INPUT_BYTES"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("AF_BENCH_INPUT_BYTES=%q: want a positive byte count", s)
		}
		return n
	}
	return 1 << 30
}

// BenchmarkContainerInput measures the two paths records can take into a
// job container, streaming about 1 GiB (AF_BENCH_INPUT_BYTES) through the
// probe's count subcommand: attaching to stdin (through the Docker daemon)
// and a FIFO in the bind-mounted scratch dir (straight from the worker to
// the container). "generator" is the same input into io.Discard, the
// ceiling of this benchmark itself.
func BenchmarkContainerInput(b *testing.B) {
	size := benchInputBytes(b)
	b.Run("generator", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			n, err := io.CopyBuffer(io.Discard, newRecords(size), make([]byte, 256<<10))
			if err != nil || n != size {
				b.Fatalf("copied %d, %v", n, err)
			}
		}
	})
	for _, mode := range []InputMode{InputStdin, InputFIFO} {
		b.Run(mode.String(), func(b *testing.B) {
			e := newEnv(b, Options{Logger: discardLogger()})
			spec := e.spec("count")
			spec.Input = mode
			spec.Limits.CPUs = 1
			probe(b) // build outside the timed loop
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				res, err := e.r.Run(context.Background(), spec, Streams{Stdin: newRecords(size)})
				if err != nil || res.Outcome != OutcomeSucceeded || res.InputBytes != size || !res.InputComplete {
					b.Fatalf("Run: %+v %v", res, err)
				}
				b.StopTimer()
				got, err := os.ReadFile(e.output)
				if err != nil || string(got) != strconv.FormatInt(size, 10)+"\n" {
					b.Fatalf("the container counted %q (%v), want %d", got, err, size)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkContainerRun measures the fixed cost of one container run with
// no input, create to remove, and reports its median.
func BenchmarkContainerRun(b *testing.B) {
	e := newEnv(b, Options{Logger: discardLogger()})
	spec := e.spec("exit", "0")
	probe(b)
	var durations []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		res, err := e.r.Run(context.Background(), spec, Streams{})
		if err != nil || res.Outcome != OutcomeSucceeded {
			b.Fatalf("Run: %+v %v", res, err)
		}
		durations = append(durations, time.Since(start))
	}
	slices.Sort(durations)
	b.ReportMetric(float64(durations[len(durations)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(durations[len(durations)*9/10].Milliseconds()), "p90-ms")
}
