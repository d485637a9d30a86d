package server

import (
	"os"
	"runtime/debug"
)

// The garbage collector settings `af serve` runs with. The server's live
// heap is small (the queue lives in bbolt's mmap, not on the heap) while
// every request allocates its JSON; at Go's default GOGC of 100 the
// collector took about a quarter of the CPU of a claim+complete cycle
// (BENCHMARKS.md, queue section: 2,500 cycles/s at 100, 3,100 at 400,
// 3,400-3,800 at 800 in back-to-back runs). A soft memory limit keeps the
// high target from letting the heap run away: near it the collector runs
// as often as it must.
const (
	serveGCPercent  = 800
	serveMemorySoft = 1 << 30
)

// TuneGC applies those settings unless the operator chose GOGC or
// GOMEMLIMIT. `af serve` calls it at start, and the queue benchmarks do,
// so they measure the server as it runs.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(serveMemorySoft)
	}
}
