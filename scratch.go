package alloc

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/errs"
	"golang.org/x/sys/unix"
)

// Request arenas (Scratch): what Go's arena experiment offered, off the Go
// heap.
//
// A Scratch hands out memory by bumping an offset through chunks, page
// runs of the region (arena.KindScratch) taken one at a time as they fill:
// the first 16 KiB, each next twice the last, up to the chunk size (8 MiB
// by default, ScratchChunk). A request of more than a quarter of the chunk
// size gets a run of its own. No object is freed by itself: Free gives
// every run back in one call (one lock, arena.Region.FreeRuns), Reset
// keeps the chunks the ended request used for the next one.
//
//  1. The fast path (fast): round the offset up to the alignment, compare
//     with the end of the chunk's known-zero part (lim) and the type with
//     the last one admitted as pointer-free, add. Three loads, two
//     compares, one store: no lock, no atomic read-modify-write, no memory
//     touched. The Allocator's Close shuts it by setting every open
//     Scratch's lim to 0 (scratchSet), so it need not look at the
//     Allocator at all. Measured: about 2.4 ns of the ~6 ns of CPU an
//     object costs in `go run ./bench scratch`'s object64 (pprof: the
//     call of the typed helper, which cannot be inlined, its dictionary
//     and the bump), clearing a reused chunk about 1.2 ns.
//  2. When the chunk's known-zero part is used up (slow, inside the gate
//     of gate.go): clear the next piece of a chunk kept from an earlier
//     request (16 KiB at a time, or what the request needs), or move to the
//     next kept chunk, or take a new run from the region.
//
// Every byte handed out is zero: fresh pages are zero from the kernel, and
// a chunk kept by Reset is cleared piece by piece as the next request
// reaches it (so Reset itself is cheap, and a small request after a big
// one clears only what it uses).
//
// Ownership: a Scratch belongs to one goroutine at a time (a request
// handler, a worker); it is not safe for concurrent use. Every method
// writes its fields without synchronization, so the race detector reports
// two goroutines using one Scratch at once; hand it over with the usual
// synchronization (a channel, a mutex). Its objects may be read and written
// by any goroutine, as any memory.
//
// Debug: Free and Reset make every page of the Scratch PROT_NONE and keep
// the runs out of use in a quarantine of scratchQuarantineLen runs, so a
// pointer kept past Free or Reset faults on use (Reset then keeps no page:
// the next request takes new chunks).

// ErrScratchFreed: the Scratch was freed; it serves nothing more.
var ErrScratchFreed = errors.New("alloc: scratch arena already freed")

// Scratch sizes.
const (
	// DefaultScratchChunk is the largest chunk a Scratch takes from the
	// region unless ScratchChunk says otherwise.
	DefaultScratchChunk = 8 << 20
	// scratchFirstChunk is a Scratch's first chunk: a request that needs
	// little commits little.
	scratchFirstChunk = 16 << 10
	// scratchClearStep is how much of a kept chunk is cleared at a time.
	scratchClearStep = 16 << 10
	// scratchQuarantineLen bounds Debug's quarantine of freed runs.
	scratchQuarantineLen = 256
)

// ScratchOption sets up a Scratch (NewScratch).
type ScratchOption func(*Scratch)

// ScratchChunk sets the largest chunk the Scratch takes from the region
// (rounded up to whole pages, at least 16 KiB; default 8 MiB, as Go's
// arena experiment). Requests
// above a quarter of it get a run of their own. A larger chunk means fewer
// trips to the region for a big request, a smaller one less memory held
// by a small one.
func ScratchChunk(n int) ScratchOption {
	return func(s *Scratch) {
		s.chunkMax = uintptr(max(n, scratchFirstChunk))
	}
}

// Scratch is a request arena: objects are bump-allocated from page runs of
// its Allocator's region and all freed at once, by Free or Reset. Every
// object it hands out is zeroed, and like every block of the Allocator
// must hold no Go pointers (ScratchNew and ScratchSlice refuse such
// types). It is owned by one goroutine at a time: not safe for concurrent
// use (the race detector reports such use). Make one with
// Allocator.NewScratch; a zero Scratch returns ErrNotInitialized.
type Scratch struct {
	// Hot: read by every allocation (the fast path, bump). [off, lim) is
	// the known-zero rest of the current chunk, as offsets from base.
	// lim is atomic only so that the Allocator's Close may set it to 0
	// (scratchSet.close): the fast path loads it with a plain load on
	// amd64 and arm64, and only the slow path stores it.
	off    uintptr
	lim    atomic.Uintptr
	base   unsafe.Pointer // the region's base
	okType uintptr        // the last type a typed helper admitted (typeID)

	a        *Allocator
	page     uintptr
	chunkMax uintptr
	chunks   []scratchChunk // the chunk set, in the order of use
	cur      int            // index of the current chunk; -1: none yet since New or Reset
	big      []*arena.Run   // runs of requests beyond a chunk
	runs     []*arena.Run   // reused to hand runs to the region
	freed    bool
}

// scratchChunk is one chunk of a Scratch, in offsets from the region's
// base. [start, zeroFrom) may hold bytes of an earlier request; from
// zeroFrom to end it is zero. used is where the last request stopped in it.
type scratchChunk struct {
	run                       *arena.Run
	start, end, zeroFrom, use uintptr
}

// NewScratch returns an empty request arena of a: it holds no memory
// until its first allocation. The Scratch must be given back with Free
// (or lives until a is closed).
func (a *Allocator) NewScratch(opts ...ScratchOption) *Scratch {
	s := &Scratch{a: a, page: a.page, chunkMax: DefaultScratchChunk, cur: -1}
	for _, o := range opts {
		o(s)
	}
	if a.region != nil {
		s.base = a.region.Ptr(a.region.Base())
		s.chunkMax = alignUp(s.chunkMax, s.page)
		a.scratches.add(s)
	}
	return s
}

func alignUp(n, a uintptr) uintptr { return (n + a - 1) &^ (a - 1) }

// scratchZero is where an object of 0 bytes points.
var scratchZero [16]byte

// fast is the fast path: n bytes aligned to align (a power of two), zero,
// or nil if the current chunk's known-zero part cannot hold them, typ is
// not the type last admitted (typeID; Alloc passes okType itself), or the
// Allocator is closed. The comparison is >=, not >, so that a Scratch
// with no chunk (off = lim = 0: new, reset or freed) always takes the
// slow path, even for 0 bytes. Small enough to be inlined in the typed
// helpers: the checks and the bump are all an allocation costs here.
func (s *Scratch) fast(n, align, typ uintptr) unsafe.Pointer {
	off := (s.off + align - 1) &^ (align - 1)
	if off+n >= s.lim.Load() || typ != s.okType {
		return nil
	}
	s.off = off + n
	return unsafe.Add(s.base, off)
}

// bump is fast, then slow.
func (s *Scratch) bump(n, align uintptr) (unsafe.Pointer, error) {
	if p := s.fast(n, align, s.okType); p != nil {
		return p, nil
	}
	return s.slow(n, align)
}

// slow is every allocation the fast path cannot serve: it says why the
// Scratch cannot serve, or serves inside the gate.
func (s *Scratch) slow(n, align uintptr) (unsafe.Pointer, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	if n == 0 {
		return unsafe.Pointer(&scratchZero), nil
	}
	if !s.a.enter() {
		return nil, ErrClosed
	}
	p, err := s.grow(n, align)
	s.a.leave(nil)
	return p, err
}

// usable reports why the Scratch cannot serve a call.
func (s *Scratch) usable() error {
	switch {
	case s.a == nil:
		return fmt.Errorf("%w (a zero Scratch: make one with Allocator.NewScratch)", ErrNotInitialized)
	case s.freed:
		return ErrScratchFreed
	}
	return s.a.usable()
}

// grow serves n bytes aligned to align when the fast path cannot: from the
// rest of the current chunk (clearing it further), the next chunk kept, a
// new chunk, or a run of their own. Inside the gate.
func (s *Scratch) grow(n, align uintptr) (unsafe.Pointer, error) {
	if n > s.chunkMax/4 || align > s.page {
		return s.bigRun(n, align)
	}
	for {
		if s.cur >= 0 {
			c := &s.chunks[s.cur]
			if off := (s.off + align - 1) &^ (align - 1); off+n <= c.end {
				s.clean(c, off+n)
				s.off = off + n
				return unsafe.Add(s.base, off), nil
			}
			s.note(c)
		}
		if s.cur+1 == len(s.chunks) {
			if err := s.newChunk(n + align); err != nil {
				return nil, err
			}
		}
		s.cur++
		c := &s.chunks[s.cur]
		s.off = c.start
		if c.zeroFrom == c.start {
			s.lim.Store(c.end)
		} else {
			s.lim.Store(c.start)
		}
	}
}

// clean makes the current chunk c known zero up to at least to: it clears
// the next piece of what an earlier request left (scratchClearStep at a
// time, or up to to), or, past it, extends lim to the chunk's end.
func (s *Scratch) clean(c *scratchChunk, to uintptr) {
	lim := s.lim.Load()
	if to <= lim {
		return
	}
	upto := min(c.end, max(to, lim+scratchClearStep))
	if upto >= c.zeroFrom {
		upto = c.end
	}
	if dirty := min(upto, c.zeroFrom); dirty > lim {
		clear(unsafe.Slice((*byte)(unsafe.Add(s.base, lim)), dirty-lim))
	}
	s.lim.Store(upto)
}

// note records what the ended use of the current chunk c left in it: the
// bytes up to off, and anything of an earlier request not yet cleared.
func (s *Scratch) note(c *scratchChunk) {
	c.use = s.off
	if s.lim.Load() >= c.zeroFrom {
		c.zeroFrom = s.off
	}
}

// newChunk takes a new chunk from the region for a request of up to need
// bytes: twice the last chunk, at least the first size and need, at most
// chunkMax.
func (s *Scratch) newChunk(need uintptr) error {
	size := uintptr(scratchFirstChunk)
	if k := len(s.chunks); k > 0 {
		size = 2 * (s.chunks[k-1].end - s.chunks[k-1].start)
	}
	size = min(max(size, alignUp(need, s.page)), s.chunkMax)
	run, zero, err := s.takeRun(size/s.page, 0)
	if err != nil {
		return fmt.Errorf("alloc: a %d-byte chunk for a scratch arena: %w", size, err)
	}
	start := run.Start() - s.a.region.Base()
	c := scratchChunk{run: run, start: start, end: start + size, zeroFrom: start}
	if !zero {
		c.zeroFrom = c.end // free pages reused: cleared as they are reached
	}
	s.chunks = append(s.chunks, c)
	return nil
}

// bigRun serves a request beyond a chunk, or aligned beyond a page, with
// a run of its own, released by the next Reset or Free.
func (s *Scratch) bigRun(n, align uintptr) (unsafe.Pointer, error) {
	size := alignUp(n, s.page)
	run, zero, err := s.takeRun(size/s.page, align)
	if err != nil {
		return nil, fmt.Errorf("alloc: %d bytes for a scratch arena: %w", n, err)
	}
	p := s.a.region.Ptr(run.Start())
	if !zero {
		clear(unsafe.Slice((*byte)(p), n))
	}
	s.big = append(s.big, run)
	return p, nil
}

// takeRun takes a run of pages from the region. In Debug, a refusal for
// want of memory first empties the quarantine of freed runs.
func (s *Scratch) takeRun(pages, align uintptr) (*arena.Run, bool, error) {
	run, zero, err := s.a.region.Alloc(pages, align, arena.KindScratch, 0)
	if err != nil && errors.Is(err, errs.ErrNoMemory) && s.a.debug && s.a.flushScratchQuarantine() > 0 {
		run, zero, err = s.a.region.Alloc(pages, align, arena.KindScratch, 0)
	}
	return run, zero, err
}

// Alloc returns n zeroed bytes of the Scratch, len == cap == n, 16-byte
// aligned. They live until the Scratch's next Reset or Free; never Free
// them with the Allocator (ErrInvalidFree). Alloc(0) returns a non-nil
// empty slice.
func (s *Scratch) Alloc(n int) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("%w: %d", ErrInvalidSize, n)
	}
	p, err := s.bump(uintptr(n), 16)
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*byte)(p), n), nil
}

// AlignedAlloc is Alloc with the start a multiple of align, a power of two
// (beyond a page, the request gets a run of its own).
func (s *Scratch) AlignedAlloc(align, n int) ([]byte, error) {
	if align <= 0 || align&(align-1) != 0 {
		return nil, fmt.Errorf("%w: alignment %d is not a power of two", ErrInvalidSize, align)
	}
	if n < 0 {
		return nil, fmt.Errorf("%w: %d", ErrInvalidSize, n)
	}
	var p unsafe.Pointer
	var err error
	if uintptr(align) > s.page {
		// a run of its own (bigRun): the chunks' offsets are aligned from
		// the region's base, which is only page-aligned
		p, err = s.slow(uintptr(n), uintptr(align))
	} else {
		p, err = s.bump(uintptr(n), uintptr(align))
	}
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*byte)(p), n), nil
}

// typeID identifies T by the type word of an interface holding a *T: one
// word, cheaper to compare than a reflect.Type.
func typeID[T any]() uintptr {
	var e any = (*T)(nil)
	return (*[2]uintptr)(unsafe.Pointer(&e))[0]
}

// admit checks that T holds no Go pointers, remembering the last type
// admitted so that a run of objects of one type checks once.
func admit[T any](s *Scratch) error {
	if err := checkType[T](); err != nil {
		return err
	}
	s.okType = typeID[T]()
	return nil
}

// ScratchNew returns a zeroed T from s. T must hold no Go pointers
// (ErrPointerType). The object lives until s's next Reset or Free.
func ScratchNew[T any](s *Scratch) (*T, error) {
	var zero T
	if p := s.fast(unsafe.Sizeof(zero), unsafe.Alignof(zero), typeID[T]()); p != nil {
		return (*T)(p), nil
	}
	return scratchNewSlow[T](s)
}

// scratchNewSlow is ScratchNew past the fast path: T checked if it is not
// the type last admitted, then the slow path.
func scratchNewSlow[T any](s *Scratch) (*T, error) {
	if s.okType != typeID[T]() {
		if err := admit[T](s); err != nil {
			return nil, err
		}
	}
	var zero T
	p, err := s.bump(unsafe.Sizeof(zero), unsafe.Alignof(zero))
	return (*T)(p), err
}

// ScratchSlice returns a zeroed []T of length n and capacity c from s. T
// must hold no Go pointers (ErrPointerType). The slice lives until s's
// next Reset or Free; appending past c copies it to the Go heap, as for
// any slice.
func ScratchSlice[T any](s *Scratch, n, c int) ([]T, error) {
	if s.okType != typeID[T]() {
		if err := admit[T](s); err != nil {
			return nil, err
		}
	}
	if n < 0 || c < n {
		return nil, fmt.Errorf("%w: length %d, capacity %d", ErrInvalidSize, n, c)
	}
	var zero T
	size := unsafe.Sizeof(zero)
	if size > 0 && uintptr(c) > uintptr(maxInt)/size {
		return nil, fmt.Errorf("%w: %d elements of %d bytes", ErrOutOfMemory, c, size)
	}
	p, err := s.bump(uintptr(c)*size, unsafe.Alignof(zero))
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*T)(p), c)[:n], nil
}

// Reset frees every object of s at once and keeps pages for the next
// request: the chunks the ended request used (at most the chunk set of
// its high-water mark; chunks it did not reach are released, and so is
// every run of a big request). Kept chunks are cleared as the next
// request reaches them. In Debug nothing is kept: every page is made
// PROT_NONE and quarantined, so a pointer kept past Reset faults.
func (s *Scratch) Reset() error {
	if err := s.usable(); err != nil {
		return err
	}
	if !s.a.enter() {
		return ErrClosed
	}
	defer s.a.leave(nil)
	keep := len(s.chunks) // nothing allocated since the last Reset: keep what was kept
	if s.cur >= 0 {
		s.note(&s.chunks[s.cur])
		keep = s.cur + 1
	}
	if s.a.debug {
		keep = 0
	}
	runs := s.runsFrom(keep)
	clear(s.chunks[keep:])
	s.chunks = s.chunks[:keep]
	clear(s.big)
	s.big = s.big[:0]
	s.cur, s.off = -1, 0
	s.lim.Store(0)
	err := s.a.releaseScratch(runs)
	clear(runs)
	s.runs = runs[:0]
	return err
}

// Free gives every page of s back to the region in one call: every
// object of s is freed, and s serves nothing more (ErrScratchFreed). The
// pages go back to the kernel with the region's purge, after its delay
// (see arena.Region.FreeRuns), not in this call. After the Allocator's
// Close it returns ErrClosed (Close took everything).
func (s *Scratch) Free() error {
	if err := s.usable(); err != nil && !errors.Is(err, ErrClosed) {
		return err
	}
	runs := s.runsFrom(0)
	s.off, s.okType, s.base, s.cur, s.freed = 0, 0, nil, -1, true
	s.lim.Store(0)
	s.chunks, s.big, s.runs = nil, nil, nil
	s.a.scratches.remove(s)
	if !s.a.enter() {
		return ErrClosed
	}
	defer s.a.leave(nil)
	return s.a.releaseScratch(runs)
}

// runsFrom returns, in s.runs' space, the runs of the chunks from index
// keep on and of the big requests: what Reset or Free gives back.
func (s *Scratch) runsFrom(keep int) []*arena.Run {
	runs := s.runs[:0]
	for _, c := range s.chunks[keep:] {
		runs = append(runs, c.run)
	}
	return append(runs, s.big...)
}

// bigBytes returns the bytes of the runs of s's big requests.
func (s *Scratch) bigBytes() uintptr {
	var n uintptr
	for _, run := range s.big {
		n += run.Pages() * s.page
	}
	return n
}

// Held returns the bytes of pages s holds: its chunks and the runs of its
// big requests.
func (s *Scratch) Held() int {
	n := s.bigBytes()
	for _, c := range s.chunks {
		n += c.end - c.start
	}
	return int(n)
}

// scratchSet is the Scratches of an Allocator not yet freed, so that
// Close can shut their fast paths (a Scratch's fast path reads no state
// of the Allocator's). Guarded by mu.
type scratchSet struct {
	mu     sync.Mutex
	m      map[*Scratch]struct{}
	closed bool
}

func (ss *scratchSet) add(s *Scratch) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return // lim stays 0: every call takes the slow path and gets ErrClosed
	}
	if ss.m == nil {
		ss.m = map[*Scratch]struct{}{}
	}
	ss.m[s] = struct{}{}
}

func (ss *scratchSet) remove(s *Scratch) {
	ss.mu.Lock()
	delete(ss.m, s)
	ss.mu.Unlock()
}

// close shuts every Scratch's fast path: once it returns, an allocation
// from any Scratch takes the slow path and gets ErrClosed. Close calls it
// once no call is inside the gate, so no slow path can open a chunk again.
func (ss *scratchSet) close() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.closed = true
	for s := range ss.m {
		s.lim.Store(0)
	}
	ss.m = nil
}

// Used returns the bytes s has handed out since it was made or last
// reset, alignment padding included (what its chunks are used up to, and
// its big requests' runs).
func (s *Scratch) Used() int {
	n := s.bigBytes()
	for i, c := range s.chunks {
		switch {
		case i < s.cur:
			n += c.use - c.start
		case i == s.cur:
			n += s.off - c.start
		}
	}
	return int(n)
}

// releaseScratch gives a Scratch's runs back to the region (Debug: to the
// quarantine first). Inside the gate.
func (a *Allocator) releaseScratch(runs []*arena.Run) error {
	if len(runs) == 0 {
		return nil
	}
	if a.debug {
		runs = a.quarantineScratch(runs)
	}
	if err := a.region.FreeRuns(runs); err != nil {
		return fmt.Errorf("alloc: scratch arena's runs: %w", err)
	}
	return nil
}

// scratchQuarantine holds Debug's freed Scratch runs, PROT_NONE, oldest
// first. Guarded by mu.
type scratchQuarantine struct {
	runs []*arena.Run
}

// quarantineScratch makes runs PROT_NONE (their pages released) and keeps
// them out of use; it returns the runs to give back to the region now:
// those the quarantine pushed out (made readable again first), and any
// that could not be protected.
func (a *Allocator) quarantineScratch(runs []*arena.Run) []*arena.Run {
	var out []*arena.Run
	kept := make([]*arena.Run, 0, len(runs))
	for _, run := range runs {
		p, n := a.region.Ptr(run.Start()), run.Pages()*a.page
		if a.os.Mprotect(p, n, unix.PROT_NONE) != nil {
			out = append(out, run) // vm.max_map_count: give it back as it is
			continue
		}
		_ = a.os.ReleaseProtNone(p, n) // thrift only: resident until it leaves if refused
		kept = append(kept, run)
	}
	d := a.debugState
	d.mu.Lock()
	d.scratch.runs = append(d.scratch.runs, kept...)
	for len(d.scratch.runs) > scratchQuarantineLen {
		old := d.scratch.runs[0]
		if a.unprotect(old) != nil {
			break // try again next time
		}
		out = append(out, old)
		d.scratch.runs[0] = nil
		d.scratch.runs = d.scratch.runs[1:]
	}
	d.mu.Unlock()
	return out
}

// unprotect makes a quarantined run readable and writable again, as the
// region's pages below the break must be.
func (a *Allocator) unprotect(run *arena.Run) error {
	return a.os.Mprotect(a.region.Ptr(run.Start()), run.Pages()*a.page, unix.PROT_READ|unix.PROT_WRITE)
}

// flushScratchQuarantine gives every run of Debug's quarantine back to
// the region and returns their bytes (Trim; and a Scratch refused memory).
// Inside the gate.
func (a *Allocator) flushScratchQuarantine() uintptr {
	d := a.debugState
	if d == nil {
		return 0
	}
	d.mu.Lock()
	var out, kept []*arena.Run
	var n uintptr
	for _, run := range d.scratch.runs {
		if a.unprotect(run) != nil {
			kept = append(kept, run)
			continue
		}
		out = append(out, run)
		n += run.Pages() * a.page
	}
	d.scratch.runs = kept
	d.mu.Unlock()
	if a.region.FreeRuns(out) != nil {
		return 0
	}
	return n
}
