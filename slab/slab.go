package slab

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"unsafe"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/sys"
)

// SizeClass returns the class of a request of n bytes, 0 <= n <= MaxSize.
func SizeClass(n uintptr) int {
	if n <= 1024 {
		return int(sizeToClass16[(n+15)>>4])
	}
	return int(sizeToClass128[(n-1024+127)>>7])
}

// ClassSize returns the block size of class c.
func ClassSize(c int) uintptr { return uintptr(classSize[c]) }

// AlignedClass returns the smallest class whose blocks hold n bytes and all
// start at a multiple of align (a power of two no larger than the page
// size), or -1 if there is none.
func AlignedClass(n, align uintptr) int {
	if n > MaxSize {
		return -1
	}
	for c := SizeClass(n); c < NumClasses; c++ {
		if uintptr(classSize[c])%align == 0 {
			return c
		}
	}
	return -1
}

// Slab is one run of the arena carved into blocks of one class. All its
// fields are guarded by its class's lock.
type Slab struct {
	start  uintptr
	run    *arena.Run
	class  uint8
	dead   bool // given back to the arena: every block in it is free
	zero   bool // blocks at index >= bump are still zero
	listed bool // on the class's partial list
	nelems uint32
	nfree  uint32
	bump   uint32 // blocks [bump, nelems) were never handed out
	free   uint32 // first free block of the free list, index+1 (0: none)
	key    uint32 // XORed into the free-list links stored in blocks
	req    []uint16
	prev   *Slab
	next   *Slab
}

// Class is one size class: its slabs and counters, under mu.
type Class struct {
	mu        sync.Mutex
	size      uintptr
	magic     uint64
	nelems    uint32
	slabPages uintptr
	class     uint8
	partial   *Slab // slabs with at least one free block
	empty     *Slab // one slab with every block free, kept for reuse

	liveBlocks uint64
	liveBytes  uint64
	slabs      uint64
}

// Heap is the set of classes over one region.
type Heap struct {
	region  *arena.Region
	classes [NumClasses]Class
	closed  bool // under every class lock

	// OnCorruption is called (with the class lock held) when a free-list
	// link is found damaged; the default panics. Set before use.
	OnCorruption func(msg string)
}

// NewHeap makes the classes over region r.
func NewHeap(r *arena.Region) *Heap {
	h := &Heap{region: r}
	page := r.PageSize()
	for i := range h.classes {
		c := &h.classes[i]
		c.class = uint8(i)
		c.size = uintptr(classSize[i])
		c.magic = classDivMagic[i]
		slab := (uintptr(classSlab[i]) + page - 1) &^ (page - 1)
		c.slabPages = slab / page
		c.nelems = uint32(slab / c.size)
	}
	return h
}

// Alloc returns a block of class c holding n bytes, and whether it is
// known to be zero.
func (h *Heap) Alloc(c int, n uintptr) (unsafe.Pointer, bool, error) {
	cl := &h.classes[c]
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if h.closed {
		return nil, false, sys.ErrClosed
	}
	s := cl.partial
	if s == nil {
		var err error
		if s, err = h.refill(cl); err != nil {
			return nil, false, err
		}
	}
	var idx uint32
	zero := false
	if s.free != 0 {
		idx = s.free - 1
		next := *(*uint32)(h.region.Ptr(s.start + uintptr(idx)*cl.size)) ^ s.key
		if next != 0 && (next > s.bump || next == idx+1 || s.req[next-1] != 0) {
			h.corrupt(s, idx, next)
			next = 0 // drop the rest of the list: never follow a bad link
		}
		s.free = next
	} else {
		idx = s.bump
		s.bump++
		zero = s.zero
	}
	s.req[idx] = uint16(n + 1)
	s.nfree--
	if s.nfree == 0 || (s.free == 0 && s.bump == s.nelems) {
		cl.unlist(s)
	}
	cl.liveBlocks++
	cl.liveBytes += uint64(n)
	return h.region.Ptr(s.start + uintptr(idx)*cl.size), zero, nil
}

func (h *Heap) corrupt(s *Slab, idx, next uint32) {
	msg := fmt.Sprintf("slab: free list of class %d (%d-byte blocks) damaged: block %#x links to %d, "+
		"not a free block of its slab (a write after free or past the end of a block?)",
		s.class, h.classes[s.class].size, s.start+uintptr(idx)*h.classes[s.class].size, int64(next)-1)
	if h.OnCorruption != nil {
		h.OnCorruption(msg)
		return
	}
	panic(msg)
}

// refill finds or makes a slab with room for class cl (lock held).
func (h *Heap) refill(cl *Class) (*Slab, error) {
	if s := cl.empty; s != nil {
		cl.empty = nil
		cl.list(s)
		return s, nil
	}
	s := &Slab{class: cl.class, nelems: cl.nelems, nfree: cl.nelems, key: rand.Uint32() | 1}
	s.req = make([]uint16, cl.nelems)
	run, zero, err := h.region.Alloc(cl.slabPages, 0, arena.KindSlab, unsafe.Pointer(s), 0)
	if err != nil {
		return nil, err
	}
	s.run, s.start, s.zero = run, run.Start(), zero
	cl.slabs++
	cl.list(s)
	return s, nil
}

func (cl *Class) list(s *Slab) {
	s.listed = true
	s.prev = nil
	s.next = cl.partial
	if s.next != nil {
		s.next.prev = s
	}
	cl.partial = s
}

func (cl *Class) unlist(s *Slab) {
	if !s.listed {
		return
	}
	s.listed = false
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		cl.partial = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	}
	s.prev, s.next = nil, nil
}

// block validates that addr is the start of a live block of run's slab
// (class lock held) and returns its index.
func (h *Heap) block(cl *Class, s *Slab, addr uintptr) (uint32, error) {
	if h.closed {
		return 0, sys.ErrClosed
	}
	if s.dead {
		return 0, fmt.Errorf("%w: %#x is in a slab that has been given back", sys.ErrDoubleFree, addr)
	}
	off := uint64(addr - s.start)
	idx := off * cl.magic >> divShift
	if idx*uint64(cl.size) != off || idx >= uint64(s.nelems) {
		return 0, fmt.Errorf("%w: %#x is not the start of a %d-byte block", sys.ErrInvalidFree, addr, cl.size)
	}
	if s.req[idx] == 0 {
		return 0, fmt.Errorf("%w: %d-byte block at %#x", sys.ErrDoubleFree, cl.size, addr)
	}
	return uint32(idx), nil
}

// owner returns the slab and class of a KindSlab run.
func (h *Heap) owner(run *arena.Run) (*Slab, *Class) {
	s := (*Slab)(run.Owner())
	return s, &h.classes[s.class]
}

// Free frees the block at addr, which lies in run (a KindSlab run), and
// returns the size that had been requested for it. A bad free changes
// nothing and returns ErrInvalidFree or ErrDoubleFree.
func (h *Heap) Free(run *arena.Run, addr uintptr) (uintptr, error) {
	s, cl := h.owner(run)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	idx, err := h.block(cl, s, addr)
	if err != nil {
		return 0, err
	}
	n := uintptr(s.req[idx] - 1)
	s.req[idx] = 0
	*(*uint32)(h.region.Ptr(addr)) = s.free ^ s.key
	s.free = idx + 1
	s.nfree++
	cl.liveBlocks--
	cl.liveBytes -= uint64(n)
	if s.nfree == s.nelems {
		cl.unlist(s)
		if cl.empty == nil {
			cl.empty = s
		} else {
			h.release(cl, s)
		}
	} else if !s.listed {
		cl.list(s)
	}
	return n, nil
}

// release gives an empty slab back to the arena (class lock held).
func (h *Heap) release(cl *Class, s *Slab) {
	s.dead = true
	cl.slabs--
	_ = h.region.Free(s.run) // the run is live: it cannot fail but for Close
}

// Usable returns the block size and requested size of the live block at
// addr in run, or an error if it is not one.
func (h *Heap) Usable(run *arena.Run, addr uintptr) (size, requested uintptr, err error) {
	s, cl := h.owner(run)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	idx, err := h.block(cl, s, addr)
	if err != nil {
		return 0, 0, err
	}
	return cl.size, uintptr(s.req[idx] - 1), nil
}

// Resize changes the requested size of the live block at addr to n in
// place if the block holds n and is not more than twice too big for it.
// It returns whether it did, and the size that was requested.
func (h *Heap) Resize(run *arena.Run, addr, n uintptr) (bool, uintptr, error) {
	s, cl := h.owner(run)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	idx, err := h.block(cl, s, addr)
	if err != nil {
		return false, 0, err
	}
	old := uintptr(s.req[idx] - 1)
	if n > cl.size || n <= cl.size/2 && cl.size > 16 {
		return false, old, nil
	}
	s.req[idx] = uint16(n + 1)
	cl.liveBytes += uint64(n) - uint64(old)
	return true, old, nil
}

// Trim gives every class's cached empty slab back to the arena.
func (h *Heap) Trim() {
	for i := range h.classes {
		cl := &h.classes[i]
		cl.mu.Lock()
		if s := cl.empty; s != nil && !h.closed {
			cl.empty = nil
			h.release(cl, s)
		}
		cl.mu.Unlock()
	}
}

// Close refuses every later call.
func (h *Heap) Close() {
	for i := range h.classes {
		h.classes[i].mu.Lock()
	}
	h.closed = true
	for i := range h.classes {
		h.classes[i].mu.Unlock()
	}
}

// ClassStats is one class's counters.
type ClassStats struct {
	Size       uintptr
	LiveBlocks uint64
	LiveBytes  uint64 // requested
	Slabs      uint64
	SlabBytes  uint64
}

// Stats returns every class's counters.
func (h *Heap) Stats() [NumClasses]ClassStats {
	var out [NumClasses]ClassStats
	page := h.region.PageSize()
	for i := range h.classes {
		cl := &h.classes[i]
		cl.mu.Lock()
		out[i] = ClassStats{Size: cl.size, LiveBlocks: cl.liveBlocks, LiveBytes: cl.liveBytes,
			Slabs: cl.slabs, SlabBytes: cl.slabs * uint64(cl.slabPages*page)}
		cl.mu.Unlock()
	}
	return out
}
