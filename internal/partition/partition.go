// Package partition splits a job's input files into mapper loads: balanced
// by compressed size (largest file to the lightest load) and bounded by
// bytes and files per task, so that mappers finish at about the same time
// and no mapper gets more than it can read within its run time.
package partition

import (
	"container/heap"
	"slices"
	"strings"

	"github.com/af-project/af/internal/taskdef"
)

// Balance splits files into loads.
//
// maxBytes bounds the sum of sizes in a load and maxFiles the number of files
// in a load; a bound <= 0 means "no bound". A single file larger than maxBytes
// gets a load of its own (it cannot be split, and refusing it would make the
// job impossible to run).
//
// The algorithm aims at the fewest loads first and at balance second:
//
//  1. Files larger than maxBytes each get their own load.
//  2. The rest are sorted by size, largest first (ties by key, so the output
//     is deterministic), and k = max(ceil(total/maxBytes), ceil(n/maxFiles), 1)
//     loads are opened: no packing can use fewer.
//  3. Each file goes to the lightest load (Graham's LPT rule, a min-heap by
//     bytes). A load that reached maxFiles leaves the heap. When the file
//     does not fit the lightest load's bytes it fits no load, so a new load
//     is opened for it.
//
// Every file appears in exactly one load; within a load files are largest
// first (the order mappers should read them in). Loads with oversized files
// come first, then the balanced loads in the order they were opened. The
// input slice is not modified. It runs in O(n log n).
func Balance(files []taskdef.InputFile, maxBytes int64, maxFiles int) [][]taskdef.InputFile {
	if len(files) == 0 {
		return nil
	}
	var loads [][]taskdef.InputFile
	rest := make([]taskdef.InputFile, 0, len(files))
	var total int64
	for _, f := range files {
		if maxBytes > 0 && f.Size > maxBytes {
			loads = append(loads, []taskdef.InputFile{f})
			continue
		}
		rest = append(rest, f)
		total += f.Size
	}
	slices.SortFunc(loads, func(a, b []taskdef.InputFile) int { return compareFiles(a[0], b[0]) })
	if len(rest) == 0 {
		return loads
	}
	slices.SortFunc(rest, compareFiles)

	k := MinLoads(len(rest), total, maxBytes, maxFiles)
	// Loads are sized up front to their expected share so appends rarely
	// reallocate: with 150,000 files that matters.
	per := len(rest)/k + 1
	h := &loadHeap{}
	h.items = make([]*load, 0, k)
	for i := 0; i < k; i++ {
		h.items = append(h.items, &load{order: i, files: make([]taskdef.InputFile, 0, per)})
	}
	all := slices.Clone(h.items)
	heap.Init(h)

	for _, f := range rest {
		for {
			if h.Len() == 0 {
				l := &load{order: len(all), files: make([]taskdef.InputFile, 0, per)}
				all = append(all, l)
				heap.Push(h, l)
			}
			l := h.items[0]
			if maxFiles > 0 && len(l.files) >= maxFiles {
				// Full by count: it can never take another file.
				heap.Pop(h)
				continue
			}
			if maxBytes > 0 && l.bytes+f.Size > maxBytes {
				// The lightest load has no room, so none has.
				l = &load{order: len(all), files: make([]taskdef.InputFile, 0, per)}
				all = append(all, l)
				l.add(f)
				heap.Push(h, l)
				break
			}
			l.add(f)
			heap.Fix(h, 0)
			break
		}
	}
	for _, l := range all {
		if len(l.files) > 0 {
			loads = append(loads, l.files)
		}
	}
	return loads
}

// MinLoads is the lower bound on the number of loads for n files totalling
// total bytes, none larger than maxBytes: max(ceil(total/maxBytes),
// ceil(n/maxFiles), 1). A bound <= 0 does not constrain.
func MinLoads(n int, total, maxBytes int64, maxFiles int) int {
	if n == 0 {
		return 0
	}
	k := 1
	if maxBytes > 0 {
		if b := int((total + maxBytes - 1) / maxBytes); b > k {
			k = b
		}
	}
	if maxFiles > 0 {
		if c := (n + maxFiles - 1) / maxFiles; c > k {
			k = c
		}
	}
	return k
}

// compareFiles orders files largest first, then by key, so equal inputs
// always give equal loads.
func compareFiles(a, b taskdef.InputFile) int {
	if a.Size != b.Size {
		if a.Size > b.Size {
			return -1
		}
		return 1
	}
	return strings.Compare(a.Key, b.Key)
}

type load struct {
	order int
	bytes int64
	files []taskdef.InputFile
}

func (l *load) add(f taskdef.InputFile) {
	l.files = append(l.files, f)
	l.bytes += f.Size
}

// loadHeap is a min-heap of loads by bytes, then file count, then the order
// they were opened in (ties must be broken for determinism).
type loadHeap struct{ items []*load }

func (h *loadHeap) Len() int { return len(h.items) }
func (h *loadHeap) Less(i, j int) bool {
	a, b := h.items[i], h.items[j]
	if a.bytes != b.bytes {
		return a.bytes < b.bytes
	}
	if len(a.files) != len(b.files) {
		return len(a.files) < len(b.files)
	}
	return a.order < b.order
}
func (h *loadHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *loadHeap) Push(x any)    { h.items = append(h.items, x.(*load)) }
func (h *loadHeap) Pop() any {
	n := len(h.items)
	x := h.items[n-1]
	h.items = h.items[:n-1]
	return x
}
