// Package hosttest runs af on several hosts on this one machine: a private
// Linux bridge, one network namespace per host (the queue, MinIO, an SMTP
// sink, and workers), real processes started inside them, and faults a
// test (or a person, via `make cluster`) injects: kill and restart any
// process, partition any host from any other (both ways or one way) and
// heal it, stop and start MinIO, restart af serve on its data dir.
//
// Everything it makes is named afh<N>… where 10.231.N.0/24 is the
// cluster's private subnet, claimed by an flock on /run/af-hosttest/N.lock
// for the cluster's life: parallel clusters never share a name, and a
// leftover of a crashed run (its lock released with its process) is swept
// by the next Up. Namespaces get no default route, so traffic stays
// between the namespaces the harness made and the root namespace's own
// address on the bridge. It needs root, ip (iproute2) and iptables; it
// never skips: a missing piece is an error that says how to install it.
package hosttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/af-project/af/internal/runner"
)

// Prefix starts the name of every bridge, veth, namespace and rule comment
// the harness makes, so a sweep finds them.
const Prefix = "afh"

// LockDir holds one lock file per claimed subnet.
const LockDir = "/run/af-hosttest"

// cmdTimeout bounds every ip and iptables call.
const cmdTimeout = 20 * time.Second

// Logf is where the harness says what it did.
type Logf func(format string, args ...any)

// Net is a private bridge and the namespaces on it.
type Net struct {
	// N is the third octet of the subnet 10.231.N.0/24.
	N int
	// Bridge is the bridge's name; RootIP is the root namespace's address
	// on it (how the test process and a person reach the hosts).
	Bridge, RootIP string
	logf           Logf
	lock           *os.File

	mu     sync.Mutex
	hosts  []*Host
	rules  map[rule]bool
	closed bool
}

// Host is one network namespace with one address on the bridge.
type Host struct {
	Name string
	// NS is the namespace's name (ip netns exec NS ...).
	NS string
	// IP is the host's address on the bridge.
	IP   string
	veth string
}

// rule is one iptables rule inside a host's namespace.
type rule struct {
	ns, chain, flag, peer string
}

// Requirements fails with how to fix it unless the harness can run here.
func Requirements() error {
	if os.Geteuid() != 0 {
		return errors.New("hosttest needs root (network namespaces, a bridge, iptables): run the tests as root, as CI does")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: run `bash scripts/host-deps.sh test` (installs iproute2 and iptables)", tool)
		}
	}
	return nil
}

// NewNet claims a free subnet (n = 0: any of 10.231.100-249.0/24; else
// exactly n), sweeps what a dead holder of it left, and makes the bridge
// with the root namespace's address .1 on it.
func NewNet(n int, logf Logf) (*Net, error) {
	if err := Requirements(); err != nil {
		return nil, err
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	SweepStale(logf)
	if err := os.MkdirAll(LockDir, 0o700); err != nil {
		return nil, fmt.Errorf("hosttest: lock dir: %w", err)
	}
	candidates := []int{n}
	if n == 0 {
		candidates = nil
		start := rand.IntN(150)
		for i := range 150 {
			candidates = append(candidates, 100+(start+i)%150)
		}
	}
	used := usedSubnets()
	for _, c := range candidates {
		if c < 1 || c > 254 {
			return nil, fmt.Errorf("hosttest: subnet 10.231.%d.0/24: want 1-254", c)
		}
		if used[c] && n == 0 {
			continue
		}
		f, ok := tryLock(c)
		if !ok {
			continue
		}
		nt := &Net{N: c, Bridge: fmt.Sprintf("%s%dbr", Prefix, c), RootIP: fmt.Sprintf("10.231.%d.1", c), logf: logf, lock: f, rules: map[rule]bool{}}
		// Whatever bears this number was left by a holder that died.
		sweep(c, logf)
		if used := usedSubnets(); used[c] {
			f.Close()
			if n != 0 {
				return nil, fmt.Errorf("hosttest: 10.231.%d.0/24 is in use by an interface the harness did not make", c)
			}
			continue
		}
		if err := nt.makeBridge(); err != nil {
			nt.Close()
			return nil, err
		}
		return nt, nil
	}
	return nil, errors.New("hosttest: no free subnet in 10.231.100-249.0/24 (stale clusters? run `make cluster-down`)")
}

func (nt *Net) makeBridge() error {
	steps := [][]string{
		{"ip", "link", "add", nt.Bridge, "type", "bridge"},
		{"ip", "addr", "add", nt.RootIP + "/24", "dev", nt.Bridge},
		{"ip", "link", "set", nt.Bridge, "up"},
	}
	for _, s := range steps {
		if err := run(nt.logf, s...); err != nil {
			return err
		}
	}
	// Docker sets the root FORWARD policy to DROP, and with br_netfilter
	// bridged frames pass through it: accept what stays on our bridge.
	return run(nt.logf, "iptables", "-I", "FORWARD", "-i", nt.Bridge, "-o", nt.Bridge, "-j", "ACCEPT", "-m", "comment", "--comment", nt.comment())
}

func (nt *Net) comment() string { return fmt.Sprintf("%s%d", Prefix, nt.N) }

// AddHost makes a namespace named after name, with loopback up and one
// veth on the bridge at 10.231.N.(10+k).
func (nt *Net) AddHost(name string) (*Host, error) {
	nt.mu.Lock()
	k := len(nt.hosts)
	nt.mu.Unlock()
	if !regexp.MustCompile(`^[a-z0-9]{1,12}$`).MatchString(name) {
		return nil, fmt.Errorf("hosttest: host name %q: want 1-12 of [a-z0-9]", name)
	}
	h := &Host{
		Name: name,
		NS:   fmt.Sprintf("%s%d-%s", Prefix, nt.N, name),
		IP:   fmt.Sprintf("10.231.%d.%d", nt.N, 10+k),
		veth: fmt.Sprintf("%s%dv%d", Prefix, nt.N, k),
	}
	peer := fmt.Sprintf("%s%dp%d", Prefix, nt.N, k)
	nt.mu.Lock()
	nt.hosts = append(nt.hosts, h)
	nt.mu.Unlock()
	steps := [][]string{
		{"ip", "netns", "add", h.NS},
		{"ip", "link", "add", h.veth, "type", "veth", "peer", "name", peer, "netns", h.NS},
		{"ip", "link", "set", h.veth, "master", nt.Bridge},
		{"ip", "link", "set", h.veth, "up"},
		{"ip", "-n", h.NS, "link", "set", "lo", "up"},
		{"ip", "-n", h.NS, "addr", "add", h.IP + "/24", "dev", peer},
		{"ip", "-n", h.NS, "link", "set", peer, "up"},
	}
	for _, s := range steps {
		if err := run(nt.logf, s...); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Direction says which traffic a partition drops.
type Direction int

const (
	// Both drops everything between the two hosts.
	Both Direction = iota
	// OneWay drops only what a sends to b (b's replies and b's own
	// packets still reach a).
	OneWay
)

// Partition cuts a from b: DROP rules in a's namespace on b's address
// (OUTPUT, and INPUT too for Both). Idempotent.
func (nt *Net) Partition(a, b *Host, dir Direction) error {
	rs := []rule{{a.NS, "OUTPUT", "-d", b.IP}}
	if dir == Both {
		rs = append(rs, rule{a.NS, "INPUT", "-s", b.IP})
	}
	for _, r := range rs {
		nt.mu.Lock()
		have := nt.rules[r]
		nt.mu.Unlock()
		if have {
			continue
		}
		if err := run(nt.logf, r.args("-I")...); err != nil {
			return err
		}
		nt.mu.Lock()
		nt.rules[r] = true
		nt.mu.Unlock()
	}
	return nil
}

// Heal removes the partition rules between a and b (either direction).
func (nt *Net) Heal(a, b *Host) error {
	return nt.healWhere(func(r rule) bool {
		return (r.ns == a.NS && r.peer == b.IP) || (r.ns == b.NS && r.peer == a.IP)
	})
}

// HealAll removes every partition rule. Safe to call in cleanup.
func (nt *Net) HealAll() error { return nt.healWhere(func(rule) bool { return true }) }

func (nt *Net) healWhere(match func(rule) bool) error {
	nt.mu.Lock()
	var rs []rule
	for r := range nt.rules {
		if match(r) {
			rs = append(rs, r)
		}
	}
	nt.mu.Unlock()
	var errs []error
	for _, r := range rs {
		if err := run(nt.logf, r.args("-D")...); err != nil {
			errs = append(errs, err)
			continue
		}
		nt.mu.Lock()
		delete(nt.rules, r)
		nt.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (r rule) args(op string) []string {
	return []string{"ip", "netns", "exec", r.ns, "iptables", "-w", "5", op, r.chain, r.flag, r.peer, "-j", "DROP", "-m", "comment", "--comment", Prefix + "-partition"}
}

// Close kills every process left in the namespaces, deletes them, the
// veths and the bridge and the FORWARD rule, and releases the subnet.
// Safe to call twice and after a failed NewNet.
func (nt *Net) Close() error {
	nt.mu.Lock()
	if nt.closed {
		nt.mu.Unlock()
		return nil
	}
	nt.closed = true
	nt.mu.Unlock()
	err := sweep(nt.N, nt.logf)
	if nt.lock != nil {
		nt.lock.Close()
	}
	return err
}

// SweepStale removes what every dead cluster left: namespaces, links and
// FORWARD rules named afh<N>… whose subnet lock no process holds.
func SweepStale(logf Logf) {
	seen := map[int]bool{}
	for _, ns := range listNetns() {
		if n, ok := prefixNumber(ns); ok {
			seen[n] = true
		}
	}
	for _, l := range listLinks() {
		if n, ok := prefixNumber(l); ok {
			seen[n] = true
		}
	}
	for n := range seen {
		f, ok := tryLock(n)
		if !ok {
			continue // alive
		}
		_ = sweep(n, logf)
		f.Close()
	}
}

var prefixRE = regexp.MustCompile(`^` + Prefix + `(\d{1,3})(?:br|v\d+|p\d+|-[a-z0-9]+)$`)

func prefixNumber(name string) (int, bool) {
	m := prefixRE.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// sweep removes everything bearing subnet number n. Each step is bounded;
// errors are collected, not fatal, so cleanup goes as far as it can.
func sweep(n int, logf Logf) error {
	var errs []error
	for _, ns := range listNetns() {
		if m, ok := prefixNumber(ns); !ok || m != n || !strings.Contains(ns, "-") {
			continue
		}
		killNetnsPids(ns, logf)
		if err := run(logf, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, l := range listLinks() {
		if m, ok := prefixNumber(l); ok && m == n && !strings.Contains(l, "p") {
			_ = run(logf, "ip", "link", "del", l) // a veth goes with its namespace
		}
	}
	removeJobContainers(n, logf)
	bridge := fmt.Sprintf("%s%dbr", Prefix, n)
	for range 10 {
		if run(nil, "iptables", "-D", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT", "-m", "comment", "--comment", fmt.Sprintf("%s%d", Prefix, n)) != nil {
			break
		}
		logf("hosttest: removed the FORWARD rule of %s", bridge)
	}
	return errors.Join(errs...)
}

// killNetnsPids kills -9 every process in ns and waits (bounded) until
// none is left, so the namespace really goes away.
func killNetnsPids(ns string, logf Logf) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out, err := output("ip", "netns", "pids", ns)
		if err != nil || strings.TrimSpace(out) == "" {
			return
		}
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				logf("hosttest: kill -9 %d (left in %s)", pid, ns)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	logf("hosttest: processes still in %s after 10s", ns)
}

func listNetns() []string {
	out, err := output("ip", "netns", "list")
	if err != nil {
		return nil
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

func listLinks() []string {
	out, err := output("ip", "-o", "link", "show")
	if err != nil {
		return nil
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		names = append(names, name)
	}
	return names
}

// usedSubnets are the 10.231.N.0/24 numbers some root-namespace
// interface already has an address in.
func usedSubnets() map[int]bool {
	used := map[int]bool{}
	out, _ := output("ip", "-o", "-4", "addr", "show")
	for _, m := range regexp.MustCompile(`inet 10\.231\.(\d+)\.`).FindAllStringSubmatch(out, -1) {
		if n, err := strconv.Atoi(m[1]); err == nil {
			used[n] = true
		}
	}
	return used
}

func tryLock(n int) (*os.File, bool) {
	if err := os.MkdirAll(LockDir, 0o700); err != nil {
		return nil, false
	}
	f, err := os.OpenFile(filepath.Join(LockDir, strconv.Itoa(n)+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

// run runs one command with a timeout and logs it (logf may be nil).
func run(logf Logf, argv ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if logf != nil {
		logf("hosttest: %s", strings.Join(argv, " "))
	}
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func output(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stderr = io.Discard
	out, err := cmd.Output()
	return string(out), err
}

// removeJobContainers removes the job containers of subnet n's workers
// (worker ids afh<N>-<host>): a worker killed with -9 leaves its running
// one. Docker not answering is no error here; the workers' reapers remove
// such containers later.
func removeJobContainers(n int, logf Logf) {
	out, err := output("docker", "ps", "-a", "--filter", "label="+runner.LabelManaged+"=true", "--format", `{{.ID}} {{.Label "`+runner.LabelWorkerID+`"}}`)
	if err != nil {
		return
	}
	own := fmt.Sprintf("%s%d-", Prefix, n)
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.HasPrefix(f[1], own) {
			_ = run(logf, "docker", "rm", "-f", f[0])
		}
	}
}
