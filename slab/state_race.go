//go:build race

package slab

import (
	"sync/atomic"
	"unsafe"
)

// Block-state accessors of the race build: atomic operations on the
// 32-bit word holding the state, so that a double free racing with itself
// is caught once (one compare-and-swap wins) instead of being reported as
// a data race inside the allocator.

func stateWord(st *uint16) (*uint32, uint) {
	p := unsafe.Pointer(st)
	off := uintptr(p) & 2 // the states array is 4-byte aligned: st is in the low or the high half
	return (*uint32)(unsafe.Add(p, -int(off))), uint(off) * 8
}

func loadState(st *uint16) uint16 {
	w, shift := stateWord(st)
	return uint16(atomic.LoadUint32(w) >> shift)
}

func storeState(st *uint16, v uint16) {
	for !casState(st, loadState(st), v) {
	}
}

// casState sets *st to v if it holds old.
func casState(st *uint16, old, v uint16) bool {
	w, shift := stateWord(st)
	for {
		word := atomic.LoadUint32(w)
		if uint16(word>>shift) != old {
			return false
		}
		if atomic.CompareAndSwapUint32(w, word, word&^(0xFFFF<<shift)|uint32(v)<<shift) {
			return true
		}
		// the other half of the word changed: try again
	}
}
