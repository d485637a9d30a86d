package hosttest

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/testbin"
)

// reach reports whether from can open a TCP connection to addr within 2 s.
func reach(from *Host, addr string) bool {
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command("ip", "netns", "exec", from.NS, "timeout", "2", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s", host, port))
	return cmd.Run() == nil
}

// rules lists the harness's partition rules in h's namespace.
func rules(t *testing.T, h *Host) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.NS, "iptables", "-S").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables -S in %s: %v\n%s", h.NS, err, out)
	}
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, Prefix+"-partition") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// twoHosts makes a network with hosts a and b, an SMTP sink listening on
// b (any TCP server will do), and tears it all down at the end.
func twoHosts(t *testing.T) (nt *Net, a, b *Host, addr string) {
	t.Helper()
	if err := Requirements(); err != nil {
		t.Fatal(err)
	}
	nt, err := NewNet(0, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nt.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if a, err = nt.AddHost("a"); err != nil {
		t.Fatal(err)
	}
	if b, err = nt.AddHost("b"); err != nil {
		t.Fatal(err)
	}
	addr = b.IP + ":2525"
	p := NewProc(b, "sink", filepath.Join(t.TempDir(), "sink.log"), nil, t.Logf, testbin.Build(t, "demo/smtpsink"), "--listen", addr)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	deadline := time.Now().Add(30 * time.Second)
	for !reach(a, addr) {
		if time.Now().After(deadline) {
			t.Fatalf("%s does not reach %s:\n%s", a.NS, addr, p.Log(2000))
		}
	}
	return nt, a, b, addr
}

// TestPartitionHeal: a partition cuts TCP between two namespaces, both
// ways or one way as asked; Heal restores it and leaves no rule behind.
func TestPartitionHeal(t *testing.T) {
	t.Parallel()
	nt, a, b, addr := twoHosts(t)
	for _, tc := range []struct {
		name      string
		dir       Direction
		wantRules int
	}{
		{"both ways", Both, 2},
		{"one way", OneWay, 1},
	} {
		if err := nt.Partition(a, b, tc.dir); err != nil {
			t.Fatal(err)
		}
		// Twice: idempotent, still one rule per chain.
		if err := nt.Partition(a, b, tc.dir); err != nil {
			t.Fatal(err)
		}
		if got := rules(t, a); strings.Count(got, "-j DROP") != tc.wantRules || !strings.Contains(got, "-A OUTPUT -d "+b.IP) {
			t.Errorf("%s: rules in %s:\n%s\nwant %d DROP rules", tc.name, a.NS, got, tc.wantRules)
		}
		if reach(a, addr) {
			t.Errorf("%s: %s still reaches %s", tc.name, a.NS, addr)
		}
		if err := nt.Heal(b, a); err != nil { // either order heals
			t.Fatal(err)
		}
		if got := rules(t, a); got != "" {
			t.Errorf("%s: rules left after Heal:\n%s", tc.name, got)
		}
		if !reach(a, addr) {
			t.Errorf("%s: healed, %s does not reach %s", tc.name, a.NS, addr)
		}
	}
	// Nothing to heal is no error (cleanup calls it on anything).
	if err := nt.HealAll(); err != nil {
		t.Fatal(err)
	}
}

// TestSweepStale: a cluster whose process died (its lock released, no
// Close) is swept by the next harness: its processes killed, namespaces,
// links and FORWARD rule gone.
func TestSweepStale(t *testing.T) {
	t.Parallel()
	nt, _, b, _ := twoHosts(t)
	out, _ := exec.Command("ip", "netns", "pids", b.NS).Output()
	pids := strings.Fields(string(out))
	if len(pids) == 0 {
		t.Fatalf("no process in %s", b.NS)
	}
	// A crash: the lock goes with the process, nothing is cleaned.
	nt.lock.Close()
	SweepStale(t.Logf)
	for _, ns := range listNetns() {
		if strings.HasPrefix(ns, fmt.Sprintf("%s%d-", Prefix, nt.N)) {
			t.Errorf("namespace %s survived the sweep", ns)
		}
	}
	for _, l := range listLinks() {
		if l == nt.Bridge {
			t.Errorf("bridge %s survived the sweep", l)
		}
	}
	if out, _ := exec.Command("iptables", "-S", "FORWARD").Output(); strings.Contains(string(out), nt.Bridge) {
		t.Errorf("FORWARD rule of %s survived the sweep:\n%s", nt.Bridge, out)
	}
	for _, pid := range pids {
		if exec.Command("kill", "-0", pid).Run() == nil {
			if st, _ := exec.Command("ps", "-o", "stat=", "-p", pid).Output(); !strings.HasPrefix(string(st), "Z") {
				t.Errorf("process %s in the swept namespace is alive", pid)
			}
		}
	}
}
