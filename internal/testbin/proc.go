package testbin

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// FreeAddr returns a loopback host:port that was free a moment ago, for a
// process the test starts to listen on.
//
// The port is drawn from below the kernel's ephemeral range: a port the
// kernel handed out for 127.0.0.1:0 goes back to the pool it also uses for
// outgoing connections, and with test packages running in parallel another
// process's connection took one between our close and the server's listen
// (seen in CI). Ports below the range are only ever taken on purpose.
func FreeAddr() (string, error) {
	lo, hi := belowEphemeral()
	for range 50 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(lo+rand.IntN(hi-lo)))
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// belowEphemeral is the port range FreeAddr draws from: from 10000 up to
// the start of the kernel's ephemeral range (Linux's default 32768 when it
// cannot be read).
func belowEphemeral() (lo, hi int) {
	lo, hi = 10000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if start, err := strconv.Atoi(f[0]); err == nil && start > lo+1000 {
				hi = start
			}
		}
	}
	return lo, hi
}

// SyncBuffer collects output written from several goroutines (a process's
// stdout and stderr, a logger) for a test to read. The zero value is ready.
type SyncBuffer struct {
	// Limit, when positive, caps what is kept: once more than Limit bytes
	// are held, later writes are dropped (and reported written), so a
	// chatty server cannot fill memory.
	Limit int

	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p, up to Limit.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Limit > 0 && b.buf.Len() > b.Limit {
		return len(p), nil
	}
	return b.buf.Write(p)
}

// String returns everything kept so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
