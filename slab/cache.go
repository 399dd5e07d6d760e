package slab

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/percpu"
)

// The per-P cache in front of the classes (Go's mcache): the fast paths,
// the refill and flush that move batches between a cache and its class,
// and drain, which retires every cache.

// entry is a free block held by a P's cache: its address and its state in
// its slab, so handing it out needs no lookup.
type entry struct {
	p  unsafe.Pointer
	st *uint16
}

// maxBatch is the most blocks moved between a cache and the slabs under
// one lock.
const maxBatch = 32

// maxBinBytes bounds the bytes of free blocks one bin of a P's cache
// parks (at least one block): a capacity in blocks alone (twice a batch)
// let each class of big blocks park 4 of them, up to 128 KiB, per P. The
// bound is on the bin, fixed when the cache is made, so the fast paths
// keep their one comparison with the bin's capacity.
const maxBinBytes = 16 << 10

// binCap is the most a bin of blocks of size bytes with batches of batch
// blocks may hold: the capacity a busy bin grows to (see grow).
func binCap(size uintptr, batch int) int32 {
	return int32(max(1, min(2*batch, int(maxBinBytes/size))))
}

// coldMisses is how many times a bin goes to its class (a refill of an
// empty bin, a free into a full one) before its capacity starts to grow.
// A bin starts with capacity 0: a class a P uses once or twice — a block
// that Realloc moves through every class on its way up, a size a program
// asks for a few times — parks nothing in the P's cache, and its blocks
// go straight back to their slabs, where an emptied slab returns to the
// region for any class to use. A class in steady use has gone to its
// class coldMisses times within its first few operations and grows to
// binCap within a few more (as tcmalloc's per-CPU caches grow their
// capacity on misses; jemalloc's thread caches adapt their fill count
// the same way). Measured (medians of 3 replays): with 2, cc1's peak was
// 3.932 MB and python's 37.72; with 8, 3.895 and 37.45 (the classes a
// compiler touches a few times no longer park a block each).
const coldMisses = 8

// grow is called on every miss of bin c of pc (locked): past coldMisses,
// the bin's capacity doubles (from 0 to 1 first), up to most. Only the
// slow paths change a capacity; the fast paths read it.
func (pc *pcache) grow(c int, most int32) {
	b := &pc.bins[c]
	if b.cap >= most {
		return
	}
	if pc.misses[c] < coldMisses {
		pc.misses[c]++
		return
	}
	b.cap = min(most, max(1, 2*b.cap))
}

// refillCount returns how many blocks a refill of class c takes for this
// P: one to hand out and half the bin's capacity to park (a batch once
// the bin has grown to binCap), after counting the miss (grow). Without a
// cache, one.
func (p *Pool) refillCount(c int) int {
	cl := &p.classes[c]
	pc := p.cacheOf(percpu.Pin())
	if pc == nil {
		unpin(nil)
		return 1
	}
	pc.grow(c, cl.binMax)
	k := min(cl.batch, 1+int(pc.bins[c].cap)/2)
	unpin(pc)
	return k
}

// batchOf returns how many blocks of size bytes move per refill or flush:
// about 8 KiB worth, between 2 and maxBatch. A bin holds twice that.
func batchOf(size uintptr) int { return int(min(max(8192/size, 2), maxBatch)) }

// bin is one class's part of a P's cache: a stack of free blocks and the
// counts of what this P handed out and took back.
//
// Hot fields first: n, cap and e are read on every Malloc and Free.
type bin struct {
	n   int32
	cap int32
	counts
	e [2 * maxBatch]entry // inline: no slice header to load on the way
}

// binMask masks a bin's index into e: n is always below len(e), and the
// mask tells the compiler so (no bounds check on the fast paths).
const binMask = 2*maxBatch - 1

// push puts a free block of n requested bytes on the bin (which has room)
// and uncounts it: the one push of a freed block, for FreeFast and Free.
func (b *bin) push(e entry, n uintptr) {
	b.e[b.n&binMask] = e
	b.n++
	b.takeBack(n)
}

// fill puts as many of es, the first of them first, on the bin as it has
// room for, in reverse, and returns how many: the bin hands them out in
// the order of es. A refill's blocks come in address order (a slab's
// never-used blocks, bump after bump), so the blocks handed out grow
// from the lowest up, and the pages of the blocks still parked stay
// untouched. Pushed in order, the highest came out first, and the rest
// of the batch (up to 8 KiB of a class, per P) sat parked on the pages
// it had touched: at the spike workload's peak, the slabs' resident
// pages beyond their blocks in use were 154 KB with one P, 113 KB with
// the batch reversed (as with no caches at all); 228 and 183 KB with two.
func (b *bin) fill(es []entry) int {
	k := min(len(es), int(b.cap-b.n))
	for i := k - 1; i >= 0; i-- {
		b.e[b.n&binMask] = es[i]
		b.n++
	}
	return k
}

// flushHalf moves the older half of a full bin (at least one block) into
// buf and returns how many, for the caller to give back to the class once
// unpinned.
func (b *bin) flushHalf(buf *[maxBatch]entry) int {
	k := copy(buf[:], b.e[:(b.n+1)/2])
	copy(b.e[:], b.e[k:b.n])
	b.n -= int32(k)
	return k
}

// pcache is one P's cache: per-P, so no lock is needed in the normal build
// (only the goroutine pinned to the P touches it: package percpu). Trim
// and Close take caches out of their slots and wait until no goroutine
// uses them before emptying them (drain). Race builds add a mutex
// (percpu.Lock; see the build variants in doc.go) so the race detector can
// check the same code.
type pcache struct {
	percpu.Lock
	nextSample countdown // bytes until the next heap-profile sample
	// slow counts the refills and flushes of this cache (pinned); seen is
	// its value at the last FlushIdle (under drainMu): equal, the cache
	// has not gone to its classes since, and is idle or nearly so
	slow, seen uint64
	bins       [NumClasses]bin
	// misses counts each bin's misses while it is cold (grow), on the
	// slow paths only
	misses [NumClasses]uint8
}

func newPcache(p *Pool) *pcache {
	pc := new(pcache)
	pc.nextSample = countdown(NextSample(p.opts.ProfileRate))
	// Every bin starts cold, with capacity 0 (grow).
	return pc
}

// cacheOf returns the cache of P pid, locked (a no-op but in race
// builds), or nil when the P has none: no slot (GOMAXPROCS grew after
// New), none made yet, or drain retired it. The caller is pinned: every
// pinned section reads
//
//	pc := p.cacheOf(percpu.Pin())
//	...
//	unpin(pc)
//
// and nothing between the two may block, allocate or take a contended
// lock. (percpu.Pin stays at the call site: a call in cacheOf would stop it
// from inlining.)
func (p *Pool) cacheOf(pid int) *pcache {
	if uint(pid) >= uint(len(p.caches)) {
		return nil
	}
	pc := p.caches[pid].Load()
	if pc != nil && !pc.Acquire() { // never true but in race builds: no test here
		return nil
	}
	return pc
}

// unpin ends a section begun by pin (pc is what pin returned).
func unpin(pc *pcache) {
	if pc != nil {
		pc.Release()
	}
	percpu.Unpin()
}

// pinOrMake is percpu.Pin and cacheOf, that first makes the P's cache if its slot is empty and
// the pool is open: the refill path's.
func (p *Pool) pinOrMake() *pcache {
	pid := percpu.Pin()
	pc := p.cacheOf(pid)
	if pc != nil || pid >= len(p.caches) || p.closed.Load() {
		return pc
	}
	percpu.Unpin() // making a cache allocates: never while pinned
	fresh := newPcache(p)
	if pid = percpu.Pin(); pid < len(p.caches) {
		p.caches[pid].CompareAndSwap(nil, fresh) // or another goroutine's won
	}
	return p.cacheOf(pid)
}

// AllocFast pops a block of class c for a request of n bytes from this P's
// cache, or returns nil when the cache has none or the block would be the
// heap-profile sample: then the caller calls Refill. This is the whole
// small Malloc: pin, pop, hand out (mark live, count), unpin — no lock, no
// atomic instruction, and no call but the pin's (see the cost table in
// doc.go). The sample is left to Refill, so this path never records one.
func (p *Pool) AllocFast(c uint8, n uintptr) unsafe.Pointer {
	pc := p.cacheOf(percpu.Pin())
	if pc != nil {
		b := &pc.bins[c]
		if b.n > 0 && pc.nextSample.skip(n) {
			b.n--
			e := b.e[b.n&binMask]
			handOut(e.st, uintptr(classSize[c]), n, false, &b.counts)
			unpin(pc)
			return e.p
		}
	}
	unpin(pc)
	return nil
}

// FreeFast frees the small block ptr if it can do so without a lock: ptr
// is the start of a live block of run's slab, not sampled, and this P's
// cache has room. Otherwise it changes nothing and returns false, and the
// caller calls Free, which sorts out errors, sampled blocks and full
// caches.
func (p *Pool) FreeFast(run *arena.Run, ptr unsafe.Pointer) bool {
	pc := p.cacheOf(percpu.Pin()) // first: nothing computed before lives across the call
	if pc != nil {
		s := slabOf(run)
		idx, ok := s.index(uintptr(ptr))
		b := &pc.bins[s.class]
		if (ok || !checks) && b.n < b.cap {
			st := &s.states[idx]
			if v, ok := takeLive(st); ok {
				b.push(entry{p: ptr, st: st}, requested(uintptr(s.size), v))
				unpin(pc)
				return true
			}
		}
	}
	unpin(pc)
	return false
}

// Alloc returns a block of class c holding n bytes, whether it is known
// to be zero, and whether it was sampled for the heap profile: AllocFast,
// then Refill. Callers that tried AllocFast themselves call Refill.
func (p *Pool) Alloc(c int, n uintptr) (ptr unsafe.Pointer, zero, sampled bool, err error) {
	if ptr := p.AllocFast(uint8(c), n); ptr != nil {
		return ptr, false, false, nil
	}
	return p.Refill(c, n)
}

// Refill is the slow path of a small allocation, for when AllocFast
// returned nil. If the bin has a block, AllocFast left it for the
// heap-profile sample: it is handed out here, sampled. Otherwise Refill
// takes a batch of blocks under the class lock (one lock per batch;
// refillCount says how many, a bin that has not grown taking fewer),
// hands out the first and puts the rest in this P's cache. Without a
// cache, the block is handed out under the class lock and the rest goes
// back.
func (p *Pool) Refill(c int, n uintptr) (ptr unsafe.Pointer, zero, sampled bool, err error) {
	if ptr, sampled := p.popSampled(c, n); ptr != nil {
		return ptr, false, sampled, nil
	}
	cl := &p.classes[c]
	var buf [maxBatch]entry
	want := p.refillCount(c)
	k, err := p.takeForRefill(cl, buf[:want])
	if k == 0 {
		return nil, false, false, err
	}
	first, rest := buf[0], buf[1:k]
	zero = loadState(first.st) == stateZero
	pc := p.pinOrMake()
	if pc != nil {
		b := &pc.bins[c]
		sampled = pc.nextSample.due(&p.opts.ProfileRate, n)
		handOut(first.st, cl.size, n, sampled, &b.counts)
		rest = rest[b.fill(rest):]
		pc.slow++
	}
	unpin(pc)
	if pc == nil {
		cl.mu.Lock()
		sampled = cl.nextSample.due(&p.opts.ProfileRate, n)
		handOut(first.st, cl.size, n, sampled, &cl.counts)
		p.giveBackLocked(cl, rest)
		cl.mu.Unlock()
		return first.p, zero, sampled, nil
	}
	p.giveBack(cl, rest)
	return first.p, zero, sampled, nil
}

// popSampled pops a block of class c for n bytes from this P's cache with
// the heap-profile countdown counted (AllocFast leaves the sample to it),
// or returns nil if the bin is empty.
func (p *Pool) popSampled(c int, n uintptr) (unsafe.Pointer, bool) {
	pc := p.cacheOf(percpu.Pin())
	if pc != nil {
		b := &pc.bins[c]
		if b.n > 0 {
			b.n--
			e := b.e[b.n&binMask]
			sampled := pc.nextSample.due(&p.opts.ProfileRate, n)
			handOut(e.st, uintptr(classSize[c]), n, sampled, &b.counts)
			unpin(pc)
			return e.p, sampled
		}
	}
	unpin(pc)
	return nil, false
}

// takeForRefill is take for a cache's refill (a P's or a Local's): out of
// memory under a cap (Config.Limit), other caches may hold free blocks,
// classes their kept empty slabs, and the Pool's owner free memory of its
// own (OnLimit), so it gives them back (Trim's work) and tries once more
// before refusing.
func (p *Pool) takeForRefill(cl *central, out []entry) (int, error) {
	k, err := p.take(cl, out)
	if k == 0 && errors.Is(err, errs.ErrNoMemory) && p.region.Limit() != 0 {
		if p.opts.OnLimit != nil {
			p.opts.OnLimit()
		}
		p.Trim()
		k, err = p.take(cl, out)
	}
	return k, err
}

// take is takeLocked under the class lock, then reports damaged links
// with the lock let go.
func (p *Pool) take(cl *central, out []entry) (int, error) {
	cl.mu.Lock()
	k, err := p.takeLocked(cl, out)
	bad := cl.takeBadLocked()
	cl.mu.Unlock()
	if bad != nil {
		p.reportBad(cl, bad, out[:k])
	}
	return k, err
}

// Free frees the block at addr, which lies in run (a KindSlab run), and
// returns the size that had been requested for it: the slow path of
// FreeFast. A bad free changes nothing and returns ErrInvalidFree or
// ErrDoubleFree. A sampled block's OnSampledFree runs first. The block
// goes on this P's cache (push, as FreeFast's); a full bin first sends its
// older half back to the slabs under the class lock.
func (p *Pool) Free(run *arena.Run, addr uintptr) (uintptr, error) {
	e, c, n, err := p.claim(run, addr)
	if err != nil {
		return 0, err
	}
	cl := &p.classes[c]
	pc := p.cacheOf(percpu.Pin())
	if pc == nil {
		unpin(nil)
		cl.mu.Lock()
		cl.takeBack(n)
		p.giveBackLocked(cl, []entry{e})
		cl.mu.Unlock()
		return n, nil
	}
	var buf [maxBatch]entry
	k := 0
	b := &pc.bins[c]
	if b.n >= b.cap {
		pc.slow++
		pc.grow(c, cl.binMax)
		if b.cap == 0 {
			// A cold bin parks nothing: the block goes back to its slab.
			b.takeBack(n)
			unpin(pc)
			p.giveBack(cl, []entry{e})
			return n, nil
		}
		if b.n >= b.cap {
			k = b.flushHalf(&buf)
		}
	}
	b.push(e, n)
	unpin(pc)
	p.giveBack(cl, buf[:k])
	return n, nil
}

// claim is the first half of every slow free (Pool's and Local's): it
// validates that addr is the start of a live block of run's slab, claims
// it (its state becomes stateCached: of two frees racing, one wins), runs
// OnSampledFree for a sampled block, and returns the block's cache entry,
// its class and the size that had been requested. A bad free changes
// nothing.
func (p *Pool) claim(run *arena.Run, addr uintptr) (entry, int, uintptr, error) {
	st, c, err := p.state(run, addr)
	if err != nil {
		return entry{}, 0, 0, err
	}
	v, ok := takeAny(st)
	if !ok {
		return entry{}, 0, 0, fmt.Errorf("%w: %d-byte block at %#x", errs.ErrDoubleFree, classSize[c], addr)
	}
	p.sampledFree(v, addr) // before the block can be handed out again
	return entry{p: p.region.Ptr(addr), st: st}, c, requested(uintptr(classSize[c]), v), nil
}

// drain takes every P's cache out of its slot, waits until no goroutine
// uses them (percpu.Quiesce), and returns their blocks to the slabs and their
// counts to the classes.
func (p *Pool) drain() {
	p.drainMu.Lock()
	defer p.drainMu.Unlock()
	p.drainLocked(nil)
}

// drainLocked is drain for the caches retire says to retire (nil: all),
// with drainMu held. It returns how many it retired.
func (p *Pool) drainLocked(retire func(*pcache) bool) int {
	var old []*pcache
	for i := range p.caches {
		pc := p.caches[i].Load()
		if pc == nil || retire != nil && !retire(pc) {
			continue
		}
		if p.caches[i].CompareAndSwap(pc, nil) {
			old = append(old, pc)
		}
	}
	percpu.Quiesce(len(old), func(i int) *percpu.Lock { return &old[i].Lock })
	for _, pc := range old {
		for c := range pc.bins {
			p.emptyBin(c, &pc.bins[c])
		}
	}
	return len(old)
}

// emptyBin gives bin b of class c back to the class: its blocks to their
// slabs and its counts to the class's, under the class lock (taken only
// if the bin holds something). The bin is left empty with no counts; its
// capacity is the caller's. For drain and a Local's Close.
func (p *Pool) emptyBin(c int, b *bin) {
	if b.n == 0 && b.counts == (counts{}) {
		return
	}
	cl := &p.classes[c]
	cl.mu.Lock()
	cl.blocks += b.blocks
	cl.bytes += b.bytes
	p.giveBackLocked(cl, b.e[:b.n])
	cl.mu.Unlock()
	b.n, b.counts = 0, counts{}
}

// FlushIdle retires the P caches that have neither refilled nor flushed
// since the last FlushIdle and hold blocks: their blocks go back to their
// slabs, so that a P that stopped allocating pins no slab. A P that
// allocates again makes a new cache on its next refill. It returns how
// many caches it retired. Only the idle pass calls it (see the root
// package's Config.PurgeDelay): it costs a stop-the-world when it
// retires one.
func (p *Pool) FlushIdle() int {
	if p.closed.Load() {
		return 0
	}
	p.drainMu.Lock()
	defer p.drainMu.Unlock()
	return p.drainLocked(func(pc *pcache) bool {
		percpu.Pin() // as every holder of a cache's lock (percpu.Lock)
		defer percpu.Unpin()
		if !pc.Acquire() {
			return false
		}
		idle, holds := pc.slow == pc.seen, false
		pc.seen = pc.slow
		for c := range pc.bins {
			holds = holds || pc.bins[c].n > 0
		}
		pc.Release()
		return idle && holds
	})
}
