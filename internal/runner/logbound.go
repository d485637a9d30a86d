package runner

import (
	"fmt"
	"io"
	"sync"
)

// stream numbers index logLimit.dst.
const (
	streamStdout = 0
	streamStderr = 1
)

// logLimit bounds what a container's output costs the worker. The first
// head bytes (stdout and stderr together) go straight to the caller's
// writers, so the live log shows a job starting up as it happens; past
// that only the last tail bytes are kept, in memory, and written after an
// elision marker when the container ends. A job that prints gigabytes
// costs at most head+tail bytes of log, and the end of its output, where
// the traceback usually is, survives.
type logLimit struct {
	mu       sync.Mutex
	head     int64
	tail     int64
	dst      [2]io.Writer
	passed   int64 // bytes written through during the head
	total    int64 // every byte the container wrote
	ring     []logChunk
	ringSize int64
	elided   int64
	err      error // first error from a destination writer
}

type logChunk struct {
	stream int
	b      []byte
}

// newLogLimit returns a limiter writing to stdout and stderr; nil writers
// discard. head or tail below zero means unbounded.
func newLogLimit(stdout, stderr io.Writer, head, tail int64) *logLimit {
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	return &logLimit{head: head, tail: tail, dst: [2]io.Writer{stdout, stderr}}
}

// writer returns the io.Writer for one stream.
func (l *logLimit) writer(stream int) io.Writer {
	return logStream{l: l, stream: stream}
}

type logStream struct {
	l      *logLimit
	stream int
}

func (s logStream) Write(p []byte) (int, error) {
	s.l.write(s.stream, p)
	// A failing log destination must not stop the job: the error is kept
	// for the Result and the output keeps flowing.
	return len(p), nil
}

func (l *logLimit) write(stream int, p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := int64(len(p))
	l.total += n
	if l.head < 0 || l.tail < 0 {
		l.pass(stream, p)
		return
	}
	if l.passed < l.head {
		k := min(l.head-l.passed, n)
		l.pass(stream, p[:k])
		l.passed += k
		p = p[k:]
	}
	if len(p) == 0 {
		return
	}
	if int64(len(p)) > l.tail {
		l.elided += int64(len(p)) - l.tail
		p = p[int64(len(p))-l.tail:]
	}
	if len(p) > 0 {
		if last := len(l.ring) - 1; last >= 0 && l.ring[last].stream == stream && len(l.ring[last].b) < 64<<10 {
			l.ring[last].b = append(l.ring[last].b, p...)
		} else {
			l.ring = append(l.ring, logChunk{stream: stream, b: append([]byte(nil), p...)})
		}
		l.ringSize += int64(len(p))
	}
	for l.ringSize > l.tail {
		excess := l.ringSize - l.tail
		front := &l.ring[0]
		if int64(len(front.b)) <= excess {
			l.ringSize -= int64(len(front.b))
			l.elided += int64(len(front.b))
			l.ring[0] = logChunk{}
			l.ring = l.ring[1:]
			continue
		}
		front.b = front.b[excess:]
		l.ringSize -= excess
		l.elided += excess
	}
}

func (l *logLimit) pass(stream int, p []byte) {
	if len(p) == 0 || l.err != nil {
		return
	}
	if _, err := l.dst[stream].Write(p); err != nil {
		l.err = fmt.Errorf("writing the container's %s to the log: %w", streamName(stream), err)
	}
}

// finish writes the kept tail, after a marker saying how much was elided.
// The limiter must get no more writes after it.
func (l *logLimit) finish() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.elided > 0 {
		l.pass(streamStderr, []byte(fmt.Sprintf("\n[… %d bytes elided …]\n", l.elided)))
	}
	for _, c := range l.ring {
		l.pass(c.stream, c.b)
	}
	l.ring, l.ringSize = nil, 0
}

func (l *logLimit) stats() (total, elided int64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.elided, l.err
}

func streamName(stream int) string {
	if stream == streamStdout {
		return "stdout"
	}
	return "stderr"
}
