package slab

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/percpu"
	"github.com/brkmap/alloc/stats"
)

// Pool is the size classes over one region, with a cache per P in front:
// what Go splits into mcentral and mcache. (In Go's vocabulary the heap is
// the page heap, here arena.Region; a Pool hands out and takes back blocks
// carved from it.) All methods are safe for concurrent use.
type Pool struct {
	region *arena.Region
	caches []atomic.Pointer[pcache] // one slot per P, indexed by percpu.Pin's id
	closed atomic.Bool
	// drainMu serializes drain (Trim, Close); it is never taken on the
	// allocation paths.
	drainMu sync.Mutex
	classes [NumClasses]central
	opts    Options // fixed by New
	// locals are the Locals not yet closed, for Stats (localsMu guards
	// the set; each Local's bins are its owner's: see Local)
	localsMu sync.Mutex
	locals   map[*Local]struct{}
}

// Options are a Pool's callbacks and sampling rate, fixed when it is made.
type Options struct {
	// ProfileRate is the mean bytes between two blocks sampled for the
	// heap profile (see NextSample); 0 or less: no sampling.
	ProfileRate int64
	// OnSampledFree is called with the address of a sampled block being
	// freed, before the block can be handed out again (under its class
	// lock, or in a pinned section: it must not block or allocate much).
	// Required when ProfileRate > 0.
	OnSampledFree func(addr uintptr)
	// OnCorruption is called when a free-list link is found damaged, with
	// no lock of the Pool held (it may call back into the Pool, or panic:
	// the Pool stays usable): addr is the block holding the link, size its
	// class's block size. The rest of that slab's free list is dropped
	// (those blocks are not handed out again). nil panics.
	OnCorruption func(addr, size uintptr, detail string)
	// OnLimit, if set, is called when a refill finds no memory under the
	// region's cap (Region.Limit), before the Pool trims itself and
	// tries once more: its owner gives back what its other users of the
	// region hold free (the best-fit heap's empty run and fronts). No lock
	// of the Pool is held, and the caller is not pinned.
	OnLimit func()
}

// New makes the classes over region r.
func New(r *arena.Region, opts Options) *Pool {
	p := &Pool{region: r, caches: make([]atomic.Pointer[pcache], runtime.GOMAXPROCS(0)), opts: opts,
		locals: map[*Local]struct{}{}}
	page := r.PageSize()
	for i := range p.classes {
		cl := &p.classes[i]
		cl.class = uint8(i)
		cl.size = uintptr(classSize[i])
		slab := (uintptr(classSlab[i]) + page - 1) &^ (page - 1)
		cl.slabPages = slab / page
		cl.nelems = uint32(slab / cl.size)
		cl.minPages = minSlabPages(cl.size, page, cl.slabPages)
		cl.batch = batchOf(cl.size)
		cl.binMax = binCap(cl.size, cl.batch)
		cl.nextSample = countdown(NextSample(opts.ProfileRate))
	}
	return p
}

// FirstBlocks returns how many blocks a first slab of class c holds
// (minSlabPages).
func (p *Pool) FirstBlocks(c int) int {
	cl := &p.classes[c]
	return int(cl.minPages * p.region.PageSize() / cl.size)
}

// minSlabPages is the size of a class's first slabs: the fewest pages
// that hold a block of size bytes with at most 1/slabTailDiv of them left
// over (at most max).
func minSlabPages(size, page, max uintptr) uintptr {
	for p := (size + page - 1) / page; p < max; p++ {
		if (p*page)%size <= p*page/slabTailDiv {
			return p
		}
	}
	return max
}

// sampledFree calls OnSampledFree if v, the state of a block being freed,
// says the block was sampled.
func (p *Pool) sampledFree(v uint16, addr uintptr) {
	if v&sampledBit != 0 {
		p.opts.OnSampledFree(addr)
	}
}

// state validates that addr is the start of a block of run's slab and
// returns the block's state and its class. Lock-free: a slab's start,
// class and length never change.
func (p *Pool) state(run *arena.Run, addr uintptr) (*uint16, int, error) {
	if p.closed.Load() {
		return nil, 0, errs.ErrClosed
	}
	s := slabOf(run)
	c := int(s.class)
	idx, ok := s.index(addr)
	if !ok {
		return nil, 0, fmt.Errorf("%w: %#x is not the start of a %d-byte block", errs.ErrInvalidFree, addr, classSize[c])
	}
	return &s.states[idx], c, nil
}

// liveState returns the state of the live block at addr in run and its
// class, or an error if it is not one.
func (p *Pool) liveState(run *arena.Run, addr uintptr) (*uint16, uint16, int, error) {
	st, c, err := p.state(run, addr)
	if err != nil {
		return nil, 0, 0, err
	}
	v := loadState(st)
	if !live(v) {
		return nil, 0, 0, fmt.Errorf("%w: %d-byte block at %#x", errs.ErrDoubleFree, classSize[c], addr)
	}
	return st, v, c, nil
}

// Usable returns the block size and requested size of the live block at
// addr in run, or an error if it is not one. The caller must own the block.
func (p *Pool) Usable(run *arena.Run, addr uintptr) (size, req uintptr, err error) {
	_, v, c, err := p.liveState(run, addr)
	if err != nil {
		return 0, 0, err
	}
	return uintptr(classSize[c]), requested(uintptr(classSize[c]), v), nil
}

// Resize changes the requested size of the live block at addr to n in
// place if the block holds n and is not more than twice too big for it.
// It returns whether it did, and the size that was requested.
func (p *Pool) Resize(run *arena.Run, addr, n uintptr) (bool, uintptr, error) {
	st, v, c, err := p.liveState(run, addr)
	if err != nil {
		return false, 0, err
	}
	size := uintptr(classSize[c])
	old := requested(size, v)
	if n > size || n <= size/2 && size > 16 || size-n+1 > maxEntry {
		return false, old, nil
	}
	// A compare-and-set, not a store: a Free racing with this Realloc
	// (a caller's bug) may have claimed the block since liveState read it,
	// and a store would make a block already in a P's cache live again —
	// handed out twice, given back twice.
	if !casState(st, v, liveState(size, n)|v&sampledBit) {
		return false, old, fmt.Errorf("%w: %d-byte block at %#x (freed while being resized)", errs.ErrDoubleFree, size, addr)
	}
	delta := int64(n) - int64(old)
	pc := p.cacheOf(percpu.Pin())
	if pc != nil {
		pc.bins[c].bytes += delta
		unpin(pc)
		return true, old, nil
	}
	unpin(nil)
	cl := &p.classes[c]
	cl.mu.Lock()
	cl.bytes += delta
	cl.mu.Unlock()
	return true, old, nil
}

// Trim empties every P's cache into the slabs, then gives every class's
// cached empty slab back to the arena.
func (p *Pool) Trim() {
	if p.closed.Load() {
		return
	}
	p.drain()
	for i := range p.classes {
		cl := &p.classes[i]
		cl.mu.Lock()
		if s := cl.empty; s != nil {
			cl.empty = nil
			p.releaseLocked(cl, s)
		}
		cl.mu.Unlock()
	}
}

// ReleaseIdle gives back to the arena every class's kept empty slab that
// has not changed since the last ReleaseIdle, and returns how many: the
// idle pass's (see FlushIdle).
func (p *Pool) ReleaseIdle() int {
	if p.closed.Load() {
		return 0
	}
	n := 0
	for i := range p.classes {
		cl := &p.classes[i]
		cl.mu.Lock()
		if s := cl.empty; s != nil {
			if cl.emptyIdle {
				cl.empty, cl.emptyIdle = nil, false
				p.releaseLocked(cl, s)
				n++
			} else {
				cl.emptyIdle = true
			}
		}
		cl.mu.Unlock()
	}
	return n
}

// Close refuses every later call and retires the caches.
func (p *Pool) Close() {
	p.closed.Store(true)
	p.drain()
}

// Stats returns every class's counters, in the type the allocator's
// Snapshot reports (stats is a leaf package: slab may use its types).
// SlabBytes is, exactly when no operation is in flight: Size ×
// (LiveBlocks + CachedBlocks + FreeBlocks) + EmptySlabBytes + TailBytes.
// The counters are the classes' own plus every P
// cache's and every Local's. In the normal build the caches' counts are read without
// synchronization (word-sized reads, which the Go memory model lets
// observe only values actually written); the sum is exact when no
// operation is in flight.
func (p *Pool) Stats() [NumClasses]stats.Class {
	var out [NumClasses]stats.Class
	page := p.region.PageSize()
	var sum [NumClasses]counts
	for i := range p.classes {
		cl := &p.classes[i]
		cl.mu.Lock()
		sum[i] = cl.counts
		out[i] = stats.Class{Size: uint64(cl.size), Slabs: cl.slabs, SlabBytes: cl.slabBytes,
			FreeBlocks: cl.freeBlocks, TailBytes: cl.tailBytes,
			MetaBytes: cl.slabs*uint64(unsafe.Sizeof(Slab{})) + 2*cl.elems}
		if s := cl.empty; s != nil {
			slabBytes := uint64(s.pages) * uint64(page)
			out[i].FreeBlocks -= uint64(s.nelems)
			out[i].EmptySlabBytes = slabBytes // its tail included
			out[i].TailBytes -= slabBytes - uint64(s.nelems)*uint64(cl.size)
		}
		cl.mu.Unlock()
	}
	for i := range p.caches {
		percpu.Pin() // as every holder of a cache's lock (percpu.Lock)
		if pc := p.caches[i].Load(); pc != nil && pc.Acquire() {
			for c := range pc.bins {
				sum[c].blocks += pc.bins[c].blocks
				sum[c].bytes += pc.bins[c].bytes
				out[c].CachedBlocks += uint64(pc.bins[c].n)
			}
			pc.Release()
		}
		percpu.Unpin()
	}
	p.localsMu.Lock()
	for l := range p.locals {
		l.lock() // race builds: the owner's calls hold it (local_race.go)
		for c := range l.bins {
			sum[c].blocks += l.bins[c].blocks
			sum[c].bytes += l.bins[c].bytes
			out[c].CachedBlocks += uint64(l.bins[c].n)
		}
		l.unlock()
	}
	p.localsMu.Unlock()
	for i := range out {
		out[i].LiveBlocks, out[i].LiveBytes = uint64(max(sum[i].blocks, 0)), uint64(max(sum[i].bytes, 0))
	}
	return out
}

// slabTailDiv: a class's first slab is the fewest pages whose unusable
// tail is at most 1/slabTailDiv of the slab (minSlabPages). At 1/8 the
// tails were 3.6 MiB of the spike workload's 70.6 MiB peak (blocks of
// 64 B–16 KiB: a 7 KiB block in 2 pages leaves 1 KiB); at 1/16 the peak
// was 68.5 MiB, at 1/32 67.8 MiB, and random-bal's 16.9 MB instead of
// 17.2 MB.
const slabTailDiv = 32
