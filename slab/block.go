package slab

import (
	"unsafe"

	"github.com/brkmap/alloc/arena"
)

// Block states, a uint16 per block in its slab. A live block's state is
// its block size minus its requested size plus one (1..maxEntry), with
// sampledBit set when the heap profile sampled it. A block never holds much
// more than 4096 bytes it was not asked for: classes are at most 4096 apart,
// an aligned request takes the next multiple of its alignment (at most the
// page size), and Debug's canary adds 8; maxEntry leaves room to spare.
//
// The states out of the slab but free (in a P's cache, or a batch on its
// way) say what the block holds: stateCached (it was handed out before),
// stateFresh (never handed out, its pages not known zero), stateZero (never
// handed out, zero).
const (
	stateFree   = 0      // in the slab: on its free list, or never handed out
	stateFresh  = 0x7FFD // out of the slab, free, never handed out
	stateCached = 0x7FFE // out of the slab, free, handed out before
	stateZero   = 0x7FFF // like stateFresh, and known to be zero
	sampledBit  = 0x8000
	maxEntry    = 1 << 14
)

// liveState encodes a live block of size bytes holding n.
func liveState(size, n uintptr) uint16 { return uint16(size - n + 1) }

// requested decodes the requested size of a live block of size bytes.
func requested(size uintptr, v uint16) uintptr { return size + 1 - uintptr(v&^sampledBit) }

// live reports whether a state is a live block's, sampled or not.
func live(v uint16) bool { return (v&^sampledBit)-1 < maxEntry }

// takeLive sets the state of a live block that is not sampled to
// stateCached and returns the old state; any other state is returned
// unchanged with false (a sampled block is Free's job). It is FreeFast's
// check and claim in one: of two goroutines freeing the same block at once,
// one wins.
func takeLive(st *uint16) (uint16, bool) {
	for {
		v := loadState(st)
		if v-1 >= maxEntry {
			return v, false
		}
		if casState(st, v, stateCached) {
			return v, true
		}
	}
}

// takeAny is takeLive for any live block, sampled or not.
func takeAny(st *uint16) (uint16, bool) {
	for {
		v := loadState(st)
		if !live(v) {
			return v, false
		}
		if casState(st, v, stateCached) {
			return v, true
		}
	}
}

// Slab is one run of the arena carved into blocks of one class. Its fields
// are guarded by its class's lock (central.mu), except states: a block's
// state is touched only by whoever owns the block (see the package
// comment).
type Slab struct {
	// The slab's run, first so that the arena's page map, which points at
	// the run, points at the slab: one hop from an address to its slab.
	arena.Run
	start  uintptr // the run's first address, copied here next to size and magic
	size   uint64  // block size
	magic  uint64  // classDivMagic of the class
	class  uint8
	zero   bool // blocks at index >= bump are still zero
	listed bool // on the class's partial list
	nelems uint32
	nfree  uint32 // blocks in the slab's free list or never handed out
	bump   uint32 // blocks [bump, nelems) were never handed out
	free   uint32 // first block of the free list, index+1 (0: none)
	key    uint32 // XORed into the free-list links stored in blocks
	pages  uint32 // the run's length, fixed when the slab is made
	states []uint16
	prev   *Slab
	next   *Slab
}

// slabOf returns the slab whose run is run (a KindSlab run).
func slabOf(run *arena.Run) *Slab { return (*Slab)(unsafe.Pointer(run)) }

// index returns the index of the block that starts at addr, and whether
// addr is the start of a block of s at all.
func (s *Slab) index(addr uintptr) (uint64, bool) {
	off := uint64(addr - s.start)
	idx := off * s.magic >> divShift
	return idx, idx*s.size == off && idx < uint64(len(s.states))
}

// addr returns the address of block idx.
func (s *Slab) addr(idx uint32) uintptr { return s.start + uintptr(idx)*uintptr(s.size) }
