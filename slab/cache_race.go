//go:build race

package slab

import "sync"

// The race build's cache protocol: the same pinned sections, each also
// holding the cache's mutex, because the race detector cannot see the
// exclusion that procPin and drain's stop-the-world give the normal build
// (see the build variants in doc.go).

type cacheLock struct {
	mu      sync.Mutex
	retired bool // drained: whoever still holds a pointer to it must not use it
}

// lock locks the cache and reports whether it may be used: false (and
// unlocked) once drain has retired it (a goroutine may have loaded the
// cache from its slot just before drain took it out). Every holder of the
// mutex is pinned — the pinned sections, and Stats and quiesce, which pin
// to hold it — so a holder is running on another P and lets go soon: lock
// spins instead of parking, since parking while pinned is not allowed.
func (l *cacheLock) lock() bool {
	for !l.mu.TryLock() {
	}
	if l.retired {
		l.mu.Unlock()
		return false
	}
	return true
}

func (l *cacheLock) unlock() { l.mu.Unlock() }

// quiesce waits until no goroutine still uses the caches taken out of
// their slots, and retires them: every later lock of them fails.
func quiesce(old []*pcache) {
	for _, pc := range old {
		procPin()
		if pc.lock() {
			pc.retired = true
			pc.unlock()
		}
		procUnpin()
	}
}
