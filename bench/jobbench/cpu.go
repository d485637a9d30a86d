package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/client"

	"github.com/af-project/af/internal/runner"
)

// CPU time is measured beside wall time because the machine is shared:
// wall-clock MB/s depend on what else runs, CPU-seconds per GiB do not,
// and they say what a system would do on an idle machine.

// selfCPU is this process's user+system CPU time (the in-process queue
// server and workers, or the gunzip goroutines).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// containerCPU samples the CPU time of the job containers this benchmark's
// workers run, from their cgroups, keeping the last value seen of each.
// The last moments of a container (after the final sample, before it is
// removed) are missed; samples every 100 ms keep that small against
// mapper containers that run for seconds.
type containerCPU struct {
	docker *client.Client
	prefix string // worker id prefix of ours

	mu    sync.Mutex
	mine  map[string]bool // container id -> ours (cached label check)
	usage map[string]time.Duration
	stop  context.CancelFunc
	done  chan struct{}
}

func startContainerCPU(d *client.Client, workerPrefix string) *containerCPU {
	ctx, cancel := context.WithCancel(context.Background())
	c := &containerCPU{docker: d, prefix: workerPrefix, mine: map[string]bool{}, usage: map[string]time.Duration{}, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			c.sample(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return c
}

// total is the CPU time of every container of ours seen so far.
func (c *containerCPU) total() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var t time.Duration
	for _, u := range c.usage {
		t += u
	}
	return t
}

func (c *containerCPU) close() {
	c.stop()
	<-c.done
}

// cgroup layouts: v1 (cgroupfs driver) and v2 (systemd driver).
func cgroupUsage(id string) (time.Duration, bool) {
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpuacct/docker", id, "cpuacct.usage")); err == nil {
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return time.Duration(n), err == nil
	}
	for _, p := range []string{
		filepath.Join("/sys/fs/cgroup/system.slice", "docker-"+id+".scope", "cpu.stat"),
		filepath.Join("/sys/fs/cgroup/docker", id, "cpu.stat"),
	} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				return time.Duration(n) * time.Microsecond, err == nil
			}
		}
	}
	return 0, false
}

func containerIDs() []string {
	var ids []string
	for _, dir := range []string{"/sys/fs/cgroup/cpuacct/docker", "/sys/fs/cgroup/docker"} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() && len(e.Name()) == 64 {
				ids = append(ids, e.Name())
			}
		}
	}
	if ents, err := os.ReadDir("/sys/fs/cgroup/system.slice"); err == nil {
		for _, e := range ents {
			n := e.Name()
			if strings.HasPrefix(n, "docker-") && strings.HasSuffix(n, ".scope") {
				ids = append(ids, strings.TrimSuffix(strings.TrimPrefix(n, "docker-"), ".scope"))
			}
		}
	}
	return ids
}

func (c *containerCPU) sample(ctx context.Context) {
	for _, id := range containerIDs() {
		c.mu.Lock()
		ours, known := c.mine[id]
		c.mu.Unlock()
		if !known {
			ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
			info, err := c.docker.ContainerInspect(ictx, id)
			cancel()
			if err != nil {
				continue // gone already, or not yet inspectable
			}
			ours = info.Config != nil && strings.HasPrefix(info.Config.Labels[runner.LabelWorkerID], c.prefix)
			c.mu.Lock()
			c.mine[id] = ours
			c.mu.Unlock()
		}
		if !ours {
			continue
		}
		if u, ok := cgroupUsage(id); ok {
			c.mu.Lock()
			if u > c.usage[id] {
				c.usage[id] = u
			}
			c.mu.Unlock()
		}
	}
}
