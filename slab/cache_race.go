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
// unlocked) once drain has retired it. A goroutine can load a cache from
// its slot, lose the processor, and lock it only after drain took it out.
func (l *cacheLock) lock() bool {
	l.mu.Lock()
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
		pc.mu.Lock()
		pc.retired = true
		pc.mu.Unlock()
	}
}
