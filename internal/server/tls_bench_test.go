package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/tlstest"
)

// BenchmarkClaimComplete16TLS is BenchmarkClaimComplete16 over https, with
// the TLS configuration af serve uses (its certReloader: TLS 1.2+, h2),
// the workers trusting the test CA: what TLS costs the worker protocol.
// Run both in one command to compare them under the same load;
// AF_BENCH_H2=1 offers HTTP/2 as well, which the clients then use.
func BenchmarkClaimComplete16TLS(b *testing.B) {
	TuneGC()
	workers := benchWorkers()
	e := newBenchEnv(b)
	ca, err := tlstest.NewCA("bench CA")
	if err != nil {
		b.Fatal(err)
	}
	leaf, err := ca.Server(tlstest.LeafOptions{}, "127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	files, err := tlstest.WriteFiles(b.TempDir(), "queue", ca, leaf)
	if err != nil {
		b.Fatal(err)
	}
	certs, _, err := newCertReloader(files.Cert, files.Key, DefaultCertCheckEvery, time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	// As Serve does (httptest's StartTLS would add a certificate of its
	// own, which a client naming an IP address is given).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: e.http.Config.Handler, TLSConfig: certs.tlsConfig(), Protocols: httpProtocols()}
	if os.Getenv("AF_BENCH_H2") == "1" {
		// The alternative httpProtocols turned down.
		hs.TLSConfig.NextProtos = []string{"h2", "http/1.1"}
		hs.Protocols = nil
	}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	b.Cleanup(func() { _ = hs.Close() })
	url := "https://" + ln.Addr().String()
	// The protocol the clients get (their transport is a clone of
	// http.DefaultTransport, which would take HTTP/2).
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: ca.Pool()}
	resp, err := (&http.Client{Transport: t}).Get(url + "/api/v1/pool-key")
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	b.Logf("clients speak %s", resp.Proto)
	roots := queueclient.WithRootCAs(ca.Pool())
	ctx := context.Background()
	sub := queueclient.New(url, submitTok, roots)
	for left := b.N; left > 0; left -= 10000 {
		if _, err := sub.CreateGraph(ctx, flatGraph(min(left, 10000))); err != nil {
			b.Fatal(err)
		}
	}
	var (
		mu   sync.Mutex
		lat  []time.Duration
		wg   sync.WaitGroup
		next = make(chan struct{}, b.N)
	)
	for range b.N {
		next <- struct{}{}
	}
	close(next)
	b.ResetTimer()
	cpu := startCPU()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One client per worker, as each worker process has.
			c := queueclient.New(url, workTok, roots)
			req := taskdef.ClaimRequest{WorkerGroup: "bench", WorkerID: fmt.Sprintf("w%d", w), Tasks: 1}
			var mine []time.Duration
			for range next {
				start := time.Now()
				claims, err := c.ClaimWork(ctx, req, time.Second)
				mine = append(mine, time.Since(start))
				if err != nil {
					b.Error(err)
					return
				}
				if len(claims) != 1 {
					b.Errorf("claimed %d tasks", len(claims))
					return
				}
				if _, err := c.Claimed(claims[0]).ReportCompleted(ctx, taskdef.ReportRequest{}); err != nil {
					b.Error(err)
					return
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.StopTimer()
	cpu.stop()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
	b.ReportMetric(cpu.perOp(b.N), "cpu-us/cycle")
	b.ReportMetric(pct(0.50), "claim-p50-ms")
	b.ReportMetric(pct(0.99), "claim-p99-ms")
}
