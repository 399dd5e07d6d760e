package arena

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/brkmap/alloc/internal/budget"
	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/lock"
	"github.com/brkmap/alloc/internal/sys"
	"golang.org/x/sys/unix"
)

// Kind says what a run is used for. It is fixed when the run is made.
type Kind uint8

const (
	// KindFree marks a free run (or one that has been merged away).
	KindFree Kind = iota
	// KindSlab marks a run carved into blocks of one size class.
	KindSlab
	// KindMid marks a run that is one block by itself (mid-size requests).
	KindMid
	// KindScratch marks a run of a request arena (alloc.Scratch): bump
	// allocated by its owner, never freed block by block, given back
	// whole (FreeRuns).
	KindScratch
	// KindFit marks a run of the best-fit heap (package fit): chunks of
	// any size with boundary tags, glibc's way.
	KindFit
	numKinds
)

// ErrNotLive is returned when a run handed back is not in use.
var ErrNotLive = errors.New("arena: run is not in use")

// Run is a range of whole pages of the region.
//
// Kind never changes after the run is published in the page map,
// and neither does Start while the run is in use, so they may be read
// without the region's lock. Everything else is guarded by Region.mu.
type Run struct {
	kind Kind

	start uintptr // address of the first byte
	pages uintptr
	used  uintptr // bytes the owner uses of it (KindMid: the request)

	live    bool // in use: not free, not merged away
	zero    bool // free run: every page is known zero (fresh or released)
	purging bool // free run out of the buckets, its pages being released without the lock (purge.go)

	dirtyAt int64 // free and not zero: when it was last made dirty (Region.now)

	bucket     int
	prev, next *Run
}

// Kind returns what the run is used for.
func (r *Run) Kind() Kind { return r.kind }

// Start returns the run's first address; stable while the run is in use.
func (r *Run) Start() uintptr { return r.start }

// Pages returns the run's length in pages (under the region's lock, or
// while the caller owns the run).
func (r *Run) Pages() uintptr { return r.pages }

// Config sets up a region.
type Config struct {
	Reserve       uintptr // bytes of address space to reserve
	TopPad        uintptr // extra bytes each time the break moves up
	TrimThreshold uintptr // free top of at least this moves the break down
	OS            *sys.OS
	Budget        *budget.Budget
	HugePageSize  uintptr // non-zero: huge pages for the region (see huge.go)
	// SideShift, if not 0, reserves a side after the region: a byte for
	// each 1<<SideShift bytes of it (side.go), from 3 to 16.
	SideShift uint
	// Purge turns on the release of dirty free runs PurgeDelay after
	// they were freed (see purge.go); PurgeDelay 0 releases them at once.
	Purge      bool
	PurgeDelay time.Duration
	// Now, if set, replaces the clock of the purge (monotonic
	// nanoseconds), for tests.
	Now func() int64
}

// Region is the brk-like region. All methods are safe for concurrent use.
// mu guards the break, the free-run buckets, the counters and the writes
// to the page map; the helpers named …Locked must be called with it held
// (asserted in race builds).
type Region struct {
	os     *sys.OS
	budget *budget.Budget
	base   unsafe.Pointer
	lo, hi uintptr // [lo, hi) is the reservation
	page   uintptr
	shift  uint
	huge   uintptr // huge page size, or 0: see huge.go

	topPad        uintptr
	trimThreshold atomic.Uintptr

	pagemap []atomic.Pointer[chunk]
	chunks  uintptr // the page map's chunks made, under mu

	purge purger // the delayed release of dirty free runs (purge.go)

	side   *Side   // the table after the reservation (side.go), or nil
	mapped uintptr // bytes of the mapping: the reservation and the side

	mu      lock.Mutex
	brk     uintptr // address of the break: [lo, brk) is usable
	closed  bool
	buckets [numBuckets]*Run
	nonzero [2]uint64 // bit b set: buckets[b] is not empty
	holding int       // TrimAfter calls emptying the layers: a freed run waits for their Trim

	// Releases in flight without the lock (purge.go), under mu.
	done         sync.Cond // L is &mu: broadcast when a release in flight ends
	inflight     int       // releases in flight
	topBusy      bool      // one of them gives back the top: the break must not move
	purgingPages uintptr   // free pages in flight (counted in freePages, and dirtyPages if dirty)
	purgingDirty uintptr   // of those, the dirty ones
	spare        *jobSpace // slices for the next job, reused

	// counters, under mu
	inUsePages [numKinds]uintptr
	inUseRuns  [numKinds]uintptr
	midUsed    uintptr // sum of used over KindMid runs
	freePages  uintptr
	dirtyPages uintptr // free pages not known to be released
	freeRuns   uintptr
}

const (
	numBuckets  = 128 // buckets[i] holds free runs of i+1 pages; the last, 128 and more
	chunkShift  = 12  // pages per page-map chunk: 2^12 (16 MiB of 4 KiB pages)
	chunkLength = 1 << chunkShift
)

// chunk is one piece of the page map: an entry per page, read lock-free
// (loadEntry) and written under the region's lock (storeEntry).
type chunk [chunkLength]unsafe.Pointer // *Run

// New reserves the region. Nothing is committed until Alloc.
func New(c Config) (*Region, error) {
	page := sys.PageSize
	reserve := alignUp(c.Reserve, max(page, c.HugePageSize))
	if reserve == 0 {
		return nil, fmt.Errorf("arena: reserve must be positive")
	}
	side := sideBytes(reserve, c.SideShift, page)
	if reserve+side < reserve {
		return nil, fmt.Errorf("arena: reserve %d bytes and a side of %d: past the address space: %w", reserve, side, errs.ErrNoMemory)
	}
	p, err := reserveRange(c.OS, reserve, side, c.HugePageSize)
	if err != nil {
		return nil, fmt.Errorf("arena: reserve %d bytes: %w: %w", reserve+side, errs.ErrNoMemory, err)
	}
	r := &Region{
		os:     c.OS,
		budget: c.Budget,
		base:   p,
		lo:     uintptr(p),
		hi:     uintptr(p) + reserve,
		page:   page,
		shift:  uint(bits.TrailingZeros64(uint64(page))),
		topPad: alignUp(c.TopPad, page),
		huge:   c.HugePageSize,
	}
	r.mapped = reserve + side
	if side != 0 {
		r.side = &Side{r: r, base: unsafe.Add(p, reserve+page), n: side - page, shift: c.SideShift} // (a guard page first: sideBytes)
	}
	r.brk = r.lo
	r.done.L = &r.mu
	r.trimThreshold.Store(c.TrimThreshold)
	r.purge.init(c)
	npages := reserve >> r.shift
	r.pagemap = make([]atomic.Pointer[chunk], (npages+chunkLength-1)>>chunkShift)
	return r, nil
}

// Contains reports whether addr lies in the reservation.
func (r *Region) Contains(addr uintptr) bool { return addr-r.lo < r.hi-r.lo }

// Base returns the first address of the region.
func (r *Region) Base() uintptr { return r.lo }

// Ptr turns an address of the region into a pointer.
func (r *Region) Ptr(addr uintptr) unsafe.Pointer { return unsafe.Add(r.base, addr-r.lo) }

// PageSize returns the region's page size.
func (r *Region) PageSize() uintptr { return r.page }

// Limit returns the region's cap (Config.Limit), 0 if none.
func (r *Region) Limit() uint64 { return r.budget.Limit() }

// SetTrimThreshold changes the trim threshold (the dynamic threshold does).
func (r *Region) SetTrimThreshold(n uintptr) { r.trimThreshold.Store(n) }

// PageMap is a copy of the region's page map handle, for callers that want
// the lookup without a hop through the Region: it never changes after New.
type PageMap struct {
	lo, n  uintptr // base, and bytes of the reservation
	shift  uint
	chunks []atomic.Pointer[chunk]
}

// PageMap returns the region's page map handle.
func (r *Region) PageMap() PageMap {
	return PageMap{lo: r.lo, n: r.hi - r.lo, shift: r.shift, chunks: r.pagemap}
}

// Lookup returns the run recorded for the page holding addr, or nil if
// there is none or addr is outside the region. Lock-free; see
// Region.Lookup.
func (m *PageMap) Lookup(addr uintptr) *Run {
	off := addr - m.lo
	if off >= m.n {
		return nil
	}
	return entryAt(m.chunks, off>>(m.shift&63)) // the mask: one shift instruction, not Go's test for shifts past 63
}

// Lookup returns the run recorded for the page holding addr, or nil. addr
// must be in the region. For a page of a run in use it is that run; for a
// page of free memory it is a free run, a run that is no longer live, or
// nil. Lock-free.
func (r *Region) Lookup(addr uintptr) *Run { return r.at(r.pageOf(addr)) }

// setLocked records run as the owner of pages [from, to) (page indexes).
func (r *Region) setLocked(run *Run, from, to uintptr) {
	r.mu.AssertHeld()
	for pg := from; pg < to; {
		ci := pg >> chunkShift
		c := r.pagemap[ci].Load()
		if c == nil {
			c = new(chunk)
			r.pagemap[ci].Store(c)
			r.chunks++
		}
		end := min(to, (ci+1)<<chunkShift)
		for ; pg < end; pg++ {
			storeEntry(&c[pg&(chunkLength-1)], unsafe.Pointer(run))
		}
	}
}

func (r *Region) pageOf(addr uintptr) uintptr { return (addr - r.lo) >> r.shift }

// at returns the run recorded for page pg of the reservation, or nil.
func (r *Region) at(pg uintptr) *Run { return entryAt(r.pagemap, pg) }

// entryAt is the one read of the page map: the entry of page pg, or nil
// where no chunk was ever made.
func entryAt(chunks []atomic.Pointer[chunk], pg uintptr) *Run {
	c := chunks[pg>>chunkShift].Load()
	if c == nil {
		return nil
	}
	return (*Run)(loadEntry(&c[pg&(chunkLength-1)]))
}

func alignUp(n, a uintptr) uintptr { return (n + a - 1) &^ (a - 1) }

// --- free runs ---

func bucketOf(pages uintptr) int {
	if pages >= numBuckets {
		return numBuckets - 1
	}
	return int(pages) - 1
}

// insertFreeLocked puts free run f in its bucket and counts it.
func (r *Region) insertFreeLocked(f *Run) {
	r.linkLocked(f)
	r.countLocked(f)
}

// removeFreeLocked takes free run f out of its bucket and the counters.
func (r *Region) removeFreeLocked(f *Run) {
	r.unlinkLocked(f)
	r.uncountLocked(f)
}

// countLocked counts free run f in the free (and dirty) pages and runs.
func (r *Region) countLocked(f *Run) {
	r.mu.AssertHeld()
	r.freePages += f.pages
	if !f.zero {
		r.dirtyPages += f.pages
	}
	r.freeRuns++
}

func (r *Region) uncountLocked(f *Run) {
	r.mu.AssertHeld()
	r.freePages -= f.pages
	if !f.zero {
		r.dirtyPages -= f.pages
	}
	r.freeRuns--
}

// linkLocked puts free run f in its bucket and records its boundary pages
// in the page map.
func (r *Region) linkLocked(f *Run) {
	r.mu.AssertHeld()
	b := bucketOf(f.pages)
	f.bucket = b
	f.prev = nil
	f.next = r.buckets[b]
	if f.next != nil {
		f.next.prev = f
	}
	r.buckets[b] = f
	r.nonzero[b>>6] |= 1 << (b & 63)
	// boundary pages
	first := r.pageOf(f.start)
	r.setLocked(f, first, first+1)
	if f.pages > 1 {
		r.setLocked(f, first+f.pages-1, first+f.pages)
	}
}

// unlinkLocked takes free run f out of its bucket; its page-map entries
// stay.
func (r *Region) unlinkLocked(f *Run) {
	r.mu.AssertHeld()
	if f.prev != nil {
		f.prev.next = f.next
	} else {
		r.buckets[f.bucket] = f.next
		if f.next == nil {
			r.nonzero[f.bucket>>6] &^= 1 << (f.bucket & 63)
		}
	}
	if f.next != nil {
		f.next.prev = f.prev
	}
	f.prev, f.next = nil, nil
}

// findFreeLocked returns the best-fitting free run of at least n pages, or nil.
func (r *Region) findFreeLocked(n uintptr) *Run {
	r.mu.AssertHeld()
	b := bucketOf(n)
	for w := b >> 6; w < 2; w++ {
		m := r.nonzero[w]
		if w == b>>6 {
			m &^= (1 << (b & 63)) - 1
		}
		if m == 0 {
			continue
		}
		i := w<<6 + bits.TrailingZeros64(m)
		if i < numBuckets-1 {
			return r.buckets[i]
		}
		// the big bucket: best fit, lowest address on ties
		var best *Run
		for f := r.buckets[i]; f != nil; f = f.next {
			if f.pages >= n && (best == nil || f.pages < best.pages ||
				f.pages == best.pages && f.start < best.start) {
				best = f
			}
		}
		return best
	}
	return nil
}

// topFreeLocked returns the free run that ends at the break, or nil (also
// while that run is being released: purge.go).
func (r *Region) topFreeLocked() *Run {
	r.mu.AssertHeld()
	if r.brk == r.lo {
		return nil
	}
	f := r.at(r.pageOf(r.brk) - 1)
	if f != nil && f.kind == KindFree && !f.purging {
		return f
	}
	return nil
}

// growLocked moves the break up so that a free run of at least n pages ends at
// it, and returns that run (already in its bucket). It fails with
// errTopBusy while the top is being given back without the lock.
func (r *Region) growLocked(n uintptr) (*Run, error) {
	r.mu.AssertHeld()
	if r.topBusy {
		return nil, errTopBusy
	}
	top := r.topFreeLocked()
	need := n
	if top != nil {
		need -= top.pages
	}
	bytes := need << r.shift
	want := r.hugeUp(r.brk, bytes+r.topPad)
	if want > r.hi-r.brk || !r.budget.Take(want) {
		want = bytes // without the pad
		if want > r.hi-r.brk {
			return nil, fmt.Errorf("arena: grow by %d bytes: reservation of %d bytes is full: %w",
				bytes, r.hi-r.lo, errs.ErrNoMemory)
		}
		if !r.budget.Take(want) {
			return nil, fmt.Errorf("arena: grow by %d bytes: limit of %d bytes reached: %w",
				bytes, r.budget.Limit(), errs.ErrNoMemory)
		}
	}
	if err := r.os.Mprotect(unsafe.Add(r.base, r.brk-r.lo), want, unix.PROT_READ|unix.PROT_WRITE); err != nil {
		r.budget.Give(want)
		return nil, fmt.Errorf("arena: grow by %d bytes: %w: %w", want, errs.ErrNoMemory, err)
	}
	start := r.brk
	r.brk += want
	pages := want >> r.shift
	if top != nil {
		r.removeFreeLocked(top)
		top.pages += pages
		r.insertFreeLocked(top)
		return top, nil
	}
	f := &Run{kind: KindFree, start: start, pages: pages, zero: true}
	r.insertFreeLocked(f)
	return f, nil
}

// carveLocked takes pages [f.start+head, +n) out of free run f (already removed
// from its bucket) as a new live run; the rest goes back as free runs.
func (r *Region) carveLocked(f *Run, head, n uintptr, run *Run) *Run {
	r.mu.AssertHeld()
	kind := run.kind
	run.start, run.pages, run.live = f.start+head<<r.shift, n, true
	tail := f.pages - head - n
	zero := f.zero
	if tail > 0 {
		t := &Run{kind: KindFree, start: run.start + n<<r.shift, pages: tail, zero: zero, dirtyAt: f.dirtyAt}
		r.insertFreeLocked(t)
	}
	if head > 0 {
		f.pages = head
		r.insertFreeLocked(f)
	}
	first := r.pageOf(run.start)
	r.setLocked(run, first, first+n)
	r.inUsePages[kind] += n
	r.inUseRuns[kind]++
	run.zero = zero
	return run
}

// Alloc returns a run of n pages whose start is aligned to align bytes (a
// power of two; 0 or anything up to the page size means page-aligned),
// with used bytes recorded, and whether its memory is known to be zero.
func (r *Region) Alloc(n, align uintptr, kind Kind, used uintptr) (*Run, bool, error) {
	return r.AllocRun(&Run{kind: kind}, n, align, used)
}

// NewRun returns a Run of the given kind for AllocRun, to embed as the
// first field of the caller's own metadata: the page map then points
// straight at that metadata, and a lookup needs no further hop.
func NewRun(kind Kind) Run { return Run{kind: kind} }

// AllocRun is Alloc with the Run supplied by the caller (made by NewRun,
// never used before).
func (r *Region) AllocRun(run *Run, n, align uintptr, used uintptr) (*Run, bool, error) {
	kind := run.kind
	if n == 0 || n > (r.hi-r.lo)>>r.shift {
		return nil, false, fmt.Errorf("arena: %d pages do not fit a reservation of %d bytes: %w",
			n, r.hi-r.lo, errs.ErrNoMemory)
	}
	extra := uintptr(0)
	if align > r.page {
		extra = align>>r.shift - 1
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, false, errClosed
	}
	f := r.findFreeLocked(n + extra)
	for f == nil {
		var err error
		if f, err = r.growLocked(n + extra); err != nil {
			if r.inflight == 0 {
				return nil, false, err
			}
			// Pages being released come back as free runs, or give
			// the budget back: wait for them rather than fail.
			r.done.Wait()
			if r.closed {
				return nil, false, errClosed
			}
			f = r.findFreeLocked(n + extra)
		}
	}
	r.removeFreeLocked(f)
	head := uintptr(0)
	if extra > 0 {
		head = (alignUp(f.start, align) - f.start) >> r.shift
	}
	r.carveLocked(f, head, n, run)
	if kind == KindMid {
		run.used = used
		r.midUsed += used
	}
	return run, run.zero, nil
}

// errClosed is what a call on a closed region gets: the allocator's
// ErrClosed, so that a caller racing Close matches errors.Is(err,
// alloc.ErrClosed).
var errClosed error = errs.ErrClosed

// errTopBusy is growLocked's refusal while the top is being given back
// without the lock (purge.go): AllocRun waits for it, Resize moves the
// block instead.
var errTopBusy = errors.New("arena: the top is being released")

// SetUsed records how many bytes of a KindMid run the caller uses.
func (r *Region) SetUsed(run *Run, n uintptr) {
	r.mu.Lock()
	r.midUsed += n - run.used
	run.used = n
	r.mu.Unlock()
}

// Used returns the bytes recorded with SetUsed and the run's size in bytes,
// and whether the run is still live.
func (r *Region) Used(run *Run) (used, size uintptr, live bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return run.used, run.pages << r.shift, run.live
}

// Free gives a live run back. It fails with ErrNotLive if the run was
// already given back, and never touches anything else then. Pages it
// gives back to the kernel (the top past the trim threshold, runs the
// purge finds due) are released after the lock is dropped (purge.go).
func (r *Region) Free(run *Run) error {
	_, err := r.FreeCounted(run)
	return err
}

// FreeCounted is Free, and returns the bytes it gave back to the kernel
// (the top past the trim threshold, runs the purge found due): for a
// caller that counts what it gives back (Trim).
func (r *Region) FreeCounted(run *Run) (uintptr, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, errClosed
	}
	if !run.live {
		r.mu.Unlock()
		return 0, ErrNotLive
	}
	r.retireLocked(run)
	var j job
	r.freeLocked(run.start, run.pages, true, &j)
	return r.unlockAndRelease(&j), nil
}

// retireLocked takes live run out of the counters of runs in use.
func (r *Region) retireLocked(run *Run) {
	r.mu.AssertHeld()
	run.live = false
	r.inUsePages[run.kind] -= run.pages
	r.inUseRuns[run.kind]--
	if run.kind == KindMid {
		r.midUsed -= run.used
	}
}

// freeLocked makes [start, start+pages) a free run and takes into j what
// is to be given back with it: with trim, the top if it has grown past the
// threshold, and the dirty runs the purge finds due.
func (r *Region) freeLocked(start, pages uintptr, trim bool, j *job) {
	f, now := r.releaseLocked(start, pages)
	if r.holding > 0 {
		return // a TrimAfter gives it back, and counts it, once
	}
	if trim {
		r.trimTopLocked(f, j)
	}
	if now != 0 {
		r.purgeDueLocked(now, j)
	}
}

// trimTopLocked takes into j the part of free run f above TopPad, if f
// (nil: none) ends at the break and has grown past the trim threshold.
func (r *Region) trimTopLocked(f *Run, j *job) {
	if f != nil && f.start+f.pages<<r.shift == r.brk && f.pages<<r.shift >= r.trimThreshold.Load() {
		r.takeTopLocked(f, r.topPad, false, j)
	}
}

// releaseLocked makes [start, start+pages) a dirty free run, coalesced
// with its neighbours, and returns it with the purge's time of the free
// (0 without the purge).
func (r *Region) releaseLocked(start, pages uintptr) (*Run, int64) {
	r.mu.AssertHeld()
	f := &Run{kind: KindFree, start: start, pages: pages}
	now := int64(0)
	if r.purge.on {
		now = r.purge.now()
		f.dirtyAt = now
	}
	return r.coalesceLocked(f), now
}

// coalesceLocked merges free run f (in no bucket, not counted) with the
// free runs on either side, puts the result in its bucket and returns it.
// A neighbour being released without the lock (purging) is left alone: it
// merges when it comes back. The merged run is zero only if every part
// is, and was made dirty when its newest dirty part was.
func (r *Region) coalesceLocked(f *Run) *Run {
	r.mu.AssertHeld()
	first := r.pageOf(f.start)
	if first > 0 {
		if left := r.at(first - 1); left != nil && left.kind == KindFree && !left.purging && left.start+left.pages<<r.shift == f.start {
			r.removeFreeLocked(left)
			f.start = left.start
			f.pages += left.pages
			mergeDirt(f, left)
		}
	}
	if end := f.start + f.pages<<r.shift; end < r.brk {
		if right := r.at(r.pageOf(end)); right != nil && right.kind == KindFree && !right.purging && right.start == end {
			r.removeFreeLocked(right)
			f.pages += right.pages
			mergeDirt(f, right)
		}
	}
	r.insertFreeLocked(f)
	return f
}

// mergeDirt gives f, merged with free run o, its zero flag and dirtyAt.
func mergeDirt(f, o *Run) {
	switch {
	case o.zero:
	case f.zero:
		f.zero, f.dirtyAt = false, o.dirtyAt
	default:
		f.dirtyAt = max(f.dirtyAt, o.dirtyAt)
	}
}

// Trim releases every free page of the region: one madvise(MADV_DONTNEED)
// per free run not yet released, then the break moves down to the last run
// in use. It returns the bytes given back: every byte released with
// madvise, and every byte the break moved down past (no longer
// committed), released before or not. With huge pages every free run
// is released, even one never used: a huge page faulted in by a neighbour
// made it resident as well.
//
// Trim first waits for the releases in flight (purge.go), so that every
// free run is in reach, then takes them all out and releases them without
// the lock, as the purge does.
func (r *Region) Trim() uintptr {
	r.mu.Lock()
	for r.inflight > 0 && !r.closed {
		r.done.Wait()
	}
	if r.closed {
		r.mu.Unlock()
		return 0
	}
	var j job
	if top := r.topFreeLocked(); top != nil {
		r.takeTopLocked(top, 0, false, &j) // committed bytes given back, released or not
	}
	for b := range r.buckets {
		for f := r.buckets[b]; f != nil; {
			next := f.next
			if !f.zero || r.huge != 0 {
				r.takeLocked(f, &j)
			}
			f = next
		}
	}
	if r.purge.on {
		r.purge.next = never // nothing dirty waits
	}
	return r.unlockAndRelease(&j)
}

// TrimAfter calls empty, then Trim, and returns what both gave back: the
// allocator's Trim, whose empty lets every layer give the region what it
// holds empty (a P cache's slabs, the best-fit heap's runs, Debug's
// quarantined runs) and returns what it released itself. While empty
// runs, a run freed (by anyone) is only made a free run: the top past the
// trim threshold and the runs the purge finds due wait for Trim, which
// gives back and counts each byte once. Freed one by one as usual, each
// run at the top would trim it, keeping the pad, which the purge (at
// once) releases and the next run's trim cuts: counted again for every
// run.
func (r *Region) TrimAfter(empty func() uintptr) uintptr {
	r.mu.Lock()
	r.holding++
	r.mu.Unlock()
	n := func() uintptr {
		defer func() {
			r.mu.Lock()
			r.holding--
			r.mu.Unlock()
		}()
		return empty()
	}()
	return n + r.Trim()
}

// Close gives the whole reservation back. Every run becomes invalid. It
// waits for the releases in flight (purge.go): none of them may touch the
// reservation once it is unmapped.
func (r *Region) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.purge.stop()
	for r.inflight > 0 {
		r.done.Wait()
	}
	r.budget.Give(r.brk - r.lo)
	r.brk = r.lo
	for i := range r.pagemap {
		if r.pagemap[i].Load() != nil {
			r.pagemap[i].Store(nil)
		}
	}
	r.chunks = 0 // gone with the entries: Counters' PageMapBytes
	if r.side != nil {
		r.side.committed.Store(0)
	}
	return r.os.Munmap(r.base, r.mapped)
}

// Resize grows a live KindMid or KindFit run in place to n pages, taking the free
// run that follows it or moving the break, and reports whether it could.
// With n smaller than the run, it shrinks the run and frees the tail.
func (r *Region) Resize(run *Run, n uintptr) bool {
	r.mu.Lock()
	if !r.closed && run.live && 0 < n && n < run.pages {
		cut := run.pages - n
		run.pages = n
		r.inUsePages[run.kind] -= cut
		tail := r.pageOf(run.start) + n
		r.setLocked(nil, tail, tail+cut) // the tail is no longer the run's
		var j job
		r.freeLocked(run.start+n<<r.shift, cut, true, &j)
		r.unlockAndRelease(&j)
		return true
	}
	defer r.mu.Unlock()
	if r.closed || !run.live || n == 0 {
		return false
	}
	if n == run.pages {
		return true
	}
	more := n - run.pages
	end := run.start + run.pages<<r.shift
	var next *Run
	if end < r.brk {
		next = r.at(r.pageOf(end))
		if next == nil || next.kind != KindFree || next.purging || next.start != end {
			return false
		}
	}
	if next == nil || next.pages < more {
		// only the top can grow: the run, or the free run after it, must end at the break
		if (next == nil && end != r.brk) || (next != nil && next.start+next.pages<<r.shift != r.brk) {
			return false
		}
		var err error
		if next, err = r.growLocked(more); err != nil {
			return false
		}
		if next.start != end { // growLocked made a new top run not adjacent: cannot happen, but be safe
			return false
		}
	}
	r.removeFreeLocked(next)
	if rest := next.pages - more; rest > 0 {
		next.start += more << r.shift
		next.pages = rest
		r.insertFreeLocked(next)
	}
	first := r.pageOf(end)
	r.setLocked(run, first, first+more)
	run.pages = n
	r.inUsePages[run.kind] += more
	return true
}

// Counters is a snapshot of the region's bookkeeping.
type Counters struct {
	Base, Break  uintptr
	ArenaBytes   uintptr // base to break
	SlabBytes    uintptr // pages carved into slabs
	MidBytes     uintptr // pages given to mid-size blocks
	MidRuns      uintptr // mid-size blocks live
	MidUsed      uintptr // bytes requested by them
	ScratchBytes uintptr // pages held by request arenas (KindScratch runs)
	ScratchRuns  uintptr
	FitBytes     uintptr // pages held by the best-fit heap (KindFit runs)
	FreeBytes    uintptr // free pages below the break
	DirtyBytes   uintptr // of those, not yet released (resident if touched)
	FreeRuns     uintptr
	TopFreeBytes uintptr // the free run at the break: what trimming the top releases (keepcost)
	PurgedBytes  uintptr // released by the purge so far
	// PurgingBytes is the free pages being released right now without
	// the region's lock (purge.go): part of FreeBytes, and of DirtyBytes
	// if they were dirty, until the release is done.
	PurgingBytes uintptr
	PageMapBytes uintptr // the page map's chunks, in the Go heap
	// BudgetUsed is the budget's bytes in use, read with the rest: the
	// purge's timer moves the break and the budget together, under the
	// region's lock, so a snapshot taken apart could see one and not the
	// other.
	BudgetUsed uint64
}

// Counters returns the region's bookkeeping.
func (r *Region) Counters() Counters {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := Counters{
		Base:         r.lo,
		Break:        r.brk,
		ArenaBytes:   r.brk - r.lo,
		SlabBytes:    r.inUsePages[KindSlab] << r.shift,
		MidBytes:     r.inUsePages[KindMid] << r.shift,
		MidRuns:      r.inUseRuns[KindMid],
		MidUsed:      r.midUsed,
		ScratchBytes: r.inUsePages[KindScratch] << r.shift,
		ScratchRuns:  r.inUseRuns[KindScratch],
		FitBytes:     r.inUsePages[KindFit] << r.shift,
		FreeBytes:    r.freePages << r.shift,
		DirtyBytes:   r.dirtyPages << r.shift,
		FreeRuns:     r.freeRuns,
		PurgedBytes:  r.purge.purged,
		PurgingBytes: r.purgingPages << r.shift,
		BudgetUsed:   r.budget.Used(),
	}
	c.PageMapBytes = r.chunks*unsafe.Sizeof(chunk{}) + uintptr(len(r.pagemap))*unsafe.Sizeof(r.pagemap[0])
	if !r.closed {
		if top := r.topFreeLocked(); top != nil {
			c.TopFreeBytes = top.pages << r.shift
		}
	}
	return c
}

// Span is a range of the region, for maps and measurements.
type Span struct {
	Start, Len uintptr
	Kind       Kind
	Released   bool // free and known released
}

// Spans calls fn for every run below the break, in address order.
func (r *Region) Spans(fn func(Span)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	for addr := r.lo; addr < r.brk; {
		run := r.at(r.pageOf(addr))
		n := run.pages << r.shift
		fn(Span{Start: addr, Len: n, Kind: run.kind, Released: run.kind == KindFree && run.zero})
		addr += n
	}
}

// Resident measures with mincore how many bytes below the break are
// resident in RAM.
func (r *Region) Resident(vec *[]byte) uintptr {
	r.mu.Lock()
	n := r.brk - r.lo
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return 0
	}
	res, _ := r.os.Resident(r.base, n, vec)
	return res
}
