// Command cluster runs af on several hosts on this machine for trying by
// hand (`make cluster`): a private bridge and a network namespace per host
// (the queue, MinIO, an SMTP sink, workers; see internal/hosttest). It
// stays in the foreground until SIGTERM or SIGINT, then stops every
// process and removes the namespaces; `make cluster-down` sends the
// signal. With --sweep it only removes what a dead cluster left.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/af-project/af/internal/hosttest"
)

func main() {
	dir := flag.String("dir", ".cluster", "directory of the cluster's files: data dirs, scratch, keys, logs/, env, info (AF_CLUSTER_DIR)")
	bin := flag.String("bin", "bin", "directory of af, worker and demo-smtpsink (make build)")
	minio := flag.String("minio", envOr("AF_MINIO", "bin/tools/minio"), "MinIO binary (AF_MINIO)")
	subnet := flag.Int("net", 250, "the cluster's private subnet is 10.231.NET.0/24 (1-254)")
	workers := flag.Int("workers", 3, "worker hosts")
	lease := flag.Duration("lease", 30*time.Second, "af serve's lease_duration: how soon a partitioned or killed worker's task runs elsewhere")
	sweep := flag.Bool("sweep", false, "only remove the namespaces, links and rules of clusters whose process died, and exit")
	flag.Parse()
	logf := func(format string, args ...any) { log.Printf(format, args...) }
	if *sweep {
		hosttest.SweepStale(logf)
		return
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	upCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	c, err := hosttest.Up(upCtx, hosttest.Options{
		Dir: abs, Net: *subnet, Workers: *workers, Lease: *lease, Logf: logf,
		Bin: hosttest.Binaries{
			AF: filepath.Join(*bin, "af"), Worker: filepath.Join(*bin, "worker"),
			SMTPSink: filepath.Join(*bin, "demo-smtpsink"), MinIO: *minio,
		},
	})
	cancel()
	if err != nil {
		log.Fatalf("cluster: %v", err)
	}
	if err := writeInfo(abs, c); err != nil {
		_ = c.Close()
		log.Fatal(err)
	}
	log.Printf("cluster up; SIGTERM (make cluster-down) stops it")
	<-ctx.Done()
	log.Printf("cluster: stopping")
	if err := c.Close(); err != nil {
		log.Printf("cluster: close: %v", err)
	}
	_ = os.Remove(filepath.Join(abs, "ready"))
	log.Printf("cluster: stopped")
}

// writeInfo writes env (mode 0600: the submit token and MinIO's keys) and
// hosts (one line per host: role, namespace, address, pid), then ready.
func writeInfo(dir string, c *hosttest.Cluster) error {
	var env strings.Builder
	for _, kv := range c.Env() {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&env, "export %s=%q\n", k, v)
	}
	if err := os.WriteFile(filepath.Join(dir, "env"), []byte(env.String()), 0o600); err != nil {
		return err
	}
	var hosts strings.Builder
	line := func(role string, h *hosttest.Host, p *hosttest.Proc) {
		fmt.Fprintf(&hosts, "%-10s %-16s %-15s pid %-7d log %s\n", role, h.NS, h.IP, p.Pid(), p.LogPath)
	}
	line("queue", c.QueueHost, c.Serve)
	line("minio", c.S3Host, c.MinIO)
	line("smtp", c.SMTPHost, c.SMTPSink)
	for i, h := range c.WorkerHosts {
		line("worker", h, c.Workers[i])
	}
	fmt.Fprintf(&hosts, "%-10s %-16s %-15s (this machine, on bridge %s)\n", "you", "(root)", c.Net.RootIP, c.Net.Bridge)
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(hosts.String()), 0o644); err != nil {
		return err
	}
	info := fmt.Sprintf("queue=%s\ns3=%s\nconfig=%s\nnet=%d\npid=%d\n", c.URL, c.S3Endpoint, c.ConfigPath, c.Net.N, os.Getpid())
	return os.WriteFile(filepath.Join(dir, "ready"), []byte(info), 0o644)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
