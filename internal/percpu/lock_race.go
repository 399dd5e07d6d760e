//go:build race

package percpu

import "sync"

// Lock is a cache's lock in race builds: a mutex each pinned section
// holds, and whether a drain retired the cache.
type Lock struct {
	mu      sync.Mutex
	retired bool // drained: whoever still holds a pointer to it must not use it
}

// Acquire locks the cache and reports whether it may be used: false (and
// unlocked) once Quiesce has retired it (a goroutine may have loaded the
// cache from its slot just before a drain took it out). Every holder of
// the mutex is pinned, so a holder is running on another P and lets go
// soon: Acquire spins instead of parking, since parking while pinned is
// not allowed.
func (l *Lock) Acquire() bool {
	for !l.mu.TryLock() {
	}
	if l.retired {
		l.mu.Unlock()
		return false
	}
	return true
}

// Release ends a section begun by Acquire.
func (l *Lock) Release() { l.mu.Unlock() }

// Quiesce retires the n caches taken out of their slots (lock(i) is the
// i-th's lock): every later Acquire of them fails, and one under way has
// ended.
func Quiesce(n int, lock func(i int) *Lock) {
	for i := range n {
		l := lock(i)
		Pin()
		if l.Acquire() {
			l.retired = true
			l.Release()
		}
		Unpin()
	}
}
