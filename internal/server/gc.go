package server

import (
	"os"
	"runtime/debug"
)

// serveGCPercent is the garbage collector target `af serve` runs with.
// The server's live heap is small (the queue lives in bbolt's mmap, not on
// the heap) while every request allocates its JSON; at Go's default of
// 100 the collector ran so often that it cost a quarter of the CPU of a
// claim+complete cycle (BENCHMARKS.md, queue section). 400 lets the heap
// grow to five times its live size between collections, a few tens of MB
// here.
const serveGCPercent = 400

// TuneGC applies serveGCPercent unless the operator chose a GOGC. `af
// serve` calls it at start, and the queue benchmarks do, so they measure
// the server as it runs.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
}
