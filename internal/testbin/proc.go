package testbin

import (
	"bytes"
	"fmt"
	"net"
	"sync"
)

// FreeAddr returns a loopback host:port that was free a moment ago, for a
// process the test starts to listen on.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
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
