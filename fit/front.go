package fit

import (
	"sync/atomic"
	"unsafe"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/percpu"
	"github.com/brkmap/alloc/slab"
)

// The fronts: a per-P cache of medium chunks in front of the heap's lock,
// glibc's tcache (per thread there, per P here, as the slabs' caches). A
// block of up to 2 KiB (a cold class's too) freed on a P goes, without the lock, into the bin
// of its chunk's exact size in that P's front; the next request of that
// size on the P takes it back, without the lock either. The chunk stays
// in use as far as the heap knows — its bit in the bitmap, its neighbours,
// the heap's counters — so the heap never looks at it; what the fronts
// hold is counted apart (Stats: Cached).
//
// Without the lock, a Free cannot read the heap's bitmap (the holder of
// the lock writes it and grows it), and must still tell a block in use
// from anything else, exactly, before it reads the header or writes
// anything. So each run keeps a second record, of the blocks in use that
// a front may take (chunks of fastIndex's sizes), read and written only
// with atomic instructions, in segments that never move once made (flSeg):
// a bit at the chunk's first 16 bytes (start) and one at its last (end),
// set by the heap when it hands such a block out (markFront). The start
// bit is cleared by whichever Free claims the block first (an atomic AND
// that returns the old bit: two frees of one block, on two Ps or one with
// the lock, cannot both see it set), and set again when a front hands the
// chunk out; the end bit stays while a front holds the chunk (no chunk can
// start or end inside it meanwhile), and is cleared when the chunk is freed
// into the heap. A Free without the lock takes the block only if its start
// bit is set, its header says in use (and not sampled: flagSampled), and
// the first end bit from its start is where the header's size says the
// chunk ends: a header overwritten by a write past the end of the block
// before it names another end, and goes to the heap's Free, which reports
// it. Anything else — a pointer into a
// block, a block in a front already, a chunk past the segments (a run
// grown past 32 MiB), a full bin — goes to the heap's Free, under the
// lock, which says exactly what it is.
//
// A request takes a chunk from its P's front by rewriting the slack in the
// header (the requested size) with a compare-and-swap, since the holder
// of the lock may set or clear the header's previous-in-use flag at the
// same time (it does so with atomic instructions too: orHeader,
// andHeader); the heap writes nothing else of a chunk in use.
//
// What a front holds is bounded (frontCount a size, frontCap bytes); it
// goes back to the heap, merged there as any free: the current P's front
// before the heap grows (so holding never grows the heap: the heap's fast
// bins' rule) and when a free merges 64 KiB, every front on Trim and
// Close, fronts idle for a pass on Idle, and every front on the purge's
// pass once the fronts saw no operation for a whole pass (the pass runs
// while the heap's own frees keep arming it; a front's frees do not arm
// it, so what a front holds after the last free under the lock, a few
// chunks, waits for Idle, Trim or the heap's next growth, as a P's slab
// cache does). Those that empty a front another P may be
// using take it out of its slot and wait for a stop-the-world
// (percpu.Quiesce), which cannot happen while a goroutine is pinned in a
// front — the slabs' caches' protocol, one package for both (percpu).

const (
	frontCount = fastCount // chunks of one size a front holds
	// frontLook is how many granules larger than a request's own chunk
	// one a front hands out may be, when it holds none of the request's
	// size: 48 bytes at most left unused in a block of 1–2 KiB (3% at
	// worst) instead of a trip to the lock, where a program asks for many
	// sizes. A live set of 16 B–2 KiB blocks (100,000 live, a free and a
	// malloc an operation): exact sizes only, a third of the medium
	// requests found their front without one (counted); with frontLook 3,
	// a tenth, and 743 -> 606 instructions and 10.3 -> 9.3 D1 misses an
	// operation (cachegrind), the replayed traces' peaks unchanged (within
	// a page or two; amptjp-bal's varies by 16 KiB from run to run either
	// way). With 7, 3% fewer misses still.
	frontLook = 3
	// frontCap bounds the bytes one front holds: the fast bins' bound.
	frontCap = fastCap

	flSegBytes    = runBytes // a run's address space one segment covers
	flSegGranules = flSegBytes / granule
	flSegWords    = flSegGranules / 64
	flSegs        = 16 // 32 MiB of a run: chunks past it go through the lock
)

// flSeg is one segment of a run's record of the blocks in use a front may
// take: a start bit and an end bit per 16 bytes, the start word and the
// end word of 64 granules side by side, so that a Free reads one cache
// line for both (live set, cachegrind: 11.65 D1 misses an operation with
// two arrays, 11.05 so).
type flSeg struct{ w [2 * flSegWords]uint64 }

// start and end return the start and end words of the 64 granules of word w.
func (seg *flSeg) start(w uintptr) *uint64 { return &seg.w[2*w%(2*flSegWords)] }
func (seg *flSeg) end(w uintptr) *uint64   { return &seg.w[(2*w+1)%(2*flSegWords)] }

// frontEntry is a chunk held by a front: its place, its run, and the
// requested bytes of the block freed (the heap still counts them live).
type frontEntry struct {
	c   uintptr
	r   *run
	req uintptr
}

// front is one P's front. Only the goroutine pinned to the P touches it
// (the race build adds a mutex: percpu.Lock); drains take it out of its
// slot first and wait (percpu.Quiesce).
type front struct {
	percpu.Lock
	ops, seen uint64  // operations so far; ops at the last Idle
	sample    int64   // bytes until the next block sampled for the heap profile
	bytes     uintptr // the sizes of the chunks held
	req       uintptr // the requested bytes of the blocks freed into it
	adj       uintptr // requested bytes handed out from it less those blocks' (mod 2^64)
	n         [numFast]uint8
	e         [numFast][frontCount]frontEntry
}

// flAt returns the words holding granule g's start and end bits in r, and
// its bit; nils when g is past the segments or its segment is not made.
func (r *run) flAt(g uintptr) (start, end *uint64, bit uint64) {
	k := g / flSegGranules
	if k >= flSegs {
		return nil, nil, 0
	}
	seg := r.fl[k].Load()
	if seg == nil {
		return nil, nil, 0
	}
	w := g % flSegGranules / 64
	return seg.start(w), seg.end(w), 1 << (g % 64)
}

// granules returns the first and last granule of chunk c of s bytes in r.
func (r *run) granules(c, s uintptr) (g0, g1 uintptr) {
	g0 = (c - r.start) / granule
	return g0, g0 + s/granule - 1
}

// fronted reports whether a front may take chunk c of s bytes, in r, when
// its block is freed: the fronts are on, s is a fast bin's size, and the
// segments reach its end.
func (h *Heap) fronted(r *run, c, s uintptr) bool {
	if h.fronts == nil || s-minAlloc >= numFast*granule { // fastIndex(s) < 0, for a multiple of 16: one test
		return false
	}
	_, g1 := r.granules(c, s)
	return g1/flSegGranules < flSegs
}

// markFront records chunk c of s bytes, in r, as a block in use a front
// may take (fronted), making its segments if need be: the end bit first,
// so that a Free that sees the start bit sees the end.
func (h *Heap) markFront(r *run, c, s uintptr) {
	h.mu.AssertHeld()
	g0, g1 := r.granules(c, s)
	for _, k := range [2]uintptr{g0 / flSegGranules, g1 / flSegGranules} {
		if r.fl[k].Load() == nil {
			r.fl[k].Store(new(flSeg))
			h.metaBytes += unsafe.Sizeof(flSeg{})
		}
	}
	_, e, eb := r.flAt(g1)
	atomic.OrUint64(e, eb)
	st, _, sb := r.flAt(g0)
	atomic.OrUint64(st, sb)
}

// frontLive reports whether chunk c of s bytes (fronted) is recorded in
// use: false once a front holds it.
func (r *run) frontLive(c, s uintptr) bool {
	g0, _ := r.granules(c, s)
	st, _, b := r.flAt(g0)
	return st != nil && atomic.LoadUint64(st)&b != 0
}

// claim clears chunk c's record (of s bytes, fronted) and reports whether
// this call cleared it: false if it was clear (a front holds the block, or
// another Free claimed it first).
func (r *run) claim(c, s uintptr) bool {
	g0, g1 := r.granules(c, s)
	st, _, sb := r.flAt(g0)
	if st == nil || atomic.AndUint64(st, ^sb)&sb == 0 {
		return false
	}
	_, e, eb := r.flAt(g1)
	atomic.AndUint64(e, ^eb)
	return true
}

// orHeader and andHeader set and clear bits of the header of chunk c, in
// r, with atomic instructions: c may be a block a front holds or takes,
// whose slack a front rewrites at the same time.
func (h *Heap) orHeader(r *run, c uintptr, bits uint64) {
	atomic.OrUint64(h.slot(r, c+8), bits)
}

func (h *Heap) andHeader(r *run, c uintptr, bits uint64) {
	atomic.AndUint64(h.slot(r, c+8), bits)
}

// frontOf returns P pid's front, locked (a no-op but in race builds), or
// nil. The caller is pinned (the slabs' cacheOf).
func (h *Heap) frontOf(pid int) *front {
	if uint(pid) >= uint(len(h.fronts)) {
		return nil
	}
	f := h.fronts[pid].Load()
	if f != nil && !f.Acquire() {
		return nil
	}
	return f
}

// unpinFront ends a section begun by frontOf.
func unpinFront(f *front) {
	if f != nil {
		f.Release()
	}
	percpu.Unpin()
}

// makeFront makes this P's front if it has none and the heap is open: on
// the slow paths, never pinned while allocating.
func (h *Heap) makeFront() {
	if h.fronts == nil {
		return
	}
	pid := percpu.Pin()
	have := uint(pid) >= uint(len(h.fronts)) || h.fronts[pid].Load() != nil
	percpu.Unpin()
	if have || h.frontsClosed.Load() {
		return
	}
	h.installFront(&front{sample: slab.NextSample(h.opts.ProfileRate)})
}

// installFront puts f in this P's slot if it is still empty (or another
// goroutine's won), and takes it out again if Close has begun since:
// Close may have drained the fronts after makeFront's test, and none may
// stay (none was used meanwhile: this P is pinned in between).
func (h *Heap) installFront(f *front) {
	h.frontMade.Store(true) // before any front can be used
	if pid := percpu.Pin(); pid < len(h.fronts) && h.fronts[pid].CompareAndSwap(nil, f) && h.frontsClosed.Load() {
		h.fronts[pid].Store(nil)
	}
	percpu.Unpin()
}

// segAt returns the segment that holds granule g of r and g's index in
// it, or nil.
func (r *run) segAt(g uintptr) (*flSeg, uintptr) {
	k := g / flSegGranules
	if k >= flSegs {
		return nil, 0
	}
	return r.fl[k].Load(), g % flSegGranules
}

// endsAt reports whether the first end bit of seg from index i0 is i1's
// (i0 <= i1 < flSegGranules): the chunk that starts at i0 ends at i1.
func (seg *flSeg) endsAt(i0, i1 uintptr) bool {
	w0, w1 := i0/64, i1/64
	from := ^uint64(0) << (i0 % 64)
	end := uint64(1) << (i1 % 64)
	upto := end | (end - 1)
	if w0 == w1 {
		return atomic.LoadUint64(seg.end(w0))&from&upto == end
	}
	if atomic.LoadUint64(seg.end(w0))&from != 0 || atomic.LoadUint64(seg.end(w1))&upto != end {
		return false
	}
	for w := w0 + 1; w < w1; w++ {
		if atomic.LoadUint64(seg.end(w)) != 0 {
			return false
		}
	}
	return true
}

// AllocFast returns a block of n bytes, with room for least bytes at
// least (its usable size; 0: n — a cold class's block keeps room for its
// class's size), from this P's front, or nil: no front, or none of that
// chunk size or up to frontLook granules larger. No lock. sampled says the
// block is the heap profile's sample (Options.ProfileRate), marked so
// already (flagSampled), within the pinned section: a caller
// outside the allocator's gate must not touch the region once unpinned,
// since Close may have unmapped it. The caller records it before handing
// it out. (One function for both: a wrapper for the zero least was a call
// level more on Malloc's medium path.)
func (h *Heap) AllocFast(n, least uintptr) (p unsafe.Pointer, sampled bool) {
	s := chunkSize(max(n, least))
	i := fastIndex(s)
	if i < 0 {
		return nil, false
	}
	f := h.frontOf(percpu.Pin())
	if f == nil {
		unpinFront(f)
		return nil, false
	}
	j := i
	for f.n[j] == 0 {
		// none of that size: one up to frontLook granules larger, if the
		// front holds one, rather than the lock (its slack is the
		// block's, as the heap's own when what is left is too small to
		// split off)
		if j++; j > i+frontLook || j >= numFast {
			unpinFront(f)
			return nil, false
		}
	}
	i, s = j, (uintptr(j)+fastFirst)*granule // s itself when j == i
	k := f.n[i] - 1
	e := &f.e[i][k%frontCount]
	hp := (*uint64)(h.ptr(e.c + 8))
	hd := atomic.LoadUint64(hp)
	if sizeOf(hd) != s || hd&flagInUse == 0 {
		// overwritten while held (a write past the end of the block
		// before it): left where it is, for the drain to report
		unpinFront(f)
		return nil, false
	}
	set := uint64(s-overhead-n) << slackShift
	if sampled = f.sample-int64(n) < 0; sampled {
		set |= flagSampled // freed through the heap's lock, whose OnFree drops its record
	}
	for !atomic.CompareAndSwapUint64(hp, hd, hd&(1<<slackShift-1)|set) {
		hd = atomic.LoadUint64(hp)
	}
	seg, i0 := e.r.segAt((e.c - e.r.start) / granule) // made: the block was in use before
	atomic.OrUint64(seg.start(i0/64), 1<<(i0%64))     // its end bit stayed set while the front held it
	c := e.c
	f.n[i] = k
	f.bytes -= s
	f.req -= e.req
	f.adj += n - e.req
	f.ops++
	if f.sample -= int64(n); sampled {
		f.sample = slab.NextSample(h.opts.ProfileRate)
	}
	unpinFront(f)
	return h.ptr(c + 2*overhead), sampled
}

// FreeFast frees the block at p, in run ar, into this P's front if it can
// without the lock: p is a block in use a front may take, sound, and the
// front has room. Otherwise it changes nothing and returns false, and the
// caller calls Free, which sorts out errors and full fronts.
func (h *Heap) FreeFast(ar *arena.Run, p uintptr) bool {
	// The record first: Go memory, read without the pin, it turns away
	// every block no front may take (a chunk above fastLimit's sizes,
	// above all) before the pin and the front.
	r := runOf(ar)
	c := p - 2*overhead
	if p&(granule-1) != 0 || c < r.start {
		return false
	}
	seg, i0 := r.segAt((c - r.start) / granule)
	if seg == nil {
		return false
	}
	w, b := seg.start(i0/64), uint64(1)<<(i0%64)
	if atomic.LoadUint64(w)&b == 0 {
		return false
	}
	f := h.frontOf(percpu.Pin()) // before the header: a front found means the region is still mapped (Close drains them)
	if f == nil || f.bytes > frontCap-fastLimit {
		// (a front with no room for a chunk of any size fails before it
		// reads the header, a cache miss; one that has room has it for
		// any chunk it holds, all below fastLimit)
		unpinFront(f)
		return false
	}
	hd := atomic.LoadUint64((*uint64)(h.ptr(c + 8)))
	s := sizeOf(hd)
	i := fastIndex(s)
	i1 := i0 + s/granule - 1
	if i < 0 || hd&(flagInUse|flagSampled) != flagInUse || uintptr(hd>>slackShift) > s-overhead || i1 >= flSegGranules ||
		f.n[i] >= frontCount || !seg.endsAt(i0, i1) ||
		atomic.AndUint64(w, ^b)&b == 0 { // claimed: another Free of it may have won
		unpinFront(f)
		return false
	}
	req := s - overhead - uintptr(hd>>slackShift)
	f.e[i][f.n[i]%frontCount] = frontEntry{c: c, r: r, req: req}
	f.n[i]++
	f.bytes += s
	f.req += req
	f.ops++
	unpinFront(f)
	return true
}

// unfront frees chunk e of s bytes, taken from a front, for real: into a
// fast bin or merged, as the heap's Free. Its record is clear already, and
// its header still holds the block's slack (e.req). A header overwritten
// while the front held it is reported, and the chunk lost: left in use in
// the bitmap (nothing merges with it), counted free. So is a chunk to be
// merged whose next chunk is damaged (reported by checkNext): its block's
// free succeeded, so it is not left in use, as the heap's Free leaves it.
func (h *Heap) unfront(e frontEntry, s uintptr) {
	h.mu.AssertHeld()
	_, g1 := e.r.granules(e.c, s)
	_, end, eb := e.r.flAt(g1)
	atomic.AndUint64(end, ^eb) // the end bit a held chunk keeps
	hd := h.header(e.c)
	lost := sizeOf(hd) != s || hd&flagInUse == 0 || s-overhead-uintptr(hd>>slackShift) != e.req
	if lost {
		h.damaged(e.c, "a chunk held by a P's front")
	} else {
		lost = h.holds(e.r, e.c, s) < 0 && h.checkNext(e.r, e.c+s) != nil
	}
	if lost {
		h.liveChunks--
		h.count(s, -1)
		h.liveBytes -= e.req
		h.chunkBytes -= s
		h.freeBytes += s
		return
	}
	_, _ = h.freeChecked(e.r, e.c, hd)
}

// emptyFront frees every chunk of front f, which no P uses any more
// (taken out of its slot and quiesced), into the heap, and folds its
// counts in.
func (h *Heap) emptyFront(f *front) {
	h.mu.AssertHeld()
	h.liveBytes += f.adj
	for i := range f.n {
		s := (uintptr(i) + fastFirst) * granule
		for _, e := range f.e[i][:f.n[i]] {
			h.unfront(e, s)
		}
		f.n[i] = 0
	}
	f.bytes, f.req, f.adj = 0, 0, 0
}

// drainOwn empties this P's front into the heap, if it holds anything, and
// reports whether it did: pinned, its chunks are moved out and its counts
// folded in, then freed into the heap unpinned (freeing may take the
// region's lock). A free of those may settle, and so call drainOwn again,
// when the front may have filled again (another goroutine on this P, or
// this one moved to another P): that inner call leaves the front alone,
// since frontBuf still holds the chunks the outer one is freeing.
func (h *Heap) drainOwn() bool {
	h.mu.AssertHeld()
	if h.ownDraining {
		return false
	}
	f := h.frontOf(percpu.Pin())
	if f == nil || f.bytes == 0 {
		unpinFront(f)
		return false
	}
	k := 0
	for i := range f.n {
		for _, e := range f.e[i][:f.n[i]] {
			h.frontBuf[k] = ownEntry{e, (uintptr(i) + fastFirst) * granule}
			k++
		}
		f.n[i] = 0
	}
	h.liveBytes += f.adj
	f.bytes, f.req, f.adj = 0, 0, 0
	f.ops++
	unpinFront(f)
	h.ownDraining = true
	for _, o := range h.frontBuf[:k] {
		h.unfront(o.e, o.s)
	}
	h.ownDraining = false
	return true
}

// ownEntry is a chunk drainOwn took from the front, and its size.
type ownEntry struct {
	e frontEntry
	s uintptr
}

// drainFrontsLocked takes the fronts retire says to (nil: all) out of
// their slots, waits until no goroutine uses them, and empties them into
// the heap. It returns how many it drained.
func (h *Heap) drainFrontsLocked(retire func(*front) bool) int {
	h.mu.AssertHeld()
	var old []*front
	for i := range h.fronts {
		f := h.fronts[i].Load()
		if f == nil || retire != nil && !retire(f) {
			continue
		}
		if h.fronts[i].CompareAndSwap(f, nil) {
			old = append(old, f)
		}
	}
	percpu.Quiesce(len(old), func(i int) *percpu.Lock { return &old[i].Lock })
	for _, f := range old {
		h.emptyFront(f)
	}
	return len(old)
}

// eachFront calls fn with every front, each pinned and locked as its own
// P's holds it (fn must not block): for Stats and the idle tests.
func (h *Heap) eachFront(fn func(*front)) {
	for i := range h.fronts {
		percpu.Pin()
		if f := h.fronts[i].Load(); f != nil && f.Acquire() {
			fn(f)
			f.Release()
		}
		percpu.Unpin()
	}
}

// frontSums returns what the fronts hold: chunks, their bytes, the
// requested bytes of the blocks freed into them, the adjustment of the
// requested bytes handed out from them, and the operations so far.
func (h *Heap) frontSums() (chunks, bytes, req, adj uintptr, ops uint64) {
	h.eachFront(func(f *front) {
		for _, k := range f.n {
			chunks += uintptr(k)
		}
		bytes += f.bytes
		req += f.req
		adj += f.adj
		ops += f.ops
	})
	return
}

// frontCount returns how many fronts there are.
func (h *Heap) frontCount() int {
	k := 0
	for i := range h.fronts {
		if h.fronts[i].Load() != nil {
			k++
		}
	}
	return k
}
