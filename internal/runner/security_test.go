package runner

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/taskdef"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
)

// probeReport mirrors testdata/probe's Report.
type probeReport struct {
	UID, GID, EUID, EGID int
	Groups               []int
	Env                  []string
	Status               map[string]string
	Writes               map[string]string
	Dials                map[string]string
	DNS                  string
	Interfaces           []string
	Opens                map[string]string
	Found                map[string][]string
	FilesScanned         int
	Mounts               string
}

func parseReport(t *testing.T, out string) probeReport {
	t.Helper()
	var r probeReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("the probe's report is not JSON: %v\n%s", err, out)
	}
	return r
}

// listener accepts connections on every host address, so a container with
// a network could reach it through the bridge gateway.
func listener(t *testing.T) (port string, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port, ch
}

func bridgeGateway(t *testing.T, e *env) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := e.cli.NetworkInspect(ctx, "bridge", network.InspectOptions{})
	if err != nil {
		t.Fatalf("inspecting the docker bridge: %v", err)
	}
	for _, c := range n.IPAM.Config {
		if ip := net.ParseIP(c.Gateway); ip != nil && ip.To4() != nil {
			return c.Gateway
		}
	}
	// Older engines leave the gateway out of IPAM; it is the bridge
	// interface's own address on the host.
	name := n.Options["com.docker.network.bridge.name"]
	if name == "" {
		name = "docker0"
	}
	if ifc, err := net.InterfaceByName(name); err == nil {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	t.Fatalf("the docker bridge has no IPv4 gateway: %+v, interface %s", n.IPAM, name)
	return ""
}

// TestSecurity runs the probe as a task container would run, with a key
// file beside the scratch dir and credentials in the task's env, and checks
// everything the security tests ask: no network, no key, no
// credentials, non-root, no capabilities, no-new-privileges, read-only root.
func TestSecurity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	port, accepted := listener(t)
	gateway := bridgeGateway(t, e)
	dialGateway := net.JoinHostPort(gateway, port)
	dialLoopback := net.JoinHostPort("127.0.0.1", port)

	// The worker's own files: a key beside the scratch dir, as the worker
	// keeps af.key in its working dir.
	const keyMarker = "AF-FAKE-PRIVATE-KEY-7f3a9c"
	const credMarker = "sealed-credentials-4be1d0"
	const scratchMarker = "scratch-visible-5c2e88"
	workerDir := filepath.Dir(e.scratch)
	keyPath := filepath.Join(workerDir, "af.key")
	if err := os.WriteFile(keyPath, []byte(keyMarker+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.scratch, "visible.txt"), []byte(scratchMarker), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(e.scratch, "visible.txt"), testUID, testGID); err != nil {
		t.Fatal(err)
	}

	spec := e.spec("security",
		"--dial", dialGateway, "--dial", dialLoopback, "--dns", "example.com",
		"--open", keyPath, "--open", "/af.key", "--open", "/scratch/../af.key",
		"--find-hex", hex.EncodeToString([]byte(keyMarker)),
		"--find-hex", hex.EncodeToString([]byte(credMarker)),
		"--find-hex", hex.EncodeToString([]byte(scratchMarker)))
	spec.Env = map[string]string{taskdef.EnvCredentials: credMarker, "JOB_SETTING": "kept"}
	out := newSyncBuffer()
	res, err := e.r.Run(context.Background(), spec, Streams{Stdout: out, Stderr: out})
	if err != nil || res.Outcome != OutcomeSucceeded {
		t.Fatalf("Run: %+v %v\n%s", res, err, out.String())
	}
	r := parseReport(t, out.String())

	t.Run("no network", func(t *testing.T) {
		for _, a := range []string{dialGateway, dialLoopback} {
			if r.Dials[a] == "" || r.Dials[a] == "connected" {
				t.Errorf("dial %s from the container: %q, want an error", a, r.Dials[a])
			}
		}
		if !strings.HasPrefix(r.DNS, "error:") {
			t.Errorf("DNS from the container: %q, want an error", r.DNS)
		}
		for _, i := range r.Interfaces {
			if i != "lo" {
				t.Errorf("the container has network interface %q; want only lo", i)
			}
		}
		select {
		case <-accepted:
			t.Error("the host listener accepted a connection from the container")
		default:
		}
	})
	t.Run("no key file", func(t *testing.T) {
		for p, v := range r.Opens {
			if !strings.Contains(v, "no such file") {
				t.Errorf("opening %s in the container: %q, want no such file", p, v)
			}
		}
		if paths := r.Found[keyMarker]; len(paths) > 0 {
			t.Errorf("the key's content is readable in the container at %v", paths)
		}
		// The search itself works: it finds what the scratch dir holds.
		if paths := r.Found[scratchMarker]; len(paths) != 1 || paths[0] != "/scratch/visible.txt" {
			t.Errorf("the file search found the scratch marker at %v; the search is broken", paths)
		}
		if r.FilesScanned < 3 {
			t.Errorf("the probe scanned only %d files", r.FilesScanned)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		if paths := r.Found[credMarker]; len(paths) > 0 {
			t.Errorf("the task's CREDENTIALS reached the container at %v", paths)
		}
		var sawSetting bool
		for _, kv := range r.Env {
			name, _, _ := strings.Cut(kv, "=")
			if name == taskdef.EnvCredentials || strings.HasPrefix(name, "AWS_") || strings.Contains(kv, credMarker) {
				t.Errorf("credential in the container's env: %s", name)
			}
			sawSetting = sawSetting || kv == "JOB_SETTING=kept"
		}
		if !sawSetting {
			t.Errorf("the task's own env did not reach the container: %v", r.Env)
		}
		for _, line := range strings.Split(r.Mounts, "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && strings.Contains(f[4], "secret") {
				t.Errorf("secrets mount in the container: %s", line)
			}
		}
	})
	t.Run("non-root", func(t *testing.T) {
		if r.UID != testUID || r.EUID != testUID || r.GID != testGID || r.EGID != testGID {
			t.Errorf("uid %d euid %d gid %d egid %d, want %d:%d", r.UID, r.EUID, r.GID, r.EGID, testUID, testGID)
		}
		for _, g := range r.Groups {
			if g == 0 {
				t.Errorf("supplementary group 0 in %v", r.Groups)
			}
		}
	})
	t.Run("read-only root, writable scratch and tmp", func(t *testing.T) {
		for _, dir := range []string{"/", "/etc"} {
			if !strings.Contains(r.Writes[dir], "read-only file system") {
				t.Errorf("writing to %s: %q, want read-only file system", dir, r.Writes[dir])
			}
		}
		for _, dir := range []string{"/tmp", "/scratch"} {
			if r.Writes[dir] != "ok" {
				t.Errorf("writing to %s: %q, want ok", dir, r.Writes[dir])
			}
		}
	})
	t.Run("no capabilities, no new privileges", func(t *testing.T) {
		for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
			v, ok := r.Status[k]
			if n, err := strconv.ParseUint(v, 16, 64); !ok || err != nil || n != 0 {
				t.Errorf("%s = %q, want 0", k, v)
			}
		}
		if r.Status["NoNewPrivs"] != "1" {
			t.Errorf("NoNewPrivs = %q, want 1", r.Status["NoNewPrivs"])
		}
		if r.Status["Seccomp"] != "2" {
			t.Errorf("Seccomp = %q, want 2 (filtered)", r.Status["Seccomp"])
		}
	})
}

// TestSecurityControl shows the no-network test can fail: the same probe
// in a container on Docker's default bridge does reach the host listener
// through the gateway.
func TestSecurityControl(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	port, accepted := listener(t)
	addr := net.JoinHostPort(bridgeGateway(t, e), port)
	spec := e.spec("security", "--dial", addr)
	spec.WorkerID = e.workerID
	cfg, hc, err := ContainerConfig(spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg.NetworkDisabled = false
	hc.NetworkMode = "bridge"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := e.cli.ContainerCreate(ctx, cfg, hc, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	waitC, errC := e.cli.ContainerWait(ctx, c.ID, container.WaitConditionNextExit)
	if err := e.cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waitC:
	case err := <-errC:
		t.Fatal(err)
	}
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("a bridged container could not reach the host listener, so the no-network test proves nothing here")
	}
}
