//go:build !race

package fit

import "runtime"

// The normal build's front protocol: a P's front needs no lock, since only
// the goroutine pinned to that P touches it (package slab's cache_norace.go).

type frontLock struct{}

// lock reports whether the front may be used: always, here.
func (*frontLock) lock() bool { return true }
func (*frontLock) unlock()    {}

// quiesceFronts waits until no goroutine still uses the fronts taken out
// of their slots: a goroutine that loaded one is pinned, so a
// stop-the-world completes only after every such section has ended.
func quiesceFronts(old []*front) {
	if len(old) > 0 {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
	}
}
