//go:build race

package slab

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// Under the race detector, a P's cache is also guarded by a mutex and block
// states are changed with atomic compare-and-swap, so the detector sees
// the synchronization that procPin and the stop-the-world in drain give
// the normal build, and a double free racing with itself is caught once.

const raceEnabled = true

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

func stateWord(st *uint16) (*uint32, uint) {
	p := unsafe.Pointer(st)
	off := uintptr(p) & 2 // the req array is 4-byte aligned: st is in the low or the high half
	return (*uint32)(unsafe.Add(p, -int(off))), uint(off) * 8
}

func loadState(st *uint16) uint16 {
	w, shift := stateWord(st)
	return uint16(atomic.LoadUint32(w) >> shift)
}

func setState(st *uint16, v uint16) {
	w, shift := stateWord(st)
	for {
		old := atomic.LoadUint32(w)
		if atomic.CompareAndSwapUint32(w, old, old&^(0xFFFF<<shift)|uint32(v)<<shift) {
			return
		}
	}
}

// takeLive sets a live state to stateCached and returns it; a state that is not
// live is returned unchanged with false.
func takeLive(st *uint16) (uint16, bool) {
	w, shift := stateWord(st)
	for {
		old := atomic.LoadUint32(w)
		v := uint16(old >> shift)
		if v-1 >= maxEntry { // not live, or sampled (Free's job)
			return v, false
		}
		if atomic.CompareAndSwapUint32(w, old, old&^(0xFFFF<<shift)|stateCached<<shift) {
			return v, true
		}
	}
}

// takeAny is takeLive for any live block, sampled or not.
func takeAny(st *uint16) (uint16, bool) {
	w, shift := stateWord(st)
	for {
		old := atomic.LoadUint32(w)
		v := uint16(old >> shift)
		if !live(v) {
			return v, false
		}
		if atomic.CompareAndSwapUint32(w, old, old&^(0xFFFF<<shift)|stateCached<<shift) {
			return v, true
		}
	}
}
