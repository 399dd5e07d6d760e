//go:build !race

package slab

import "runtime"

// In the normal build a P's cache needs no lock: only the goroutine pinned
// to that P touches it, and nothing in a pinned section can be preempted.
// A block's state is touched only by whoever owns the block at the moment
// (its user, or the cache holding it), so plain loads and stores catch any
// double free that is not itself a data race in the caller.

const raceEnabled = false

type cacheLock struct{}

// lock reports whether the cache may be used: always, here (see quiesce).
func (*cacheLock) lock() bool { return true }
func (*cacheLock) unlock()    {}

// quiesce waits until no goroutine still uses the caches taken out of
// their slots. A goroutine that loaded one is pinned, hence cannot be
// stopped; a stop-the-world therefore completes only after every such
// section has ended. runtime.ReadMemStats is the cheapest way to ask for
// one (tens of microseconds, no GC cycle). Only Trim and Close pay it.
func quiesce(old []*pcache) {
	if len(old) > 0 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
	}
}

func loadState(st *uint16) uint16 { return *st }

func setState(st *uint16, v uint16) { *st = v }

func takeLive(st *uint16) (uint16, bool) {
	v := *st
	if v-1 >= maxEntry { // not live, or sampled (Free's job, with or without checks)
		return v, false
	}
	*st = stateCached
	return v, true
}

// takeAny is takeLive for any live block, sampled or not.
func takeAny(st *uint16) (uint16, bool) {
	v := *st
	if !live(v) {
		return v, false
	}
	*st = stateCached
	return v, true
}
