package slab

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/errs"
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

// Block states, a uint16 per block in its slab. A live block's state is
// its block size minus its requested size plus one (1..maxEntry), with
// sampledBit set when the heap profile sampled it. A block never holds much
// more than 4096 bytes it was not asked for: classes are at most 4096 apart,
// an aligned request takes the next multiple of its alignment (at most the
// page size), and Debug's canary adds 8; maxEntry leaves room to spare.
const (
	stateFree   = 0      // in the slab: on its free list, or never handed out
	stateCached = 0x7FFE // out of the slab but free: in a P's cache or a batch on its way
	stateZero   = 0x7FFF // like stateCached, and known to be zero
	sampledBit  = 0x8000
	maxEntry    = 1 << 14
)

// liveState encodes a live block of size bytes holding n.
func liveState(size, n uintptr) uint16 { return uint16(size - n + 1) }

// requested decodes the requested size of a live block of size bytes.
func requested(size uintptr, v uint16) uintptr { return size + 1 - uintptr(v&^sampledBit) }

// live reports whether a state is a live block's, sampled or not.
func live(v uint16) bool { return (v&^sampledBit)-1 < maxEntry }

// Slab is one run of the arena carved into blocks of one class. Its fields
// are guarded by its class's lock, except req: a block's entry is touched
// only by whoever owns the block (see the package comment).
type Slab struct {
	// The slab's run, first so that the arena's page map, which points at
	// the run, points at the slab: one hop from an address to its slab.
	arena.Run
	start  uintptr // the run's first address, copied here next to size and magic
	size   uint64  // block size
	magic  uint64  // classDivMagic of the class
	class  uint8
	dead   bool // given back to the arena
	zero   bool // blocks at index >= bump are still zero
	listed bool // on the class's partial list
	nelems uint32
	nfree  uint32 // blocks in the slab's free list or never handed out
	bump   uint32 // blocks [bump, nelems) were never handed out
	free   uint32 // first block of the free list, index+1 (0: none)
	key    uint32 // XORed into the free-list links stored in blocks
	req    []uint16
	prev   *Slab
	next   *Slab
}

// SetSampling turns on sampling for a heap profile, before the heap is
// used. Each P's cache (and each class, for blocks handed out under its
// lock) counts down the bytes it hands out from an exponentially
// distributed start of mean rate, and the allocation that crosses zero is
// sampled — so a block of n bytes is sampled with probability about
// 1-exp(-n/rate), as the Go runtime samples its own heap (rate 1: every
// block). A sampled block carries sampledBit in its state; freeing it calls
// onFree before the block can be handed out again. FreeFast leaves sampled
// blocks to Free, so the fast path never looks at the bit.
func (h *Heap) SetSampling(rate int64, onFree func(addr uintptr)) {
	h.sampleRate, h.onSampledFree = rate, onFree
	for i := range h.classes {
		h.classes[i].nextSample = countdown(h.nextSample())
	}
}

// nextSample draws the bytes until the next sample: exponential with mean
// sampleRate; never, with sampling off.
func (h *Heap) nextSample() int64 {
	switch {
	case h.sampleRate <= 0:
		return math.MaxInt64
	case h.sampleRate == 1:
		return 0
	}
	return int64(rand.ExpFloat64() * float64(h.sampleRate))
}

// countdown is the bytes still to hand out before the next heap-profile
// sample: one per P's cache, one per class for blocks handed out under
// its lock.
type countdown int64

// due counts n bytes down and reports whether this block is the sample;
// with sampling off it never is (the countdown starts at MaxInt64).
func (d *countdown) due(h *Heap, n uintptr) bool {
	if *d -= countdown(n); *d >= 0 {
		return false
	}
	*d = countdown(h.nextSample())
	return true
}

// index returns the index of the block that starts at addr, and whether
// addr is the start of a block of s at all.
func (s *Slab) index(addr uintptr) (uint64, bool) {
	off := uint64(addr - s.start)
	idx := off * s.magic >> divShift
	return idx, idx*s.size == off && idx < uint64(len(s.req))
}

// slabOf returns the slab whose run is run (a KindSlab run).
func slabOf(run *arena.Run) *Slab { return (*Slab)(unsafe.Pointer(run)) }

// Class is one size class: its slabs, under mu.
type Class struct {
	mu        sync.Mutex
	size      uintptr
	slabPages uintptr
	nelems    uint32
	batch     int
	class     uint8
	partial   *Slab // slabs with at least one block to hand out
	empty     *Slab // one slab with every block free, kept for reuse
	slabs     uint64
	// nextSample: the heap-profile countdown for blocks handed out under
	// the lock (no P cache, Debug)
	nextSample countdown
	// lastReused: the last block take handed out came from a free list
	// (read by AllocDirect only)
	lastReused bool

	// blocks and bytes handed out, net, by goroutines without a P cache
	// and by caches that drain has retired
	blocks int64
	bytes  int64
}

// Heap is the set of classes over one region, with a cache per P in front.
type Heap struct {
	region *arena.Region
	caches []atomic.Pointer[pcache] // one slot per P, indexed by procPin's id
	closed atomic.Bool
	// drainMu serializes drain (Trim, Close); it is never taken on the
	// allocation paths.
	drainMu sync.Mutex
	classes [NumClasses]Class

	// sampleRate and onSampledFree are set by SetSampling before use.
	sampleRate    int64
	onSampledFree func(addr uintptr)

	// OnCorruption is called (with the class lock held) when a free-list
	// link is found damaged: addr is the block holding the link, size its
	// class's block size. The default panics. Set before use.
	OnCorruption func(addr, size uintptr, detail string)
}

// NewHeap makes the classes over region r.
func NewHeap(r *arena.Region) *Heap {
	h := &Heap{region: r, caches: make([]atomic.Pointer[pcache], runtime.GOMAXPROCS(0))}
	page := r.PageSize()
	for i := range h.classes {
		c := &h.classes[i]
		c.class = uint8(i)
		c.size = uintptr(classSize[i])
		slab := (uintptr(classSlab[i]) + page - 1) &^ (page - 1)
		c.slabPages = slab / page
		c.nelems = uint32(slab / c.size)
		c.batch = batchOf(c.size)
		c.nextSample = countdown(h.nextSample()) // never, until SetSampling
	}
	return h
}

// Alloc returns a block of class c holding n bytes, whether it is known
// to be zero, and whether it was sampled for the heap profile. It tries
// the P's cache first (AllocFast), then refills it.
func (h *Heap) Alloc(c int, n uintptr) (p unsafe.Pointer, zero, sampled bool, err error) {
	if p, sampled := h.AllocFast(uint8(c), n); p != nil {
		return p, false, sampled, nil
	}
	return h.allocSlow(c, n)
}

// AllocFast pops a block of class c for a request of n bytes from this P's
// cache, or returns nil when the cache has none: then the caller calls
// Alloc, which refills it. This is the whole small Malloc: pin, pop, mark
// the block live, count, unpin — no lock, no atomic instruction. It also
// counts the bytes down to the next heap-profile sample (a subtraction and
// a branch never taken while profiling is off) and says whether this block
// is the one.
func (h *Heap) AllocFast(c uint8, n uintptr) (unsafe.Pointer, bool) {
	pid := procPin()
	if uint(pid) < uint(len(h.caches)) {
		if pc := h.caches[pid].Load(); pc != nil && pc.lock() {
			b := &pc.bins[c%NumClasses]
			if b.n > 0 {
				b.n--
				e := b.e[b.n]
				v := liveState(uintptr(classSize[c%NumClasses]), n)
				sampled := pc.nextSample.due(h, n)
				if sampled {
					v |= sampledBit
				}
				setState(e.st, v)
				b.blocks++
				b.bytes += int64(n)
				pc.unlock()
				procUnpin()
				return e.p, sampled
			}
			pc.unlock()
		}
	}
	procUnpin()
	return nil, false
}

// FreeFast frees the small block p if it can do so without a lock: p is
// the start of a live block of run's slab, not sampled, and this P's cache
// has room. Otherwise it changes nothing and returns false, and the caller
// calls Free, which sorts out errors, sampled blocks and full caches.
func (h *Heap) FreeFast(run *arena.Run, p unsafe.Pointer) bool {
	s := slabOf(run)
	idx, ok := s.index(uintptr(p))
	if checks && !ok {
		return false
	}
	c := s.class
	st := &s.req[idx]
	pid := procPin()
	if uint(pid) < uint(len(h.caches)) {
		if pc := h.caches[pid].Load(); pc != nil && pc.lock() {
			b := &pc.bins[c%NumClasses]
			if b.n < b.cap {
				if v, ok := takeLive(st); ok {
					b.e[b.n] = entry{p: p, st: st}
					b.n++
					b.blocks--
					b.bytes -= int64(requested(uintptr(s.size), v))
					pc.unlock()
					procUnpin()
					return true
				}
			}
			pc.unlock()
		}
	}
	procUnpin()
	return false
}

// allocSlow refills this P's cache with a batch of blocks taken under the
// class lock (one lock per batch), and returns one of them.
func (h *Heap) allocSlow(c int, n uintptr) (p unsafe.Pointer, zero, sampled bool, err error) {
	cl := &h.classes[c]
	var buf [maxBatch]entry
	cl.mu.Lock()
	k, err := h.take(cl, buf[:cl.batch])
	cl.mu.Unlock()
	if k == 0 {
		return nil, false, false, err
	}
	first := buf[0]
	zero = loadState(first.st) == stateZero
	v := liveState(cl.size, n)

	pc, _ := h.pinCache()
	if pc == nil {
		procUnpin()
		cl.mu.Lock()
		if sampled = cl.nextSample.due(h, n); sampled {
			v |= sampledBit
		}
		setState(first.st, v)
		cl.blocks++
		cl.bytes += int64(n)
		h.giveBack(cl, buf[1:k])
		cl.mu.Unlock()
		return first.p, zero, sampled, nil
	}
	if sampled = pc.nextSample.due(h, n); sampled {
		v |= sampledBit
	}
	setState(first.st, v)
	b := &pc.bins[c]
	put := min(int(b.cap-b.n), k-1)
	copy(b.e[b.n:], buf[1:1+put])
	b.n += int32(put)
	b.blocks++
	b.bytes += int64(n)
	pc.unlock()
	procUnpin()
	if rest := buf[1+put : k]; len(rest) > 0 {
		cl.mu.Lock()
		h.giveBack(cl, rest)
		cl.mu.Unlock()
	}
	return first.p, zero, sampled, nil
}

// AllocDirect is Alloc without the P caches, for Debug mode: one block
// straight from the class's slabs under its lock. It also says whether the
// block was on a slab's free list (freed before) rather than never used.
func (h *Heap) AllocDirect(c int, n uintptr) (p unsafe.Pointer, zero, reused, sampled bool, err error) {
	cl := &h.classes[c]
	var one [1]entry
	cl.mu.Lock()
	defer cl.mu.Unlock()
	k, err := h.take(cl, one[:])
	if k == 0 {
		return nil, false, false, false, err
	}
	e := one[0]
	zero = loadState(e.st) == stateZero
	v := liveState(cl.size, n)
	if sampled = cl.nextSample.due(h, n); sampled {
		v |= sampledBit
	}
	setState(e.st, v)
	cl.blocks++
	cl.bytes += int64(n)
	return e.p, zero, cl.lastReused, sampled, nil
}

// FreeDirect is Free without the P caches, for Debug mode: the block goes
// straight back on its slab's free list (its first 4 bytes become the
// link). It returns the size that had been requested.
func (h *Heap) FreeDirect(run *arena.Run, addr uintptr) (uintptr, error) {
	st, _, c, err := h.state(run, addr)
	if err != nil {
		return 0, err
	}
	cl := &h.classes[c]
	cl.mu.Lock()
	defer cl.mu.Unlock()
	v, ok := takeAny(st)
	if !ok {
		return 0, fmt.Errorf("%w: %d-byte block at %#x", errs.ErrDoubleFree, classSize[c], addr)
	}
	if v&sampledBit != 0 {
		h.onSampledFree(addr)
	}
	n := requested(cl.size, v)
	cl.blocks--
	cl.bytes -= int64(n)
	h.giveBack(cl, []entry{{p: h.region.Ptr(addr), st: st}})
	return n, nil
}

// pinCache pins the goroutine and returns its P's cache, locked (a no-op
// but in race builds), making one if the slot is empty. It returns nil
// (still pinned) when the P has no slot (GOMAXPROCS grew after the heap was
// made), the heap is closed, or the cache was just retired by drain.
func (h *Heap) pinCache() (*pcache, int) {
	pid := procPin()
	if pid >= len(h.caches) || h.closed.Load() {
		return nil, pid
	}
	pc := h.caches[pid].Load()
	if pc == nil {
		procUnpin() // making a cache allocates: never while pinned
		fresh := newPcache(h)
		pid = procPin()
		if pid >= len(h.caches) {
			return nil, pid
		}
		h.caches[pid].CompareAndSwap(nil, fresh)
		if pc = h.caches[pid].Load(); pc == nil {
			return nil, pid // drained meanwhile
		}
	}
	if !pc.lock() {
		return nil, pid
	}
	return pc, pid
}

// take pops up to len(out) blocks from the class's slabs into out (class
// lock held) and returns how many. It fails only if no block can be had.
func (h *Heap) take(cl *Class, out []entry) (int, error) {
	if h.closed.Load() {
		return 0, errs.ErrClosed
	}
	k := 0
	for k < len(out) {
		s := cl.partial
		if s == nil {
			var err error
			if s, err = h.newSlab(cl); err != nil {
				if k > 0 {
					return k, nil
				}
				return 0, err
			}
		}
		for k < len(out) && s.nfree > 0 {
			var idx uint32
			state := uint16(stateCached)
			cl.lastReused = s.free != 0
			if s.free != 0 {
				idx = s.free - 1
				// The link lives in the free block itself, where a write
				// after free or past the end of the block next to it can
				// reach it: it must decode to a block of this slab that was
				// handed out before and is on the free list now.
				next := *(*uint32)(h.region.Ptr(s.start + uintptr(idx)*cl.size)) ^ s.key
				if checks && next != 0 && (next > s.bump || next == idx+1 || loadState(&s.req[next-1]) != stateFree) {
					h.corrupt(s, idx, next)
					next = 0 // drop the rest of the list: never follow a bad link
				}
				s.free = next
			} else if s.bump < s.nelems {
				idx = s.bump
				s.bump++
				if s.zero {
					state = stateZero
				}
			} else {
				break // only after a damaged list was dropped
			}
			setState(&s.req[idx], state)
			s.nfree--
			out[k] = entry{p: h.region.Ptr(s.start + uintptr(idx)*cl.size), st: &s.req[idx]}
			k++
		}
		if s.nfree == 0 || s.free == 0 && s.bump == s.nelems {
			cl.unlist(s)
		}
	}
	return k, nil
}

func (h *Heap) corrupt(s *Slab, idx, next uint32) {
	size := h.classes[s.class].size
	addr := s.start + uintptr(idx)*size
	msg := fmt.Sprintf("free-list link of a free %d-byte block decodes to %d, not a free block of its slab "+
		"(a write after free, or past the end of the block before it); the rest of the list is dropped", size, int64(next)-1)
	if h.OnCorruption != nil {
		h.OnCorruption(addr, size, msg)
		return
	}
	panic(fmt.Sprintf("slab: block %#x: %s", addr, msg))
}

// newSlab finds or makes a slab with room for class cl (lock held).
func (h *Heap) newSlab(cl *Class) (*Slab, error) {
	if s := cl.empty; s != nil {
		cl.empty = nil
		cl.list(s)
		return s, nil
	}
	s := &Slab{Run: arena.NewRun(arena.KindSlab, nil), class: cl.class, nelems: cl.nelems, nfree: cl.nelems,
		size: uint64(cl.size), magic: classDivMagic[cl.class], key: rand.Uint32() | 1}
	s.req = make([]uint16, cl.nelems)
	run, zero, err := h.region.AllocRun(&s.Run, cl.slabPages, 0, 0)
	if err != nil {
		return nil, err
	}
	s.start, s.zero = run.Start(), zero
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

// state validates that addr is the start of a block of run's slab and
// returns the block's state, its slab and class. Lock-free: a slab's start,
// class and length never change.
func (h *Heap) state(run *arena.Run, addr uintptr) (*uint16, *Slab, int, error) {
	if h.closed.Load() {
		return nil, nil, 0, errs.ErrClosed
	}
	s := slabOf(run)
	c := int(s.class)
	idx, ok := s.index(addr)
	if !ok {
		return nil, nil, 0, fmt.Errorf("%w: %#x is not the start of a %d-byte block", errs.ErrInvalidFree, addr, classSize[c])
	}
	return &s.req[idx], s, c, nil
}

// Free frees the block at addr, which lies in run (a KindSlab run), and
// returns the size that had been requested for it. A bad free changes
// nothing and returns ErrInvalidFree or ErrDoubleFree. The fast path pushes
// the block on this P's cache; a full cache sends its older half back to
// the slabs under the class lock.
func (h *Heap) Free(run *arena.Run, addr uintptr) (uintptr, error) {
	st, _, c, err := h.state(run, addr)
	if err != nil {
		return 0, err
	}
	v, ok := takeAny(st)
	if !ok {
		return 0, fmt.Errorf("%w: %d-byte block at %#x", errs.ErrDoubleFree, classSize[c], addr)
	}
	if v&sampledBit != 0 {
		h.onSampledFree(addr) // before the block can be handed out again
	}
	n := requested(uintptr(classSize[c]), v)
	e := entry{p: h.region.Ptr(addr), st: st}
	pid := procPin()
	if pid < len(h.caches) {
		if pc := h.caches[pid].Load(); pc != nil && pc.lock() {
			b := &pc.bins[c]
			b.blocks--
			b.bytes -= int64(n)
			if b.n < b.cap {
				b.e[b.n] = e
				b.n++
				pc.unlock()
				procUnpin()
				return n, nil
			}
			var buf [maxBatch]entry
			k := copy(buf[:], b.e[:b.n/2])
			copy(b.e[:], b.e[k:b.n])
			b.n -= int32(k)
			b.e[b.n] = e
			b.n++
			pc.unlock()
			procUnpin()
			cl := &h.classes[c]
			cl.mu.Lock()
			h.giveBack(cl, buf[:k])
			cl.mu.Unlock()
			return n, nil
		}
	}
	procUnpin()
	cl := &h.classes[c]
	cl.mu.Lock()
	cl.blocks--
	cl.bytes -= int64(n)
	h.giveBack(cl, []entry{e})
	cl.mu.Unlock()
	return n, nil
}

// giveBack returns blocks (free, out of any cache) to their slabs' free
// lists (class lock held). A slab whose blocks are all back goes to the
// arena, but one per class is kept for the next refill.
func (h *Heap) giveBack(cl *Class, es []entry) {
	for _, e := range es {
		addr := uintptr(e.p)
		run := h.region.Lookup(addr)
		if run == nil || run.Kind() != arena.KindSlab {
			continue // the region was closed under us
		}
		s := slabOf(run)
		idx, _ := s.index(addr)
		setState(e.st, stateFree)
		*(*uint32)(e.p) = s.free ^ s.key
		s.free = uint32(idx) + 1
		s.nfree++
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
	}
}

// release gives an empty slab back to the arena (class lock held).
func (h *Heap) release(cl *Class, s *Slab) {
	s.dead = true
	cl.slabs--
	_ = h.region.Free(&s.Run) // the run is live: it cannot fail but for Close
}

// Usable returns the block size and requested size of the live block at
// addr in run, or an error if it is not one. The caller must own the block.
func (h *Heap) Usable(run *arena.Run, addr uintptr) (size, req uintptr, err error) {
	st, _, c, err := h.state(run, addr)
	if err != nil {
		return 0, 0, err
	}
	v := loadState(st)
	if !live(v) {
		return 0, 0, fmt.Errorf("%w: %d-byte block at %#x", errs.ErrDoubleFree, classSize[c], addr)
	}
	return uintptr(classSize[c]), requested(uintptr(classSize[c]), v), nil
}

// Resize changes the requested size of the live block at addr to n in
// place if the block holds n and is not more than twice too big for it.
// It returns whether it did, and the size that was requested.
func (h *Heap) Resize(run *arena.Run, addr, n uintptr) (bool, uintptr, error) {
	size, old, err := h.Usable(run, addr)
	if err != nil {
		return false, 0, err
	}
	if n > size || n <= size/2 && size > 16 || size-n+1 > maxEntry {
		return false, old, nil
	}
	st, _, c, _ := h.state(run, addr)
	setState(st, liveState(size, n)|loadState(st)&sampledBit)
	delta := int64(n) - int64(old)
	pc, _ := h.pinCache()
	if pc != nil {
		pc.bins[c].bytes += delta
		pc.unlock()
		procUnpin()
		return true, old, nil
	}
	procUnpin()
	cl := &h.classes[c]
	cl.mu.Lock()
	cl.bytes += delta
	cl.mu.Unlock()
	return true, old, nil
}

// drain takes every P's cache out of its slot, waits until no goroutine
// uses them, and returns their blocks to the slabs and their counters to
// the classes.
func (h *Heap) drain() {
	h.drainMu.Lock()
	defer h.drainMu.Unlock()
	var old []*pcache
	for i := range h.caches {
		if pc := h.caches[i].Swap(nil); pc != nil {
			old = append(old, pc)
		}
	}
	quiesce(old)
	for _, pc := range old {
		for c := range pc.bins {
			b := &pc.bins[c]
			if b.n == 0 && b.blocks == 0 && b.bytes == 0 {
				continue
			}
			cl := &h.classes[c]
			cl.mu.Lock()
			cl.blocks += b.blocks
			cl.bytes += b.bytes
			h.giveBack(cl, b.e[:b.n])
			cl.mu.Unlock()
			b.n, b.blocks, b.bytes = 0, 0, 0
		}
	}
}

// Trim empties every P's cache into the slabs, then gives every class's
// cached empty slab back to the arena.
func (h *Heap) Trim() {
	if h.closed.Load() {
		return
	}
	h.drain()
	for i := range h.classes {
		cl := &h.classes[i]
		cl.mu.Lock()
		if s := cl.empty; s != nil {
			cl.empty = nil
			h.release(cl, s)
		}
		cl.mu.Unlock()
	}
}

// Close refuses every later call and retires the caches.
func (h *Heap) Close() {
	h.closed.Store(true)
	h.drain()
}

// ClassStats is one class's counters.
type ClassStats struct {
	Size       uintptr
	LiveBlocks uint64
	LiveBytes  uint64 // requested
	Cached     uint64 // free blocks held by P caches
	Slabs      uint64
	SlabBytes  uint64
}

// Stats returns every class's counters: the classes' own plus every P
// cache's. In the normal build the caches' counters are read without
// synchronization (word-sized reads, which the Go memory model lets
// observe only values actually written); the sum is exact when no
// operation is in flight.
func (h *Heap) Stats() [NumClasses]ClassStats {
	var out [NumClasses]ClassStats
	page := h.region.PageSize()
	var blocks, bytes [NumClasses]int64
	for i := range h.classes {
		cl := &h.classes[i]
		cl.mu.Lock()
		blocks[i], bytes[i] = cl.blocks, cl.bytes
		out[i] = ClassStats{Size: cl.size, Slabs: cl.slabs, SlabBytes: cl.slabs * uint64(cl.slabPages*page)}
		cl.mu.Unlock()
	}
	for i := range h.caches {
		pc := h.caches[i].Load()
		if pc == nil || !pc.lock() {
			continue
		}
		for c := range pc.bins {
			b := &pc.bins[c]
			blocks[c] += b.blocks
			bytes[c] += b.bytes
			out[c].Cached += uint64(b.n)
		}
		pc.unlock()
	}
	for i := range out {
		out[i].LiveBlocks, out[i].LiveBytes = uint64(max(blocks[i], 0)), uint64(max(bytes[i], 0))
	}
	return out
}
