//go:build race

package fit

import "sync"

// The race build's front protocol: the same pinned sections, each also
// holding the front's mutex, because the race detector cannot see the
// exclusion that the pin and the drain's stop-the-world give the normal
// build (package slab's cache_race.go).

type frontLock struct {
	mu      sync.Mutex
	retired bool // drained: whoever still holds a pointer to it must not use it
}

// lock locks the front and reports whether it may be used: false (and
// unlocked) once a drain retired it. Every holder is pinned, hence
// running, and lets go soon: lock spins, since parking while pinned is
// not allowed.
func (l *frontLock) lock() bool {
	for !l.mu.TryLock() {
	}
	if l.retired {
		l.mu.Unlock()
		return false
	}
	return true
}

func (l *frontLock) unlock() { l.mu.Unlock() }

// quiesceFronts retires the fronts taken out of their slots: every later
// lock of them fails.
func quiesceFronts(old []*front) {
	for _, f := range old {
		procPin()
		if f.lock() {
			f.retired = true
			f.unlock()
		}
		procUnpin()
	}
}
