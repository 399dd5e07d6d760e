package slab

import "unsafe"

// entry is a free block held by a P's cache: its address and its state in
// its slab, so handing it out needs no lookup.
type entry struct {
	p  unsafe.Pointer
	st *uint16
}

// maxBatch is the most blocks moved between a cache and the slabs under
// one lock.
const maxBatch = 32

// batchOf returns how many blocks of size bytes move per refill or flush:
// about 8 KiB worth, between 2 and maxBatch. A bin holds twice that.
func batchOf(size uintptr) int { return int(min(max(8192/size, 2), maxBatch)) }

// bin is one class's part of a P's cache: a stack of free blocks and the
// counters of what this P handed out and took back (net; negative when it
// frees more than it allocates, as a consumer does).
//
// Hot fields first: n, cap and e are read on every Malloc and Free.
type bin struct {
	n      int32
	cap    int32
	blocks int64
	bytes  int64
	e      [2 * maxBatch]entry // inline: no slice header to load on the way
}

// pcache is one P's cache: per-P, so no lock is needed in the normal build
// (only the goroutine pinned to the P touches it; see procPin). Trim and
// Close take caches out of their slots and wait for a stop-the-world
// before emptying them (drain). In race builds a mutex stands in for the
// pinning, so the race detector can check the same code.
type pcache struct {
	cacheLock
	nextSample countdown // bytes until the next heap-profile sample
	bins       [NumClasses]bin
}

func newPcache(h *Heap) *pcache {
	pc := new(pcache)
	pc.nextSample = countdown(h.nextSample())
	for c := range pc.bins {
		pc.bins[c].cap = int32(2 * h.classes[c].batch)
	}
	return pc
}
