package clocktest

import (
	"testing"
	"time"
)

func TestFake(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	c := New(start)
	if !c.Now().Equal(start) {
		t.Fatalf("Now = %v, want %v", c.Now(), start)
	}
	short, long := c.After(time.Second), c.After(time.Minute)
	now := c.After(0)
	select {
	case <-now:
	default:
		t.Fatal("After(0) did not fire at once")
	}
	c.WaitForTimer(t)
	c.Advance(999 * time.Millisecond)
	select {
	case <-short:
		t.Fatal("a 1 s timer fired after 999 ms")
	default:
	}
	c.Advance(time.Millisecond)
	select {
	case at := <-short:
		if !at.Equal(start.Add(time.Second)) {
			t.Fatalf("timer fired at %v", at)
		}
	default:
		t.Fatal("a 1 s timer did not fire at 1 s")
	}
	select {
	case <-long:
		t.Fatal("a 1 min timer fired at 1 s")
	default:
	}
	c.Advance(time.Hour)
	select {
	case <-long:
	default:
		t.Fatal("a 1 min timer did not fire after an hour")
	}
	if got := c.Now().Sub(start); got != time.Hour+time.Second {
		t.Fatalf("clock moved %v, want 1h0m1s", got)
	}
}

// TestWaitForTimer checks that WaitForTimer returns once another goroutine
// waits on the clock.
func TestWaitForTimer(t *testing.T) {
	t.Parallel()
	c := New(time.Unix(0, 0))
	fired := make(chan struct{})
	go func() {
		<-c.After(time.Second)
		close(fired)
	}()
	c.WaitForTimer(t)
	c.Advance(time.Second)
	<-fired
}
