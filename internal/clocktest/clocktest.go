// Package clocktest is the fake clock of af's tests: time moves only when
// the test advances it, and the timers After hands out fire as it passes
// them, so lease expiry, deadlines and max run times are tested without
// sleeping. *Fake satisfies the Clock interfaces of queue, runner, notify
// and index.
package clocktest

import (
	"sync"
	"testing"
	"time"
)

// Fake is a clock that moves only when Advance is called. It is safe for
// concurrent use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	added   chan struct{}
}

type waiter struct {
	at time.Time
	c  chan time.Time
}

// New returns a fake clock reading start.
func New(start time.Time) *Fake {
	return &Fake{now: start, added: make(chan struct{}, 1)}
}

// Now returns the clock's time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After is time.After on the fake clock: the channel receives once Advance
// has moved the clock d past now.
func (c *Fake) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), c: ch})
	select {
	case c.added <- struct{}{}:
	default:
	}
	return ch
}

// Advance moves the clock forward by d and fires every timer it passes.
func (c *Fake) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.c <- c.now
	}
	c.waiters = kept
}

// WaitForTimer blocks until some goroutine waits on a timer of the clock,
// so a test advances the clock only once the code under test is waiting
// (a signal, not a sleep). It fails t after a minute.
func (c *Fake) WaitForTimer(t testing.TB) {
	t.Helper()
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		n := len(c.waiters)
		c.mu.Unlock()
		if n > 0 {
			return
		}
		select {
		case <-c.added:
		case <-deadline.C:
			t.Fatal("timed out waiting for a timer on the fake clock")
		}
	}
}
