// Package percpu is the protocol of the allocator's per-P caches (package
// slab's P caches, package fit's fronts): pin the goroutine to its P, use
// that P's cache with no lock and no atomic instruction, unpin. A cache
// taken out of its slot (a drain: Trim, Close, an idle pass) is emptied
// only once every goroutine that may still hold it has unpinned
// (Quiesce).
//
// Race builds add a mutex to each cache (Lock), held in each pinned
// section, because the race detector cannot see the exclusion that the
// pin and the stop-the-world give the normal build; a pinned holder spins
// on it, never parks. The protocol is the same code in both builds: only
// Lock and Quiesce differ (lock_race.go, lock_norace.go).
package percpu

import _ "unsafe" // for go:linkname

// Pin pins the calling goroutine to its P (no preemption, no migration)
// and returns the P's id; Unpin undoes it. They are the runtime's own, as
// sync.Pool uses them: a plain increment and decrement of the M's lock
// count, no atomic instruction (about 2.5 ns a pair here). Nothing between
// the two may block, allocate Go memory or take a lock that can be
// contended: the slow paths always unpin first.
//
//go:linkname Pin runtime.procPin
func Pin() int

//go:linkname Unpin runtime.procUnpin
func Unpin()
