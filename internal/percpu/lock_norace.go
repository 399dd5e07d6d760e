//go:build !race

package percpu

import "runtime"

// Lock is a cache's lock: nothing in the normal build, since only the
// goroutine pinned to the cache's P touches it and nothing in a pinned
// section can be preempted.
type Lock struct{}

// Acquire reports whether the cache may be used: always, here (Quiesce).
func (*Lock) Acquire() bool { return true }

// Release ends a section begun by Acquire.
func (*Lock) Release() {}

// Quiesce waits until no goroutine still uses the n caches taken out of
// their slots (lock(i) is the i-th's lock). A goroutine that loaded one is
// pinned, hence cannot be stopped; a stop-the-world therefore completes
// only after every such section has ended. runtime.ReadMemStats is the
// cheapest way to ask for one (tens of microseconds, no GC cycle). Only
// the drains pay it.
func Quiesce(n int, lock func(i int) *Lock) {
	if n > 0 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
	}
}
