//go:build !race

package slab

import "runtime"

// The normal build's cache protocol: a P's cache needs no lock, since only
// the goroutine pinned to that P touches it and nothing in a pinned
// section can be preempted (see the build variants in doc.go).

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
