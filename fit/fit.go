// Package fit is the region's best-fit heap: the home of mid-size blocks
// (above 1 KiB and up to slab.MaxSize), kept the way glibc keeps its heap,
// and of the first blocks of every smaller size class (package alloc's
// cold classes).
//
// Size classes round a request up to the next class and keep the free
// blocks of one class apart from every other's: above 1 KiB, where the
// classes are an eighth of an octave apart, that costs about 6% in
// rounding, and a block freed in one class is no use to a request of
// another until its whole slab is empty; and a class a program asks only
// a few blocks of holds a slab of its own for them. Replaying real
// programs' traces, those were most of the memory this allocator held
// beyond glibc's. So above 1 KiB a request gets a chunk of exactly its size
// rounded to 16 bytes (below, a class in steady use keeps its slabs, whose
// P caches are the fastest path there is), a class's first blocks get a
// chunk of the class's size, and free chunks merge with their free
// neighbours at once, so free space is one pool for every size — glibc's
// chunks:
//
//	chunk c:  [c, c+8)    the size of the chunk before, when that one is free
//	          [c+8, c+16) the header: size | in use | previous in use | slack
//	          [c+16, …)   the block handed out (p = c+16), up to c+size+8:
//	                      the next chunk's first word is the block's last 8 bytes
//
// A free chunk keeps its bin links at c+16 and c+24 and its size again in
// the next chunk's first word (the boundary tag), so freeing finds both
// neighbours in constant time and merges with those that are free. Free
// chunks below 64 KiB sit in an exact bin per 16 bytes found through a
// two-level bitmap; larger ones in one bin sorted by size then address,
// an array in the Go heap searched by halves (bigChunk); the last free
// chunk of the last run made, glibc's top chunk, in none (Heap.wild): a
// block carved off it or merged into it touches no bin, and the search
// weighs it against the bins' best fit.
// Allocation takes the smallest free chunk that fits (best fit), splits
// off the rest, and only when none fits grows the heap: the last run in
// place when the break or a free run follows it, else a new run of the
// region (KindFit). A run whose chunks are all free goes back to the
// region, except one, kept for the next request (the lowest such run).
// In front of the bins, fast bins (fast.go) hold freed chunks unmerged, a
// bin per exact size, for the next request of that size: glibc's
// fastbins, bounded, and emptied into the heap before it grows. In front
// of the lock, each P has a front (front.go): glibc's tcache, per P, the
// same exact sizes, freed into and taken back without the lock, validated
// against a record of the blocks in use kept with atomic instructions.
//
// What glibc trusts to the header alone, this heap checks against a
// bitmap outside the heap, one bit per 16 bytes of a run, set for each
// chunk in use: a pointer that is not the start of a block in use is
// refused before anything is read from it, whatever the bytes before it
// hold, so a bad free never changes anything. The header's slack (usable
// minus requested bytes) gives the requested size back, so the live bytes
// and the breakdown of a Snapshot stay exact.
package fit

import (
	"fmt"
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/lock"
	"github.com/brkmap/alloc/internal/percpu"
	"github.com/brkmap/alloc/slab"
)

const (
	// minAlloc is the smallest chunk a fast bin or a front holds: a held
	// chunk's mark sets the bits of the two granules after its own
	// (fast.go), and a clear bit must part it from the next chunk's, so a
	// chunk that may be held is 4 granules at least. A smaller block gets
	// a chunk of 32 or 48 bytes (minChunk, glibc's smallest), which is
	// never held: freed, it merges at once. (With every chunk 64 bytes at
	// least, a cold class's blocks of 16 bytes took 64 each: amptjp-bal's
	// peak resident 2,048,000 B against 2,043,904 now, diff's 15,572,992
	// against 15,568,896, binary2-bal's 245,760 against 241,664.)
	minAlloc = 64

	granule   = 16
	minChunk  = 32 // a header, two links and a boundary tag
	overhead  = 8  // a block in use costs its header word
	fenceSize = 16 // the in-use chunk that ends every run

	flagPrevInUse = 1
	flagInUse     = 2
	flagReleased  = 4 // a free chunk whose inside pages were given back (the purge, Trim, Idle)
	flagAged      = 8 // a free chunk the purge has seen dirty once: released at its next pass
	flagSampled   = 8 // a chunk in use whose block the heap profile sampled (AllocFast, AllocSampled): freed through the lock, never a front
	sizeMask      = (uint64(1)<<slackShift - 1) &^ (granule - 1)
	slackShift    = 36

	numExact   = 4096 // exact bins for chunks below 64 KiB: chunk size / 16
	exactLimit = numExact * granule

	// runBytes is a new run, and growStep the least a run grows by in
	// place (under the region's cap, less: growth): address space, of
	// which only the pages a block reaches become resident. Fewer,
	// larger runs leave fewer free ends a chunk
	// cannot span (random-bal: 15.15 MiB at 256 KiB, 15.04 at 1 MiB,
	// 15.01 at 2 MiB). The service workload's heap holds 2 MiB at its
	// peak either as two 1 MiB runs or as one 2 MiB run, the same
	// committed bytes and free chunks: 8.67 MB resident with two runs,
	// 7.69 MB with one (4 MiB runs: 7.71).
	runBytes = 2 << 20
	growStep = runBytes / 4

	// purgeMin is the smallest free chunk the purge's timer releases the
	// inside of: below it the pages inside are few, and the next request
	// that lands there would fault them back in.
	purgeMin = 64 << 10
)

// The purge's pass walks the sorted bin only: purgeMin is no smaller than
// the chunks it holds.
const _ = uint(purgeMin - exactLimit)

// run is a run of the region given to the heap: the page map points at it.
type run struct {
	arena.Run
	start, end uintptr  // the chunks tile [start, end-fenceSize); the fence is the rest
	live       []uint64 // bit g: the block at start+16+16g is in use
	sided      bool     // live is a window of the heap's side (growBits)
	gone       bool     // given back to the region (the page map may still point here)
	// fence is the last 16 bytes of the run as the heap sees them: the
	// boundary tag of a free last chunk, and the fence's header (in use,
	// so nothing merges past the end). They are kept here rather than
	// in the run, so that a run's last page is touched only by a block
	// that reaches it: a run grows well ahead of its use.
	fence [2]uint64
	// topSeen: the purge's last pass found the run's last free chunk
	// past the trim threshold (Options.TrimLater)
	topSeen bool
	// clean: every page from here to the end of the run is known not
	// resident (never touched, or given back), and lies inside the run's
	// last free chunk. It rises as blocks and the heap's own words reach
	// further (touch), and falls when the tail is trimmed or released.
	clean uintptr
	// fl is the record of the blocks in use a front may take (front.go),
	// in segments made as blocks are handed out, never moved or freed
	fl [flSegs]atomic.Pointer[flSeg]
}

func runOf(r *arena.Run) *run { return (*run)(unsafe.Pointer(r)) }

// touch notes that the heap wrote, or handed out, memory up to hi.
func (r *run) touch(hi, page uintptr) {
	if hi > r.clean {
		r.clean = alignUp(hi, page)
	}
}

func (r *run) bit(p uintptr) (word int, mask uint64) {
	g := (p - r.start - 2*overhead) / granule
	return int(g / 64), 1 << (g % 64)
}

// Options sets up a Heap.
type Options struct {
	// Purge turns on the timed release of the pages inside free chunks
	// of at least 64 KiB: a chunk still free and unchanged between
	// PurgeDelay and twice that after it was made goes back to the
	// kernel (PurgeDelay 0: at once, as it is freed). Close stops it.
	Purge      bool
	PurgeDelay time.Duration
	// TrimThreshold and TopPad are glibc's M_TRIM_THRESHOLD and
	// M_TOP_PAD for each run's last free chunk, its top: when a free
	// leaves that chunk TrimThreshold bytes or more, the touched pages
	// past its first TopPad bytes go back to the kernel at once. 0 means
	// never (SetTrimThreshold changes it). With TrimLater (and the purge
	// waiting: Purge, PurgeDelay > 0) such a free arms the purge's timer
	// instead, whose pass trims the top, TopPad kept, once it found it
	// past the threshold at two passes in a row (busy at its low end or
	// not: the release of an unchanged chunk would never see one that is).
	TrimThreshold uintptr
	TopPad        uintptr
	TrimLater     bool
	// OnFree, if set, is called with the address of each block freed
	// that the heap profile sampled (ProfileRate), once it is known to be
	// a block in use and before it can be handed out again (the heap
	// profile's hook): once any block is sampled, calling it for every
	// free took 10% of random-bal's replay (its mutex and map lookup).
	OnFree func(addr uintptr)
	// everyFree (tests) calls OnFree, which it needs, for every block
	// freed: a hook at the point where a free may be preempted.
	everyFree bool
	// OnCorruption is told of a damaged header or boundary tag (a write
	// past the end of a block) or damaged bin links (a write after free).
	// Nothing damaged is used again: a block whose header, or the chunk
	// after it, is damaged is left alone, in use (its Free fails); a
	// damaged free chunk is taken out of its bin, still counted free (if
	// its own links are damaged, with the chunks after it in the bin:
	// those links are not followed); a block is not merged with a
	// damaged chunk before it. Each damage is reported once.
	OnCorruption func(addr, size uintptr, detail string)
	// Moves, if set, is locked around each pass of the purge's timer,
	// before the heap's lock: the pass's consolidation may give an
	// emptied run back to the region, and an owner that reads the heap's
	// counters and then the region's holds Moves meanwhile (as a
	// reader), so that it never sees the run in both or in neither. Nothing a
	// caller of the heap calls takes it.
	Moves sync.Locker
	// ProfileRate is the heap profile's rate (the mean bytes between two
	// sampled blocks; 0: none): each front counts down on its own, as a
	// P's slab cache does, so that no counter is shared between Ps, and
	// the heap counts down under its lock (AllocFast and AllocSampled say
	// which block is the sample).
	ProfileRate int64
	// NoFronts leaves out the per-P fronts (front.go): every block goes
	// through the heap's lock. (PurgeDelay 0 leaves them out too: freed
	// memory is to be released at once.)
	NoFronts bool
}

// Heap is the best-fit heap. All methods are safe for concurrent use.
type Heap struct {
	mu     lock.Mutex
	region *arena.Region
	page   uintptr
	// base and lo are the region's mapping and its address (Ptr's), fixed
	// for its life: word reads them from the heap, not through region
	base unsafe.Pointer
	lo   uintptr
	opts Options

	exact   [numExact]uintptr // heads of the exact bins (chunk addresses; 0: empty)
	bitmap  [numExact / 64]uint64
	summary uint64     // bit w: bitmap[w] != 0
	big     []bigChunk // the chunks of exactLimit bytes and more, sorted (bigChunk)
	// wild is the top run's last free chunk (0: none), glibc's top chunk:
	// kept out of the bins, so that carving a block off it, and merging a
	// freed one into it, touch no bin (find weighs it against the bins'
	// best fit, so the fit stays the best). Its links name itself, as a
	// sorted bin's chunk's; wildS is its size and wildRel its released
	// flag, as a bigChunk's.
	wild, wildS uintptr
	wildRel     bool
	// wildPrev is the chunk before wild (in use or held: free chunks are
	// never neighbours) when the heap knows it — wild was carved off last
	// — else 0: a Free of that block then knows its header's size is its
	// own without looking through the bitmap for a chunk in use inside it
	// (check's liveWithin). The chunk before wild changes only when wild
	// does, each of whose writes sets this too.
	wildPrev uintptr
	// deferred says the lock's holder unlocks it in a defer (lockDeferred):
	// a panic in a hook (OnFree, OnCorruption) under the lock of one that
	// unlocks at each return instead (Free, AllocSampled) unlocks it on its
	// way up (hookDone), so that a caller that recovers does not find the
	// heap locked for ever.
	deferred bool
	// relExact holds the chunks of the exact bins whose inside is
	// released (Trim), as the sorted bin's entries keep theirs: a write
	// after free can set or clear the header's flag, and the released
	// bytes counted follow this, not the flag. Empty but after a Trim,
	// until those chunks are taken or merged.
	relExact map[uintptr]bool

	// the fast bins (fast.go): their chunks, counts, and the bytes they
	// hold (also counted in freeBytes), bounded by fastCap
	fast      [numFast][fastCount]heldChunk
	fastN     [numFast]uint8
	fastBytes uintptr
	fastCap   uintptr
	mergeHeld bool // a free merged into a chunk of purgeMin bytes or more: consolidate (settle)

	// the fronts (front.go): one per P (GOMAXPROCS at New), made on the
	// slow paths; closed once Close has drained them; no slots: no fronts
	fronts       []atomic.Pointer[front]
	frontsClosed atomic.Bool
	frontMade    atomic.Bool                    // a front was made once: a free that merges 64 KiB has one to drain (release)
	frontSeen    uint64                         // the fronts' operations at the last purge's pass
	frontBuf     [numFast * frontCount]ownEntry // drainOwn's, under mu
	ownDraining  bool                           // drainOwn is freeing frontBuf's chunks: a drain within them (settle) leaves the front

	top      *run              // the last run made: the one grown in place
	spare    *run              // an empty run kept for the next request, or nil
	liveRuns map[*run]struct{} // every run the heap holds

	// counters, under mu
	liveChunks uintptr
	// inUse counts the chunks in use of each size up to the chunk of a
	// block of CountTo bytes (countIndex), those the fronts hold among
	// them: written under mu, read by InUse without it
	inUse      [numCounted]atomic.Int32
	liveBytes  uintptr // requested
	chunkBytes uintptr // sum of the sizes of chunks in use
	freeBytes  uintptr // sum of the sizes of free chunks
	metaBytes  uintptr // the runs' bitmaps and records (front.go)
	ops        uint64  // allocations, frees and resizes so far
	idleSeen   uint64  // ops at the last Idle
	purgeSeen  uint64  // ops at the last purge's pass
	released   uintptr // of freeBytes, the pages given back inside free chunks
	purgeAt    bool    // the purge's timer is armed
	timer      *time.Timer
	closed     bool
	sample     int64                  // bytes until the next block Alloc hands out is sampled (ProfileRate)
	gaveBack   uintptr                // bytes the region gave back to the kernel as it took runs (giveBack), so far
	trim       uintptr                // Options.TrimThreshold, as SetTrimThreshold leaves it
	reported   map[[2]uint64]struct{} // damage reported already: chunk, header
}

// New makes a heap over region.
func New(region *arena.Region, opts Options) *Heap {
	h := &Heap{region: region, page: region.PageSize(), opts: opts, liveRuns: map[*run]struct{}{},
		trim: opts.TrimThreshold, fastCap: fastCap, sample: slab.NextSample(opts.ProfileRate)}
	h.lo = region.Base()
	h.base = region.Ptr(h.lo)
	if opts.Purge && opts.PurgeDelay <= 0 {
		h.fastCap = 0 // freed memory is to be released at once: nothing is held back unmerged
	}
	if h.fastCap != 0 && !opts.NoFronts {
		h.fronts = make([]atomic.Pointer[front], runtime.GOMAXPROCS(0))
	}
	return h
}

// Errors the heap returns, wrapped: the allocator's.
var (
	errInvalid = errs.ErrInvalidFree
	errDouble  = errs.ErrDoubleFree
)

// chunkSize returns the chunk that holds a block of n bytes.
func chunkSize(n uintptr) uintptr { return max((n+overhead+granule-1)&^(granule-1), minChunk) }

// BlockSize returns the usable size of the block a request of n bytes
// gets: its chunk less the header.
func BlockSize(n uintptr) uintptr { return chunkSize(n) - overhead }

// ChunkSize returns the chunk a block of n bytes takes, its header with
// it: the sizes InUse counts.
func ChunkSize(n uintptr) uintptr { return chunkSize(n) }

// ptr is region.Ptr(addr), from the heap's copy of the region's mapping.
func (h *Heap) ptr(addr uintptr) unsafe.Pointer { return unsafe.Add(h.base, addr-h.lo) }

func (h *Heap) word(addr uintptr) *uint64 { return (*uint64)(h.ptr(addr)) }

// header returns the header of chunk c, which is not a fence.
func (h *Heap) header(c uintptr) uint64 { return *h.word(c + 8) }
func sizeOf(hd uint64) uintptr          { return uintptr(hd & sizeMask) }

// slot returns the heap's word at addr in run r: the fence's words are r's.
func (h *Heap) slot(r *run, addr uintptr) *uint64 {
	if f := r.end - fenceSize; addr >= f {
		return &r.fence[(addr-f)/8]
	}
	return h.word(addr)
}

// headerIn and setHeader read and write the header of chunk c of run r,
// which may be its fence.
func (h *Heap) headerIn(r *run, c uintptr) uint64     { return *h.slot(r, c+8) }
func (h *Heap) setHeader(r *run, c uintptr, v uint64) { *h.slot(r, c+8) = v }

// setFree writes c's header and boundary tag as a free chunk of size s
// whose previous chunk is in use (two free chunks are never neighbours).
func (h *Heap) setFree(r *run, c, s uintptr) {
	r.touch(c+minChunk, h.page) // the header, and the links insert writes
	h.setHeader(r, c, uint64(s)|flagPrevInUse)
	*h.slot(r, c+s) = uint64(s)
}

func (h *Heap) fd(c uintptr) *uint64 { return h.word(c + 16) }
func (h *Heap) bk(c uintptr) *uint64 { return h.word(c + 24) }

// insert puts free chunk c of size s in its bin.
func (h *Heap) insert(c, s uintptr) {
	h.freeBytes += s
	if t := h.top; t != nil && c+s == t.end-fenceSize {
		// the top run's last: out of the bins (a chunk of another run
		// cannot end inside this one)
		*h.fd(c), *h.bk(c) = uint64(c), uint64(c)
		h.wild, h.wildS, h.wildRel, h.wildPrev = c, s, false, 0
		return
	}
	h.bin(c, s)
}

// bin puts free chunk c of size s in its bin (counted free already).
func (h *Heap) bin(c, s uintptr) {
	if s < exactLimit {
		i := s / granule
		head := h.exact[i]
		*h.fd(c), *h.bk(c) = uint64(head), 0
		if head != 0 {
			*h.bk(head) = uint64(c)
		}
		h.exact[i] = c
		h.bitmap[i/64] |= 1 << (i % 64)
		h.summary |= 1 << (i / 64)
		return
	}
	i, _ := h.bigAt(c, s)
	if was := cap(h.big); len(h.big) == was {
		h.big = slices.Grow(h.big, 1)
		h.metaBytes += uintptr(cap(h.big)-was) * unsafe.Sizeof(bigChunk{})
	}
	*h.fd(c), *h.bk(c) = uint64(c), uint64(c) // no links: itself, so that a write after free shows (freeIn)
	h.big = h.big[:len(h.big)+1]
	if i < len(h.big)-1 {
		copy(h.big[i+1:], h.big[i:])
	}
	h.big[i] = bigChunk{s: s, c: c}
}

// bigChunk is a chunk of the sorted bin: its size and place, and whether
// its inside is released (releaseChunk), kept here as well as in its
// header: the header's flag a write after free can set or clear, and the
// released bytes counted (remove takes them off) follow this one.
type bigChunk struct {
	s, c     uintptr
	released bool
}

// The sorted bin, of the free chunks of exactLimit bytes and more (a run's
// free end among them), is a slice in the Go heap, sorted by size, then
// address, so that the first that fits is the best fit, found by binary
// search. It was a list linked through the chunks, as the exact bins are:
// a chunk merged into a run's end, the largest, walked all of it to its
// place, checking each chunk on the way (random-bal: ten a free, 1,093
// such inserts in 4,800 operations; 1.8 ms a replay of the trace with
// nothing given back, against glibc's 0.85, 1.2 without the checks). The
// slice is the heap's own: a write into a chunk's memory changes no bin.
// freeIn finds a chunk in it, and finds in the chunk's link words its own
// address (insert writes them so), so that a write after free there is
// reported as the exact bins' links would report it.

// bigAt returns where chunk c of s bytes is, or would go, in the sorted
// bin, and whether it is there.
func (h *Heap) bigAt(c, s uintptr) (int, bool) {
	lo, hi := 0, len(h.big)
	if hi == 0 {
		return 0, false
	}
	// the last first: often a run's free end, the largest
	if e := h.big[hi-1]; e.s < s || e.s == s && e.c < c {
		return hi, false
	} else if e.s == s && e.c == c {
		return hi - 1, true
	}
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if e := h.big[m]; e.s < s || e.s == s && e.c < c {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, h.big[lo].s == s && h.big[lo].c == c // lo < len: the last is past c
}

// unbig takes entry i out of the sorted bin. An emptied bin keeps its
// array (a run's end taken whole and merged back, over and over, would
// make one each time) until the heap holds no run: giveBack.
func (h *Heap) unbig(i int) {
	if i < len(h.big)-1 {
		copy(h.big[i:], h.big[i+1:])
	}
	h.big = h.big[:len(h.big)-1]
}

// remove takes free chunk c of size s out of its bin.
func (h *Heap) remove(c, s uintptr) {
	if c == h.wild && !h.wildRel { // (inlined: the top's, merged into or carved off over and over)
		h.freeBytes -= s
		h.wild = 0
		return
	}
	h.unbin(c, s)
}

// unbin is remove of a chunk of a bin, or of a released top's.
func (h *Heap) unbin(c, s uintptr) {
	h.freeBytes -= s
	if c == h.wild {
		h.released -= h.inside(c, s) // (released: remove takes the others)
		h.wild = 0
		return
	}
	if s >= exactLimit {
		if i, ok := h.bigAt(c, s); ok { // the caller found it free: it is there
			if h.big[i].released {
				h.released -= h.inside(c, s)
			}
			h.unbig(i)
		}
		return
	}
	if h.relExact != nil && h.relExact[c] { // (freeIn found the header's flag agree; nil but after a Trim: no map look-up)
		h.released -= h.inside(c, s)
		delete(h.relExact, c)
	}
	next, prev := uintptr(*h.fd(c)), uintptr(*h.bk(c))
	if next != 0 {
		*h.bk(next) = uint64(prev)
	}
	if prev != 0 {
		*h.fd(prev) = uint64(next)
		return
	}
	i := s / granule
	h.exact[i] = next
	if next == 0 {
		h.bitmap[i/64] &^= 1 << (i % 64)
		if h.bitmap[i/64] == 0 {
			h.summary &^= 1 << (i / 64)
		}
	}
}

// find returns the smallest free chunk of at least s bytes and its run, or
// 0. A damaged chunk on the way is reported and dropped from its bin with
// the rest of the bin (their links are not followed), and the search goes
// on.
func (h *Heap) find(s uintptr) (uintptr, *run) {
	var c, cs uintptr
	var r *run
	if h.summary != 0 || len(h.big) != 0 { // no bin holds a chunk: the top's is the only one
		c, cs, r = h.binFit(s)
	}
	if w := h.wild; w != 0 && h.wildS >= s && (c == 0 || h.wildS < cs || h.wildS == cs && cs >= exactLimit && w < c) {
		// the top run's last free chunk fits better (in the sorted bin's
		// order; of two of one size below exactLimit, the exact bin's)
		if t := h.wildOK(); t != nil {
			return w, t
		}
		h.dropWild()
	}
	return c, r
}

// wildOK returns the top run if its last free chunk (wild) is sound, as
// bigOK checks a chunk of the sorted bin: what a write into the chunk's
// memory can change (its header, its boundary tag, its link words), else nil.
func (h *Heap) wildOK() *run {
	t, c, s := h.top, h.wild, h.wildS
	want := uint64(s) | flagPrevInUse // its size, free, the chunk before in use, and its released flag
	if h.wildRel {
		want |= flagReleased
	}
	if (h.header(c)^want)&(sizeMask|flagInUse|flagPrevInUse|flagReleased) != 0 || t.fence[0] != uint64(s) || // its boundary tag: the run's (slot)
		(*h.fd(c)^uint64(c))|(*h.bk(c)^uint64(c)) != 0 {
		return nil
	}
	return t
}

// dropWild reports the top run's last free chunk, found damaged, and
// forgets it: lost, still counted free, as a damaged chunk of a bin.
func (h *Heap) dropWild() {
	h.damaged(h.wild, "the last free chunk of a run")
	h.wild = 0
}

// eachWild calls fn for the top run's last free chunk (there is one), or
// reports and forgets it if it is damaged.
func (h *Heap) eachWild(fn func(c, s uintptr)) {
	if h.wildOK() == nil {
		h.dropWild()
		return
	}
	fn(h.wild, h.wildS)
}

// unwild puts the top run's last free chunk, if any, in its bin, its
// released mark with it: the top run is about to change (extend).
func (h *Heap) unwild() {
	c, s := h.wild, h.wildS
	if c == 0 {
		return
	}
	h.wild = 0
	h.bin(c, s)
	if h.wildRel {
		h.markReleased(c, s)
	}
}

// markReleased records binned free chunk c of s bytes as released inside,
// in its bin: the sorted bin's entry, or relExact for an exact bin's.
func (h *Heap) markReleased(c, s uintptr) {
	if s >= exactLimit {
		if i, ok := h.bigAt(c, s); ok {
			h.big[i].released = true
		}
		return
	}
	if h.relExact == nil {
		h.relExact = map[uintptr]bool{}
	}
	h.relExact[c] = true
}

// binFit returns the smallest free chunk of at least s bytes in the bins,
// its size and its run, or 0.
func (h *Heap) binFit(s uintptr) (uintptr, uintptr, *run) {
	for i := s / granule; i < numExact; {
		w := i / 64
		j := uintptr(numExact)
		if m := h.bitmap[w] & (^uint64(0) << (i % 64)); m != 0 {
			j = w*64 + uintptr(bits.TrailingZeros64(m))
		} else if m := h.summary & (^uint64(0) << (w + 1)); m != 0 {
			w = uintptr(bits.TrailingZeros64(m))
			j = w*64 + uintptr(bits.TrailingZeros64(h.bitmap[w]))
		}
		if j == numExact {
			break
		}
		c := h.exact[j]
		if r := h.freeOK(c, j*granule); r != nil {
			return c, j * granule, r
		}
		h.damaged(c, "a free chunk of an exact bin")
		h.drop(0, c, j*granule)
	}
	i := 0 // every chunk there fits a request below exactLimit
	if s > exactLimit {
		i, _ = h.bigAt(0, s)
	}
	for i < len(h.big) {
		e := h.big[i]
		if r := h.bigOK(e); r != nil {
			return e.c, e.s, r
		}
		h.damaged(e.c, "a free chunk of the sorted bin")
		h.unbig(i) // lost, still counted free
	}
	return 0, 0, nil
}

// emptyBin drops exact bin j (a damaged chunk in it): the chunks it held
// are lost, still counted free.
func (h *Heap) emptyBin(j uintptr) {
	h.exact[j] = 0
	h.bitmap[j/64] &^= 1 << (j % 64)
	if h.bitmap[j/64] == 0 {
		h.summary &^= 1 << (j / 64)
	}
}

// drop takes damaged chunk c, after prev (0: the head) in the exact bin of
// chunks of size s, out of the bin, still
// counted free. If its forward link is sound (the chunk it names, in a run
// of the heap, names c back) the bin is mended around it; otherwise the
// bin is cut before it and the chunks after are lost too.
func (h *Heap) drop(prev, c, s uintptr) {
	r := h.runAt(c)
	fd := uintptr(0)
	if r != nil {
		fd = uintptr(*h.fd(c))
	}
	if r == nil || fd != 0 && (h.runNear(r, fd) == nil || uintptr(*h.bk(fd)) != c) {
		h.cut(prev, s)
		return
	}
	if fd != 0 {
		*h.bk(fd) = uint64(prev)
	}
	switch {
	case prev != 0:
		*h.fd(prev) = uint64(fd)
	case fd != 0:
		h.exact[s/granule] = fd
	default:
		h.emptyBin(s / granule)
	}
}

// cut ends the exact bin of chunks of size s after prev (0: empties it),
// at a damaged chunk: the chunks after are lost, still counted free.
func (h *Heap) cut(prev, s uintptr) {
	if prev != 0 {
		*h.fd(prev) = 0
	} else {
		h.emptyBin(s / granule)
	}
}

// runAt returns the live run of the heap in which c can be a chunk: 16-byte
// aligned, before the run's fence; or nil. Any address may be asked.
func (h *Heap) runAt(c uintptr) *run {
	if !h.region.Contains(c) {
		return nil
	}
	ar := h.region.Lookup(c)
	if ar == nil || ar.Kind() != arena.KindFit {
		return nil
	}
	r := runOf(ar)
	if r.gone || c < r.start || c+minChunk > r.end-fenceSize || (c-r.start)%granule != 0 {
		return nil
	}
	return r
}

// liveWithin reports whether a chunk in use starts in [lo, hi) of run r
// (lo < hi): one word of the bitmap at a time.
func (h *Heap) liveWithin(r *run, lo, hi uintptr) bool {
	g0, g1 := (lo-r.start)/granule, (hi-r.start)/granule-1 // the first and last bit
	w0, w1 := g0/64, g1/64
	first := ^uint64(0) << (g0 % 64)
	last := ^uint64(0) >> (63 - g1%64)
	if w0 == w1 {
		return r.live[w0]&first&last != 0
	}
	if r.live[w0]&first != 0 || r.live[w1]&last != 0 {
		return true
	}
	for _, m := range r.live[w0+1 : w1] {
		if m != 0 {
			return true
		}
	}
	return false
}

// inUse reports whether chunk c of run r is in use, or held in a fast bin:
// the bitmap says so, whatever its header says (the fence is in use).
func inUse(r *run, c uintptr) bool {
	if c >= r.end-fenceSize {
		return true
	}
	return r.window(c)&3 != 0 // its own bit, or the first of a held mark (the third may be the next chunk's own)
}

// freeOK reports whether c is a free chunk as the heap left it, of s bytes
// (0: any), and returns its run (nil: not one): freeIn, for a c whose run
// is not known yet.
func (h *Heap) freeOK(c, s uintptr) *run {
	if r := h.runAt(c); r != nil && h.freeIn(r, c, s) {
		return r
	}
	return nil
}

// freeIn reports whether c, a chunk's place in run r (runAt's bounds), is
// a free chunk as the heap left it, of s bytes (0: any): not in use in the
// bitmap, its header and boundary tag agree, the chunk after it is in use,
// and its bin holds it: the sorted bin has it, an exact bin's links point
// back at it. Each link's memory is read only once it is known to be
// inside a run of the heap, so a damaged chunk is never followed anywhere.
func (h *Heap) freeIn(r *run, c, s uintptr) bool {
	if c == h.wild {
		// the top's last free chunk: the heap's own record says the rest
		// (the bitmap, the fence after it, its place)
		return (s == 0 || s == h.wildS) && h.wildOK() != nil
	}
	if inUse(r, c) {
		return false
	}
	hd := h.header(c)
	cs := sizeOf(hd)
	if hd&(flagInUse|flagPrevInUse) != flagPrevInUse || cs < minChunk || s != 0 && cs != s || c+cs > r.end-fenceSize ||
		*h.slot(r, c+cs) != uint64(cs) || !inUse(r, c+cs) {
		return false
	}
	if cs >= exactLimit {
		i, ok := h.bigAt(c, cs)
		return ok && h.big[i].released == (hd&flagReleased != 0) && *h.fd(c) == uint64(c) && *h.bk(c) == uint64(c)
	}
	if (hd&flagReleased != 0) != (h.relExact != nil && h.relExact[c]) {
		return false // the released flag written after free, set or cleared
	}
	fd, bk := uintptr(*h.fd(c)), uintptr(*h.bk(c))
	if fd != 0 && (h.runNear(r, fd) == nil || uintptr(*h.bk(fd)) != c) {
		return false
	}
	if bk == 0 {
		return h.exact[cs/granule] == c
	}
	return h.runNear(r, bk) != nil && uintptr(*h.fd(bk)) == c
}

// bigOK is freeOK for entry e of the sorted bin, and returns its run:
// what a write into the chunk's memory can change is checked (its header,
// its released flag against e's among them, its boundary tag, its link
// words), not what only the heap writes (the
// bitmap, the bin itself), which says already that e is a free chunk:
// freeIn's look-ups, a third of the instructions of a Malloc that carves
// a run's end (coalescing-bal), are left out.
func (h *Heap) bigOK(e bigChunk) *run {
	r := h.runAt(e.c)
	if r == nil || e.c+e.s > r.end-fenceSize {
		return nil
	}
	if hd := h.header(e.c); sizeOf(hd) != e.s || hd&(flagInUse|flagPrevInUse) != flagPrevInUse || (hd&flagReleased != 0) != e.released ||
		*h.slot(r, e.c+e.s) != uint64(e.s) || *h.fd(e.c) != uint64(e.c) || *h.bk(e.c) != uint64(e.c) {
		return nil
	}
	return r
}

// runNear is runAt, for a chunk often in run r: then without a look-up.
func (h *Heap) runNear(r *run, c uintptr) *run {
	if c >= r.start && c+minChunk <= r.end-fenceSize && (c-r.start)%granule == 0 {
		return r
	}
	return h.runAt(c)
}

// damaged reports chunk c, found damaged, to OnCorruption.
func (h *Heap) damaged(c uintptr, what string) {
	hd := h.headerOr(c)
	h.report(c, hd, fmt.Sprintf("%s at %#x is damaged (header %#x): a write past the end of the block before it, or after its free; it is not used again", what, c, hd))
}

// report tells OnCorruption of damage at chunk c, whose header reads hd,
// once: the same damage found again (a Free of the block retried, by the
// handler itself too) is not reported again, so a handler that frees the
// block it is told of does not call itself without end.
func (h *Heap) report(c uintptr, hd uint64, detail string) {
	if h.opts.OnCorruption == nil {
		return
	}
	k := [2]uint64{uint64(c), hd}
	if _, ok := h.reported[k]; ok {
		return
	}
	if h.reported == nil {
		h.reported = map[[2]uint64]struct{}{}
	}
	h.reported[k] = struct{}{}
	done := false
	defer h.hookDone(&done)
	h.opts.OnCorruption(c+2*overhead, sizeOf(hd), detail)
	done = true
}

// onFree calls OnFree, the caller's hook, under the heap's lock (a
// defer, for a panic in it: hookDone).
func (h *Heap) onFree(p uintptr) {
	done := false
	defer h.hookDone(&done)
	h.opts.OnFree(p)
	done = true
}

// hookDone is deferred around a call of a hook under the heap's lock: if
// the hook did not return (done false: it panicked, or a runtime error
// did) and the lock's holder unlocks it at each return rather than in a
// defer (Free, AllocSampled: deferred false), the panic would leave the
// heap locked, every later call hanging; it unlocks it. (The defer is on
// the hooks' path only, not on every call of Free and AllocSampled.)
func (h *Heap) hookDone(done *bool) {
	if !*done && !h.deferred {
		h.mu.Unlock()
	}
}

// lockDeferred locks the heap for a caller that unlocks it in a defer
// (unlockDeferred), where a panic under the lock unlocks it.
func (h *Heap) lockDeferred() {
	h.mu.Lock()
	h.deferred = true
}

// unlockDeferred is lockDeferred's unlock.
func (h *Heap) unlockDeferred() {
	h.deferred = false
	h.mu.Unlock()
}

// headerOr returns the header of chunk c if c is in a run of the heap, else 0.
func (h *Heap) headerOr(c uintptr) uint64 {
	if h.runAt(c) == nil {
		return 0
	}
	return h.header(c)
}

// Alloc returns a block of n bytes (any size the region can hold; the
// allocator sends the heap its requests above 1 KiB but a class's exact
// sizes, and those of a small size class it has seen little of yet:
// package alloc's fitFrom and DefaultColdBlocks).
func (h *Heap) Alloc(n uintptr) (unsafe.Pointer, error) {
	p, _, err := h.AllocSampled(n, 0)
	return p, err
}

// AllocSampled is Alloc of a block with room for least bytes at least
// (its usable size; 0: n — a cold class's block keeps room for its
// class's size), and reports whether the block is the heap
// profile's sample (Options.ProfileRate), marked so already (flagSampled:
// its Free goes through the lock, where OnFree is called). The heap counts
// down under its lock, as each front counts down on its own, so that no
// counter outside the lock is shared by the calls. After Close it returns
// ErrClosed itself, unwrapped: a caller may call it outside the allocator's gate, since the
// heap's lock orders it with Close, which takes the lock before the
// region goes.
func (h *Heap) AllocSampled(n, least uintptr) (p unsafe.Pointer, sampled bool, err error) {
	s := chunkSize(max(n, least))
	i := fastIndex(s)
	if i >= 0 {
		h.makeFront() // a front holds no bigger chunk: no P needs one for it
	}
	// unlocked at each return rather than deferred (nothing under the
	// lock panics but a bug; a defer was 13 instructions a call, cachegrind)
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, false, errs.ErrClosed
	}
	h.ops++
	var c uintptr
	var r *run
	if i >= 0 && h.fastN[i] != 0 {
		c, r = h.popFast(s)
	}
	if c != 0 {
		h.handOut(r, c, s, n)
	} else if w := h.wild; w != 0 && h.wildS >= s && h.summary == 0 && len(h.big) == 0 && !h.wildRel && w+s+overhead <= h.top.clean && h.wildOK() != nil {
		// carve's first case, without the call: no bin holds a chunk, and
		// the top's last free chunk fits without reaching a page not
		// touched (or given back)
		c, r = w, h.top
		h.take(r, c, s, n)
	} else if c, r, err = h.carve(s, n); err != nil {
		h.mu.Unlock()
		return nil, false, err
	}
	if h.sample -= int64(n); h.sample < 0 {
		h.sample = slab.NextSample(h.opts.ProfileRate)
		h.orHeader(r, c, flagSampled) // freed through the lock, whose OnFree drops its record
		sampled = true
	}
	h.mu.Unlock()
	return h.ptr(c + 2*overhead), sampled, nil
}

// carve takes a chunk of s bytes for a block of n from the bins or the
// heap's growth, when the fast bins had none.
func (h *Heap) carve(s, n uintptr) (uintptr, *run, error) {
	var c uintptr
	var r *run
	if w := h.wild; w != 0 && h.wildS >= s && h.summary == 0 && len(h.big) == 0 {
		// no bin holds a chunk: the top's is the best fit (find's
		// answer, without the call)
		if r = h.wildOK(); r != nil {
			c = w
		} else {
			h.dropWild()
		}
	} else {
		c, r = h.find(s)
	}
	if c == 0 || c+s+overhead > r.clean || h.header(c)&flagReleased != 0 {
		// what this P's front and the fast bins hold may merge into
		// room: the heap grows, or a block reaches pages never touched
		// or given back, only if not
		if h.drainOwn() || h.fastBytes != 0 {
			h.consolidate()
			c, r = h.find(s)
		}
		if c == 0 {
			// the heap grows only if what every P's front holds does not
			// merge into room either (a goroutine moves between Ps)
			if _, bytes, _, _, _ := h.frontSums(); bytes != 0 {
				h.drainFrontsLocked(nil)
				h.consolidate()
				c, r = h.find(s)
			}
		}
	}
	if c == 0 {
		var err error
		if c, r, err = h.extend(s); err != nil {
			return 0, nil, err
		}
	}
	h.take(r, c, s, n)
	return c, r, nil
}

// take hands out free chunk c of run r for a block of n bytes in a chunk
// of s: out of its bin, the rest split off as a free chunk of its own.
func (h *Heap) take(r *run, c, s, n uintptr) {
	cs := sizeOf(h.header(c))
	if r == h.spare {
		h.spare = nil
	}
	if rest := cs - s; c == h.wild && rest >= minChunk && !h.wildRel {
		// off the top's last free chunk, in place: the rest is the top's
		// (remove's, setFree's and insert's work, without the calls)
		nc := c + s
		r.touch(nc+minChunk, h.page)
		*h.word(nc + 8) = uint64(rest) | flagPrevInUse
		r.fence[0] = uint64(rest) // its boundary tag: the run's (slot)
		*h.fd(nc), *h.bk(nc) = uint64(nc), uint64(nc)
		h.wild, h.wildS, h.wildPrev = nc, rest, c
		h.freeBytes -= s
	} else {
		h.remove(c, cs)
		if rest >= minChunk {
			h.setFree(r, c+s, rest) // the chunk after keeps "previous free"
			h.insert(c+s, rest)
		} else {
			s = cs
			h.orHeader(r, c+s, flagPrevInUse) // the next chunk may be a front's
		}
	}
	h.setHeader(r, c, uint64(s)|flagInUse|flagPrevInUse|uint64(s-overhead-n)<<slackShift)
	r.touch(c+s+overhead, h.page) // the block's last bytes are the next chunk's first word
	w, m := r.bit(c + 2*overhead)
	r.live[w] |= m
	if h.fronted(r, c, s) {
		h.markFront(r, c, s)
	}
	h.liveChunks++
	h.count(s, 1)
	h.liveBytes += n
	h.chunkBytes += s
}

// CountTo is the largest block whose chunks the heap counts by size
// (InUse).
const CountTo = 2 << 10

const numCounted = (CountTo+overhead+granule-1)/granule - minChunk/granule + 1

// countIndex returns the count in inUse of chunks of s bytes, or -1.
func countIndex(s uintptr) int {
	i := s/granule - minChunk/granule
	if i >= numCounted {
		return -1
	}
	return int(i)
}

// count adds d to the chunks in use of s bytes (inUse), under mu.
func (h *Heap) count(s uintptr, d int32) {
	if i := countIndex(s); i >= 0 {
		h.inUse[i].Store(h.inUse[i].Load() + d)
	}
}

// InUse returns how many chunks of lo to hi bytes (chunk sizes: a block
// of n bytes takes ChunkSize(n)) are in use, those the P's fronts hold
// among them; it counts only the chunks up to a CountTo-byte block's
// (which the blocks of up to 8 bytes more share): the allocator's measure
// of how much a medium size class is in use.
// Without the lock: the counts may be a call or two behind.
func (h *Heap) InUse(lo, hi uintptr) int {
	n := int32(0)
	for s := alignUp(lo, granule); s <= hi; s += granule {
		if i := countIndex(s); i >= 0 {
			n += h.inUse[i].Load()
		}
	}
	return int(n)
}

// extend makes room for a chunk of s bytes and returns a free chunk of at
// least s, in its bin, and its run: the top run grown in place, or a new
// run.
func (h *Heap) extend(s uintptr) (uintptr, *run, error) {
	if t := h.top; t != nil {
		// the free chunk before the fence, if any, is part of the room
		fence := t.end - fenceSize
		last := uintptr(0)
		if t.fence[1]&flagPrevInUse == 0 {
			last = uintptr(t.fence[0])
			if last > fence-t.start || last%granule != 0 || !h.freeIn(t, fence-last, last) {
				h.damaged(fence-min(last&^(granule-1), fence-t.start), "the last free chunk of a run")
				last = 0
			}
		}
		step, _ := h.growth()
		more := alignUp(max(s-last+fenceSize, step), h.page)
		if h.region.Resize(&t.Run, t.Pages()+more/h.page) {
			end := t.end + more
			h.growBits(t, end)
			c, cs := fence, more
			if last != 0 {
				c -= last
				h.remove(c, last)
				cs += last
			}
			t.end = end
			t.fence = [2]uint64{0, fenceSize | flagInUse}
			h.setFree(t, c, cs)
			h.insert(c, cs)
			return c, t, nil
		}
	}
	need := alignUp(s+fenceSize, h.page)
	_, first := h.growth()
	bytes := max(need, first)
	r := &run{Run: arena.NewRun(arena.KindFit)}
	_, _, err := h.region.AllocRun(&r.Run, bytes/h.page, 0, 0)
	if err != nil && bytes > need {
		// under Config.Limit, or short of address space: the run this
		// chunk needs, and no more
		r = &run{Run: arena.NewRun(arena.KindFit)}
		bytes = need
		_, _, err = h.region.AllocRun(&r.Run, bytes/h.page, 0, 0)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("fit: a run of %d bytes: %w", bytes, err)
	}
	r.start = r.Start()
	r.end = r.start + bytes
	r.clean = r.start
	h.growBits(r, r.end)
	c, cs := r.start, bytes-fenceSize
	r.fence = [2]uint64{0, fenceSize | flagInUse}
	h.setFree(r, c, cs)
	h.unwild() // the old top's last free chunk goes to its bin
	h.top = r
	h.insert(c, cs)
	h.liveRuns[r] = struct{}{}
	return c, r, nil
}

// growth returns the least a run grows by in place and the size of a new
// run: growStep and runBytes, but under the region's cap (Config.Limit),
// where a run's pages count against the cap from the start, touched or
// not, a 64th of the cap (a page at least, growStep at most) for both: a
// smaller run, grown in place as it fills, leaves the rest of the cap to
// the slabs. (The allocator sends the heap its cold classes' first blocks,
// a few KiB; with runs of growStep, 128 blocks of 64 bytes held 512 KiB
// of a 1 MiB cap, and the class's slabs could fill only half of it.)
func (h *Heap) growth() (step, first uintptr) {
	if limit := uintptr(h.region.Limit()); limit != 0 {
		step = alignUp(min(growStep, max(limit/64, h.page)), h.page)
		return step, step
	}
	return alignUp(growStep, h.page), alignUp(runBytes, h.page)
}

// growBits makes r's bitmap cover a run that ends at end: a window of
// the region's side (arena.Side: SideShift), grown in place; or, if the
// region has none or its commit is refused, a Go slice.
func (h *Heap) growBits(r *run, end uintptr) {
	words := int((end-r.start)/granule+63)/64 + 1 // and one to spare: window reads past the last
	if words <= len(r.live) {
		return
	}
	was := r.live
	h.metaBytes -= uintptr(cap(was)) * 8
	var w []uint64
	if side := h.region.Side(); side != nil && (was == nil || r.sided) {
		w, _ = side.Words(r.start, words) // nil if its commit is refused
	}
	if w != nil {
		r.live, r.sided = w, true
	} else {
		r.live = append(was, make([]uint64, words-len(was))...) // (a window's capacity is its length: a copy)
		if r.sided {
			clear(was[:len(was)-1]) // left clear for the next run there (the word to spare is the next run's already)
			r.sided = false
		}
	}
	h.metaBytes += uintptr(cap(r.live)) * 8
}

// SideShift is the region's arena.Config.SideShift the heap's bitmaps
// take: a bit for each granule, a byte for 128 bytes of the region.
const SideShift = 7

const _ = uint(1<<SideShift - 8*granule) // (and no other)

// dropBits lets go of r's bitmap, as r goes back to the region: a window
// of the side is left all clear, for the next run there, and its whole
// pages are given back to the kernel (a run of 2 MiB has four: 16 KiB),
// as the Go heap's would be once collected. Its words are all clear
// already, but for the bits of blocks lost to damage (left in use); a
// refused madvise leaves the pages resident, cleared here.
func (h *Heap) dropBits(r *run) {
	h.metaBytes -= uintptr(cap(r.live)) * 8
	if !r.sided {
		return
	}
	// (the word to spare is the next run's); the whole pages given back
	// read as zero
	w := r.live[:len(r.live)-1]
	lo, hi, _ := h.region.Side().Release(w)
	for _, part := range [2][]uint64{w[:lo], w[hi:]} {
		for i, x := range part {
			if x != 0 { // (not written, not made resident, if clear)
				part[i] = 0
			}
		}
	}
}

func alignUp(n, a uintptr) uintptr { return (n + a - 1) &^ (a - 1) }

// check validates p, in run ar, as a block in use, and returns its chunk
// and header.
func (h *Heap) check(ar *arena.Run, p uintptr) (*run, uintptr, uint64, error) {
	h.mu.AssertHeld()
	r := runOf(ar)
	if r.gone || p&(granule-1) != 0 || p < r.start+2*overhead || p >= r.end-fenceSize {
		return nil, 0, 0, fmt.Errorf("%w: %#x is not the start of a block", errInvalid, p)
	}
	c := p - 2*overhead
	if !r.liveAt(p) {
		if w, m := r.bit(p); r.live[w]&m != 0 {
			return nil, 0, 0, fmt.Errorf("%w: %#x is inside a freed block (in a fast bin)", errInvalid, p)
		}
		if held(r, c) {
			return nil, 0, 0, fmt.Errorf("%w: block at %#x (in a fast bin)", errDouble, p)
		}
		if hd := h.header(c); hd&flagInUse == 0 && sizeOf(hd) >= minChunk && c+sizeOf(hd) <= r.end-fenceSize && !h.inBlock(r, c) {
			// a free chunk's header, or the one a freed block left when
			// it merged with a free chunk before it; not words inside a
			// block in use that p points into, whatever they hold (a
			// small block's integers read as a header)
			return nil, 0, 0, fmt.Errorf("%w: block at %#x", errDouble, p)
		}
		return nil, 0, 0, fmt.Errorf("%w: %#x is not the start of a block in use", errInvalid, p)
	}
	hd := h.header(c)
	if s := sizeOf(hd); hd&flagInUse == 0 || s < minChunk || c+s > r.end-fenceSize || uintptr(hd>>slackShift) > s-overhead {
		h.report(c, hd, fmt.Sprintf("the header of the block at %#x was overwritten (%#x): a write past the end of the block before it", p, hd))
		return nil, 0, 0, fmt.Errorf("%w: the header of the block at %#x is damaged", errInvalid, p)
	}
	// (no look through the bitmap when c is known to be the chunk before
	// the top's last free chunk, and its size ends there: wildPrev)
	if next := c + sizeOf(hd); (next != h.wild || c != h.wildPrev) && h.liveWithin(r, c+granule, next) ||
		h.headerIn(r, next)&flagPrevInUse == 0 {
		// the size ends past a block in use, or on a chunk that says the
		// one before it is free: not this block's own size
		h.report(c, hd, fmt.Sprintf("the header of the block at %#x was overwritten (%#x): its size does not end where its chunk does", p, hd))
		return nil, 0, 0, fmt.Errorf("%w: the header of the block at %#x is damaged", errInvalid, p)
	}
	if s := sizeOf(hd); h.fronted(r, c, s) && !r.frontLive(c, s) {
		return nil, 0, 0, fmt.Errorf("%w: block at %#x (in a P's front)", errDouble, p)
	}
	return r, c, hd, nil
}

// inBlock reports whether c, a granule of r where no chunk in use or held
// starts, lies inside a chunk in use or held: the last bit of the bitmap
// before c is that chunk's own (in use) or the second of its mark (held),
// and its size says whether it reaches past c. The lock is held.
func (h *Heap) inBlock(r *run, c uintptr) bool {
	h.mu.AssertHeld()
	g := (c - r.start) / granule
	w := g / 64
	m := r.live[w] & (uint64(1)<<(g%64) - 1)
	for m == 0 {
		if w == 0 {
			return false // no chunk before c is in use or held
		}
		w--
		m = r.live[w]
	}
	x := w*64 + uintptr(63-bits.LeadingZeros64(m))
	if x >= 2 && r.window(r.start+(x-2)*granule) == bitsHeld {
		x -= 2
	}
	xc := r.start + x*granule
	return c < xc+sizeOf(h.header(xc))
}

// checkAll is check, and checks the chunk after the block too (checkNext):
// for the calls that may merge the block with it, or grow into it.
func (h *Heap) checkAll(ar *arena.Run, p uintptr) (*run, uintptr, uint64, error) {
	r, c, hd, err := h.check(ar, p)
	if err == nil {
		err = h.checkNext(r, c+sizeOf(hd))
	}
	return r, c, hd, err
}

// checkNext checks chunk next of r, after a block in use: in use, or a
// sound free chunk. If not, its header was overwritten, or the size of
// the block before it was: that is reported, and the block is to be left
// alone.
func (h *Heap) checkNext(r *run, next uintptr) error {
	if next == h.wild { // (freeIn's answer for it, without the calls)
		if h.wildOK() != nil {
			return nil
		}
	} else if inUse(r, next) || h.freeIn(r, next, 0) {
		return nil
	}
	h.damaged(next, "the chunk after a block")
	return fmt.Errorf("%w: the chunk after the block at %#x is damaged", errInvalid, next-2*overhead)
}

// Usable returns the usable and requested bytes of the block at p, in run
// ar, after checking it is a block in use.
func (h *Heap) Usable(ar *arena.Run, p uintptr) (size, requested uintptr, err error) {
	h.lockDeferred()
	defer h.unlockDeferred()
	_, _, hd, err := h.checkAll(ar, p)
	if err != nil {
		return 0, 0, err
	}
	size = sizeOf(hd) - overhead
	return size, size - uintptr(hd>>slackShift), nil
}

// Free frees the block at p, in run ar, and returns its requested size. A
// pointer that is not the start of a block in use changes nothing. After
// Close it returns ErrClosed itself (the heap's lock orders it with Close:
// AllocSampled).
func (h *Heap) Free(ar *arena.Run, p uintptr) (uintptr, error) {
	h.mu.Lock() // unlocked at each return, not deferred: AllocSampled
	if h.closed {
		h.mu.Unlock()
		return 0, errs.ErrClosed
	}
	r, c, hd, err := h.check(ar, p)
	if err != nil {
		h.mu.Unlock()
		return 0, err
	}
	s := sizeOf(hd)
	fronted := h.fronted(r, c, s) // a front may take the chunk
	if fronted && !r.claim(c, s) {
		h.mu.Unlock()
		return 0, fmt.Errorf("%w: block at %#x (in a P's front)", errDouble, p) // a front took it since check
	}
	n, err := h.freeChecked(r, c, hd)
	h.mu.Unlock()
	if fronted {
		h.makeFront() // for the next such free: a front holds no bigger chunk
	}
	return n, err
}

// freeChecked is Free of the block of chunk c, in r, whose header is hd,
// once checked (and its front record, if any, claimed).
func (h *Heap) freeChecked(r *run, c uintptr, hd uint64) (uintptr, error) {
	p := c + 2*overhead
	s := sizeOf(hd)
	bin := h.holds(r, c, s)
	if bin < 0 {
		if err := h.checkNext(r, c+s); err != nil {
			if h.fronted(r, c, s) {
				h.markFront(r, c, s) // left alone, in use: its record back
			}
			return 0, err // merged, the chunk after would be trusted
		}
	}
	h.ops++
	if hd&flagSampled != 0 && h.opts.OnFree != nil || h.opts.everyFree {
		h.onFree(p) // (a mutex and a map's lookup: only for a block it has a record of)
	}
	n := s - overhead - uintptr(hd>>slackShift)
	h.liveChunks--
	h.count(s, -1)
	h.liveBytes -= n
	h.chunkBytes -= s
	if bin >= 0 {
		h.pushFast(r, c, s, bin)
		return n, nil
	}
	h.release(r, c, s, hd&flagPrevInUse != 0, bitsLive)
	h.settle()
	return n, nil
}

// release makes chunk c of s bytes, in r, free: merged with its free
// neighbours, then binned, or the whole run given back.
// The chunk after it is free if the bitmap says so (check has found it
// sound); the chunk before, found through the boundary tag, is checked
// here: if it is not a sound free chunk, that is reported and c is not
// merged with it. c's own bits in the bitmap (mark: bitsLive for a block
// in use, bitsHeld for a fast bin's chunk, 0 for none) are what that
// check sees of it; they are cleared once it is done, before the run
// may go back to the region (its window of the side is then the next
// run's there).
func (h *Heap) release(r *run, c, s uintptr, prevInUse bool, mark uint64) {
	next, c0 := c+s, c
	if !prevInUse {
		ps := uintptr(*h.word(c))
		if ps <= c-r.start && ps%granule == 0 && h.freeIn(r, c-ps, ps) {
			c -= ps
			h.remove(c, ps)
			s += ps
		} else {
			h.damaged(c, "a chunk whose header says the chunk before it is free, and whose boundary tag names no free chunk,")
		}
	}
	if next == h.wild || !inUse(r, next) { // (the top's: free, without the bitmap)
		ns := sizeOf(h.header(next))
		h.remove(next, ns)
		s += ns
	} else {
		h.andHeader(r, next, ^uint64(flagPrevInUse)) // it may be a front's
	}
	r.unmark(c0, mark)
	if r == h.top && c+s == r.end-fenceSize {
		// the top's last free chunk: setFree's and insert's work in
		// place, without the calls
		r.touch(c+minChunk, h.page)
		*h.word(c + 8) = uint64(s) | flagPrevInUse
		r.fence[0] = uint64(s) // its boundary tag: the run's (slot)
		if c == r.start && h.retire(r) {
			return
		}
		*h.fd(c), *h.bk(c) = uint64(c), uint64(c)
		h.freeBytes += s
		h.wild, h.wildS, h.wildRel, h.wildPrev = c, s, false, 0
	} else {
		h.setFree(r, c, s)
		if c == r.start && c+s == r.end-fenceSize {
			if h.retire(r) {
				return
			}
		}
		h.insert(c, s)
	}
	if c+s == r.end-fenceSize && h.trim != 0 && s >= h.trim {
		if h.opts.TrimLater {
			h.armPurge() // its pass trims the top (trimTops)
		} else {
			h.mayTrimTop(r, c)
		}
	}
	if h.opts.Purge && s >= purgeMin {
		if h.opts.PurgeDelay <= 0 {
			h.releaseChunk(c, s)
		} else {
			h.armPurge()
		}
	}
	if s >= purgeMin && (h.fastBytes != 0 || h.frontMade.Load()) { // (frontMade: fronts on, and one made)
		h.mergeHeld = true // by the caller, once its own chunk is settled: settle
	}
}

// armPurge arms the purge's timer, if the purge is on and it is not armed.
func (h *Heap) armPurge() {
	if !h.purgeAt { // (inlined: mostly armed, or off)
		h.arm()
	}
}

// arm is armPurge once the timer is known not armed.
func (h *Heap) arm() {
	if h.opts.Purge && h.opts.PurgeDelay > 0 && !h.closed {
		h.purgeAt = true
		if h.timer == nil {
			h.timer = time.AfterFunc(h.opts.PurgeDelay, h.purgePass)
		} else {
			h.timer.Reset(h.opts.PurgeDelay)
		}
	}
}

// mayTrimTop is trimTop when a page past the pad may be touched: the
// test inlined (mostly nothing to trim), the rest a call.
func (h *Heap) mayTrimTop(r *run, c uintptr) {
	if c+minChunk+h.opts.TopPad < r.clean {
		h.trimTop(r, c)
	}
}

// trimTop gives back the touched pages of run r's last free chunk c past
// its first TopPad bytes, as glibc's free trims its heap's top chunk.
func (h *Heap) trimTop(r *run, c uintptr) {
	lo := alignUp(c+minChunk+h.opts.TopPad, h.page)
	if lo >= r.clean || h.closed {
		return
	}
	if h.region.Release(lo, r.clean-lo) == nil {
		r.clean = lo
	}
}

// SetTrimThreshold changes the trim threshold of the runs' tops (the
// dynamic threshold raises it); 0 turns the trim off.
func (h *Heap) SetTrimThreshold(n uintptr) {
	h.mu.Lock()
	h.trim = n
	h.mu.Unlock()
}

// purgePass is the purge's timer: it releases the inside of every free
// chunk of purgeMin bytes or more that was dirty at the last pass and has
// not changed since (its header is rewritten, without the flags, whenever
// it is split or merged), and marks the others. While some wait, it arms
// itself again.
func (h *Heap) purgePass() {
	if m := h.opts.Moves; m != nil {
		m.Lock()
		defer m.Unlock()
	}
	h.lockDeferred()
	defer h.unlockDeferred()
	h.purgeAt = false
	if h.closed {
		return
	}
	waiting := false
	if chunks, _, _, _, ops := h.frontSums(); chunks != 0 {
		// the fronts are emptied into the heap once they have seen no
		// operation for a whole pass, as the fast bins
		if ops == h.frontSeen {
			h.drainFrontsLocked(nil)
		} else {
			waiting = true
		}
		h.frontSeen = ops
	}
	if h.fastBytes != 0 {
		// the fast bins are emptied once they have seen no operation for
		// a whole pass: a heap in use keeps them
		if h.ops == h.purgeSeen {
			h.consolidate()
		} else {
			waiting = true
		}
	}
	h.purgeSeen = h.ops
	h.eachBig(func(c, s uintptr) { // every chunk of purgeMin bytes or more is there
		hd := h.header(c)
		switch {
		case hd&flagReleased != 0:
		case hd&flagAged != 0:
			h.releaseChunk(c, s)
		default:
			h.setHeader(runOf(h.region.Lookup(c)), c, hd|flagAged)
			waiting = true
		}
	})
	if h.opts.TrimLater && h.trimTops() {
		waiting = true
	}
	if waiting {
		h.purgeAt = true
		h.timer.Reset(h.opts.PurgeDelay)
	}
}

// trimTops is the purge's pass over the runs' tops (Options.TrimLater):
// a run's last free chunk of the trim threshold or more, with pages
// touched past its pad, is trimmed as a free would have trimmed it if
// the last pass found it so too (a heap freed and built again within the
// delay faults nothing back in), else noted. It reports whether one
// waits for the next pass.
func (h *Heap) trimTops() bool {
	if h.trim == 0 {
		return false
	}
	waiting := false
	for r := range h.liveRuns {
		c, s := uintptr(0), uintptr(0)
		if r.fence[1]&flagPrevInUse == 0 { // the last chunk is free: its size is the fence's boundary tag
			s = uintptr(r.fence[0])
			c = r.end - fenceSize - s
		}
		if s < h.trim || s > r.end-fenceSize-r.start || c+minChunk+h.opts.TopPad >= r.clean || !h.freeIn(r, c, s) {
			r.topSeen = false
			continue
		}
		if r.topSeen {
			h.trimTop(r, c)
			r.topSeen = false
		} else {
			r.topSeen = true
			waiting = true
		}
	}
	return waiting
}

// Close stops the purge's timer; a pass already running sees the heap
// closed and does nothing, so nothing is released once the region may be
// unmapped.
func (h *Heap) Close() {
	h.lockDeferred()
	defer h.unlockDeferred()
	h.frontsClosed.Store(true) // no front is made from here on
	h.drainFrontsLocked(nil)
	h.closed = true
	if h.timer != nil {
		h.timer.Stop()
	}
}

// retire decides what becomes of run r, now empty: kept as the spare (it
// or the spare, whichever is lower) or given back to the region. It
// reports whether r was given back.
func (h *Heap) retire(r *run) bool {
	if h.spare == nil { // (inlined: a run that empties and fills again, each pair)
		h.spare = r
		return false
	}
	return h.retireBeside(r)
}

// retireBeside is retire when there is a spare already.
func (h *Heap) retireBeside(r *run) bool {
	if r.start < h.spare.start {
		// keep the lower: give back the old spare, whose chunk is binned
		old := h.takeSpare()
		h.spare = r
		if old != nil {
			h.giveBack(old)
		}
		return false
	}
	h.giveBack(r)
	return true
}

// takeSpare takes the spare's chunk out of its bin and returns the spare,
// no longer the spare, or nil if there is none or its chunk is damaged
// (reported; the run is kept, never used again).
func (h *Heap) takeSpare() *run {
	r := h.spare
	if r == nil {
		return nil
	}
	h.spare = nil
	if s := r.end - fenceSize - r.start; h.freeIn(r, r.start, s) {
		h.remove(r.start, s)
		return r
	}
	h.damaged(r.start, "the free chunk of an empty run")
	return nil
}

// giveBack returns empty run r to the region, and adds to gaveBack the
// bytes the region gave back to the kernel as it took it (the top it
// trimmed, the runs its purge found due): none within a
// Region.TrimAfter, which gives it all back and counts it.
func (h *Heap) giveBack(r *run) {
	if h.top == r {
		h.top = nil
	}
	delete(h.liveRuns, r)
	r.gone = true
	h.dropBits(r)
	if len(h.liveRuns) == 0 { // no chunk is left for the sorted bin: its array goes
		h.metaBytes -= uintptr(cap(h.big)) * unsafe.Sizeof(bigChunk{})
		h.big = nil
	}
	for k := range r.fl { // its record's segments (markFront)
		if r.fl[k].Load() != nil {
			h.metaBytes -= unsafe.Sizeof(flSeg{})
		}
	}
	n, _ := h.region.FreeCounted(&r.Run) // only a closed region refuses, and then nothing matters
	h.gaveBack += n
}

// Resize resizes the block at p, in run ar, to n bytes in place if it
// can, with room for least bytes at least (its usable size; 0: n — a cold
// class's block keeps room for its class's size: AllocSampled): it shrinks
// by splitting off the rest, and grows into the free chunk after it. It
// reports whether it did; the block is unchanged if not.
func (h *Heap) Resize(ar *arena.Run, p, n, least uintptr) (bool, error) {
	h.lockDeferred()
	defer h.unlockDeferred()
	r, c, hd, err := h.checkAll(ar, p)
	if err != nil {
		return false, err
	}
	s := sizeOf(hd)
	if h.fronted(r, c, s) && !r.claim(c, s) {
		return false, fmt.Errorf("%w: block at %#x (in a P's front)", errDouble, p) // a front took it since check
	}
	// claimed while it changes (a Free racing this call goes to the lock,
	// and waits); recorded again for the size it ends with
	defer func() {
		if hd := h.header(c); h.fronted(r, c, sizeOf(hd)) {
			h.markFront(r, c, sizeOf(hd))
		}
	}()
	h.ops++
	old := s - overhead - uintptr(hd>>slackShift)
	want := chunkSize(max(n, least))
	if want > s && h.fastBytes != 0 && c+s < r.end-fenceSize && held(r, c+s) {
		h.consolidate()  // the chunk after may merge into room to grow into
		hd = h.header(c) // and the chunk before may be free now
	}
	if want > s {
		next := c + s
		if inUse(r, next) || s+sizeOf(h.header(next)) < want {
			return false, nil
		}
		ns := sizeOf(h.header(next))
		h.remove(next, ns)
		if rest := s + ns - want; rest >= minChunk {
			h.setFree(r, c+want, rest)
			h.insert(c+want, rest)
		} else {
			want = s + ns
			h.orHeader(r, c+want, flagPrevInUse) // the next chunk may be a front's
		}
	} else if rest := s - want; rest >= minChunk {
		h.release(r, c+want, rest, true, 0)
	} else {
		want = s
	}
	h.setHeader(r, c, uint64(want)|flagInUse|hd&(flagPrevInUse|flagSampled)|uint64(want-overhead-n)<<slackShift)
	r.touch(c+want+overhead, h.page)
	h.count(s, -1)
	h.count(want, 1)
	h.chunkBytes += want - s
	h.liveBytes += n - old
	h.settle()
	return true, nil
}

// Trim gives back every empty run (the spare) to the region, and releases
// with madvise the whole pages inside every other free chunk, as glibc's
// malloc_trim does: it returns the bytes given back to the kernel, by
// itself and by the region as it took the spare, or a run that emptying
// the fast bins emptied (the top it trimmed then;
// a run the region releases later, in its own Trim, the region counts).
func (h *Heap) Trim() uintptr {
	h.lockDeferred()
	defer h.unlockDeferred()
	h.drainFrontsLocked(nil)
	return h.trimLocked()
}

// Idle is the purge's pass for a heap gone idle (Config.PurgeInBackground
// calls it every PurgeDelay): if nothing was allocated, freed or resized
// since the last pass, it does what Trim does, so the free chunks of a
// heap nobody uses go back to the kernel by themselves. Chunks released
// already are skipped. It returns the bytes released. Like Trim it may give
// runs back to the region, and like Trim it leaves Options.Moves to its
// caller.
func (h *Heap) Idle() uintptr {
	h.lockDeferred()
	defer h.unlockDeferred()
	h.drainFrontsLocked(func(f *front) bool { // the fronts idle since the last pass that hold chunks
		percpu.Pin() // as every holder of a front's lock
		defer percpu.Unpin()
		if !f.Acquire() {
			return false
		}
		idle := f.ops == f.seen && f.bytes != 0
		f.seen = f.ops
		f.Release()
		return idle
	})
	if h.ops != h.idleSeen {
		h.idleSeen = h.ops
		return 0
	}
	return h.trimLocked()
}

// trimLocked is Trim with the lock held.
func (h *Heap) trimLocked() uintptr {
	was := h.gaveBack
	h.consolidate() // a run it empties may go back, and the region's top with it: counted
	if r := h.takeSpare(); r != nil {
		h.giveBack(r)
	}
	return h.gaveBack - was + h.releaseFree()
}

// releaseFree releases the inside of every free chunk not released yet.
func (h *Heap) releaseFree() uintptr {
	h.mu.AssertHeld()
	var released uintptr
	h.eachFree(func(c, s uintptr) {
		if h.header(c)&flagReleased == 0 {
			released += h.releaseChunk(c, s)
		}
	})
	return released
}

// releaseChunk releases the inside of free chunk c of s bytes and marks
// it released; it returns the bytes released.
func (h *Heap) releaseChunk(c, s uintptr) uintptr {
	lo, n := alignUp(c+minChunk, h.page), h.inside(c, s)
	if h.closed || n == 0 || h.region.Release(lo, n) != nil {
		return 0
	}
	r := runOf(h.region.Lookup(c))
	h.setHeader(r, c, h.header(c)|flagReleased)
	if c == h.wild {
		h.wildRel = true
	} else {
		h.markReleased(c, s)
	}
	h.released += n
	if c+s == r.end-fenceSize {
		r.clean = min(r.clean, lo)
	}
	return n
}

// inside returns the whole pages inside free chunk c of s bytes, past its
// header and links (the boundary tag, at c+s, is the next chunk's).
func (h *Heap) inside(c, s uintptr) uintptr {
	lo, hi := alignUp(c+minChunk, h.page), (c+s)&^(h.page-1)
	if hi <= lo {
		return 0
	}
	return hi - lo
}

// eachFree calls fn for every free chunk in a bin, and the top run's last
// (wild). A damaged chunk is reported, and its bin cut before it.
func (h *Heap) eachFree(fn func(c, s uintptr)) {
	for w, m := range h.bitmap {
		for ; m != 0; m &= m - 1 {
			i := uintptr(w*64 + bits.TrailingZeros64(m))
			h.eachIn(h.exact[i], i*granule, fn)
		}
	}
	if h.wild != 0 && h.wildS < exactLimit {
		h.eachWild(fn)
	}
	h.eachBig(fn)
}

// eachIn calls fn for every chunk of the exact bin that starts at c, whose
// chunks are of s bytes.
func (h *Heap) eachIn(c, s uintptr, fn func(c, s uintptr)) {
	var prev uintptr
	for c != 0 {
		if h.freeOK(c, s) == nil {
			h.damaged(c, "a free chunk")
			h.drop(prev, c, s)
			return
		}
		fn(c, s)
		prev, c = c, uintptr(*h.fd(c))
	}
}

// eachBig calls fn for every chunk of the sorted bin, and the top run's
// last free chunk if it is of the sorted bin's sizes; fn must not change
// the bin. A damaged chunk is reported and taken out, still counted free.
func (h *Heap) eachBig(fn func(c, s uintptr)) {
	for i := 0; i < len(h.big); {
		e := h.big[i]
		if h.bigOK(e) == nil {
			h.damaged(e.c, "a free chunk of the sorted bin")
			h.unbig(i)
			continue
		}
		fn(e.c, e.s)
		i++
	}
	if h.wild != 0 && h.wildS >= exactLimit { // of the sorted bin's sizes
		h.eachWild(fn)
	}
}

// Stats is the heap's bookkeeping.
type Stats struct {
	Runs       uintptr
	LiveChunks uintptr // blocks in use
	LiveBytes  uintptr // their requested bytes
	ChunkBytes uintptr // the chunks that hold them: headers and rounding beyond LiveBytes
	FreeBytes  uintptr // free chunks, their pages given back included
	Released   uintptr // of FreeBytes, the pages inside free chunks given back
	FenceBytes uintptr // the ends of runs
	MetaBytes  uintptr // the bitmaps of blocks in use (in the region's side, or the Go heap) and the bins (in the Go heap)
	Cached     uintptr // chunks the P's fronts hold (not in LiveChunks, LiveBytes or ChunkBytes)
}

// Stats returns the heap's bookkeeping.
func (h *Heap) Stats() Stats {
	h.lockDeferred()
	defer h.unlockDeferred()
	chunks, bytes, req, adj, _ := h.frontSums()
	return Stats{
		Runs:       uintptr(len(h.liveRuns)),
		LiveChunks: h.liveChunks - chunks,
		LiveBytes:  h.liveBytes + adj - req,
		ChunkBytes: h.chunkBytes - bytes,
		Cached:     bytes,
		FreeBytes:  h.freeBytes,
		Released:   h.released,
		FenceBytes: uintptr(len(h.liveRuns)) * fenceSize,
		MetaBytes: unsafe.Sizeof(*h) + h.metaBytes + uintptr(len(h.liveRuns))*unsafe.Sizeof(run{}) +
			uintptr(h.frontCount())*unsafe.Sizeof(front{}),
	}
}
