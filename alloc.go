// Package alloc is a memory allocator whose memory the Go garbage collector
// never sees, built the way glibc's malloc is taught and measured against it.
//
// A request goes one of three ways, chosen by its size and the Policy:
//
//  1. Small (up to 1 KiB, and a class's exact size above): rounded up to
//     one of the size classes (one table load) and popped from this P's
//     cache for that class, with no lock and no atomic instruction; an
//     empty cache is refilled with a batch from the class's slabs under
//     the class lock — package slab. Slabs are page runs of the region. A
//     class's first blocks (Config.ColdBlocks) come from the best-fit heap
//     instead, a chunk of the class's size each, until the class is in
//     steady use.
//  2. Medium (above 1 KiB, up to 32 KiB): a chunk of exactly its size
//     (rounded to 16 bytes) from the best-fit heap, whose free chunks merge
//     with their free neighbours as glibc's do — package fit. Its runs are
//     page runs of the region too.
//  3. Mid-size (above 32 KiB, below the mmap threshold): one page run of
//     the region by itself — package arena. The region is a brk-like range
//     of address space reserved once; its break moves up (mprotect) when no
//     free run fits, and down (madvise + PROT_NONE) when at least
//     TrimThreshold bytes at its top are free.
//  4. Large (at or above the mmap threshold, 128 KiB by default): its own
//     anonymous mapping, unmapped the moment it is freed — package
//     largealloc.
//
// PolicyBrk sends everything to the region (steps 1 to 3), PolicyMmap
// everything to its own mapping (step 4). Debug serves medium requests
// from the slabs, whose blocks its checks know. The threshold slides up as
// glibc's does unless a knob pins it (see Config.DynamicThreshold). Package stats measures what each
// choice costs: resident memory (measured with mincore, not guessed),
// system calls, fragmentation.
//
// Free finds a block's owner from its address alone: inside the region,
// the arena's page map (arithmetic on the region's base) gives the run and
// the run its slab; outside, the registry of live mappings. Anything that
// is not the start of a live block — a Go slice, a block of another
// Allocator, an interior pointer, a second free — is refused with an error
// and changes nothing.
//
// A goroutine that allocates much — a worker, a connection — may take a
// Local (NewLocal): a handle with its own cache in place of the P's, used
// without pinning, whose blocks are the Allocator's like any other
// (local.go).
//
// Memory from an Allocator must not hold Go pointers: the garbage collector
// does not scan it, so what they point to could be collected. The typed
// helpers (NewObject, MakeSlice) refuse such types.
package alloc

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/fit"
	"github.com/brkmap/alloc/internal/budget"
	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/sys"
	"github.com/brkmap/alloc/largealloc"
	"github.com/brkmap/alloc/slab"
	"github.com/brkmap/alloc/stats"
)

// Errors. Compare with errors.Is: returned errors wrap these with context.
var (
	// ErrInvalidSize: a negative size, or an alignment that is not a
	// power of two.
	ErrInvalidSize = errors.New("alloc: invalid size")
	// ErrOutOfMemory: past Config.Limit, past the reservation, or the
	// kernel refused (ENOMEM from mmap or mprotect, vm.max_map_count).
	ErrOutOfMemory error = errs.ErrNoMemory
	// ErrDoubleFree: the block is already free.
	ErrDoubleFree error = errs.ErrDoubleFree
	// ErrInvalidFree: not from this allocator, not the start of a block,
	// already unmapped, or resliced from the front.
	ErrInvalidFree error = errs.ErrInvalidFree
	// ErrClosed: the allocator has been closed.
	ErrClosed error = errs.ErrClosed
	// ErrPointerType: a typed helper was given a type holding Go pointers.
	ErrPointerType = errors.New("alloc: type contains Go pointers")
)

// Policy chooses where requests are served from.
type Policy int

const (
	// PolicyThreshold serves requests below MmapThreshold from the region
	// and larger ones from their own mappings: glibc's policy.
	PolicyThreshold Policy = iota
	// PolicyBrk serves everything from the region.
	PolicyBrk
	// PolicyMmap gives every block its own mapping.
	PolicyMmap
)

func (p Policy) String() string {
	switch p {
	case PolicyThreshold:
		return "threshold"
	case PolicyBrk:
		return "brk"
	case PolicyMmap:
		return "mmap"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// Glibc's defaults, and the cap of its sliding threshold.
const (
	DefaultMmapThreshold = 128 << 10
	DefaultTrimThreshold = 128 << 10
	DefaultTopPad        = 128 << 10
	DefaultReserve       = 64 << 30
	MaxDynamicThreshold  = 32 << 20 // DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
)

// The purge's settings (Config.PurgeDelay).
const (
	// DefaultPurgeDelay is the zero Config's: see the README for the
	// measurements behind it.
	DefaultPurgeDelay = 10 * time.Millisecond
	// PurgeNever keeps free pages resident until Trim (or until the top
	// of the region moves the break down), as glibc does.
	PurgeNever time.Duration = -1
	// PurgeImmediately releases free pages in the call that frees them
	// (any delay below a microsecond does).
	PurgeImmediately time.Duration = 1
)

// Config sets up an Allocator. The zero Config is glibc's defaults, the
// sliding threshold included (see DynamicThreshold), plus the purge of
// freed pages after PurgeDelay.
type Config struct {
	// Policy: PolicyThreshold (default), PolicyBrk or PolicyMmap.
	Policy Policy
	// MmapThreshold: requests of at least this many bytes get their own
	// mapping under PolicyThreshold. 0 means 128 KiB.
	MmapThreshold int
	// The threshold slides as glibc's does unless it is pinned: freeing a
	// mapped block larger than the threshold (and at most 32 MiB) raises
	// the threshold to that block's size and the trim threshold to twice
	// it, so repeated large temporary buffers come from the region instead
	// of paying mmap, page faults and munmap every time. As with glibc's
	// mallopt, setting MmapThreshold, TrimThreshold or TopPad pins it;
	// DynamicThreshold keeps it sliding even then, starting from
	// MmapThreshold. Stats.DynamicThreshold says which is in effect.
	DynamicThreshold bool
	// TrimThreshold: when the free space at the top of the region reaches
	// this many bytes, the break moves down. 0 means 128 KiB; negative
	// means never (glibc's M_TRIM_THRESHOLD = -1).
	TrimThreshold int
	// TopPad: extra bytes each time the break moves up, and kept when it
	// moves down. 0 means 128 KiB; negative means none.
	TopPad int
	// Reserve: bytes of address space reserved for the region (not
	// memory: nothing is committed until used). 0 means 64 GiB. Unless
	// Debug or PolicyMmap, a 128th more is reserved with it, for the
	// best-fit heap's bitmaps (arena.Side).
	Reserve int
	// Limit caps the bytes committed: the region up to its break plus
	// every live mapping. Past it allocation fails with ErrOutOfMemory.
	// 0 means no cap.
	Limit int
	// Debug turns on the checks that cost: a canary after every block
	// (checked by Free and Realloc), freed small blocks poisoned (checked
	// when handed out again), a guard page after every large block, freed
	// large mappings kept PROT_NONE in a quarantine before munmap, and the
	// allocating and freeing call stacks recorded for reports. It bypasses
	// the per-P caches. UsableSize returns the requested size.
	Debug bool
	// OnCorruption receives every report of memory damage the allocator
	// finds (Debug's canaries and poison; the free-list checks that are
	// always on). nil means panic with the report. A report is delivered
	// once the call that found the damage has done its work and holds no
	// lock, on that call's goroutine (or one that leaves the allocator at
	// the same moment): the handler may call any method, Close included,
	// and may panic — the allocator stays usable, and a block the call was
	// handing out is freed first, so the caller never gets it and nothing
	// leaks. What each kind leaves behind is said at CorruptionKind.
	OnCorruption func(*Corruption)
	// ProfileRate: the mean bytes allocated between two allocations
	// recorded in the heap profile (see HeapProfile), as
	// runtime.MemProfileRate is for the Go heap. 0 means the package's
	// ProfileRate (512 KiB unless changed); negative turns profiling off;
	// 1 records every allocation.
	ProfileRate int
	// HugePages: transparent huge pages for large blocks, for everything,
	// or (the default) off. See HugePages.
	HugePages HugePages
	// PurgeDelay: free pages of the region (anywhere in it, not only at
	// the top) are released to the kernel with madvise(MADV_DONTNEED)
	// once they have been free this long, so freed memory goes back by
	// itself. The work is done when a page run is freed, and by a one-shot
	// timer armed while free pages wait; never on the small fast path.
	// 0 means DefaultPurgeDelay; PurgeNever turns it off (glibc's
	// behaviour: only Trim releases pages below the top);
	// PurgeImmediately releases pages as soon as they are free.
	PurgeDelay time.Duration
	// PurgeInBackground starts a goroutine, stopped by Close, for a
	// service that goes idle: every PurgeDelay (at least a millisecond) it
	// also flushes P caches that have not gone to their classes since its
	// last pass and gives back the empty slab a class keeps if it has not
	// been used since, so nothing the allocator caches pins memory.
	PurgeInBackground bool
	// ColdBlocks: a small size class's first ColdBlocks blocks come from
	// the best-fit heap, packed among blocks of every size (a chunk of the
	// class's size and an 8-byte header each), before the class takes its
	// first slab and its blocks go through the P caches — once the heap
	// holds half a first slab's blocks of it in use, or, whatever it
	// holds, past its 2×ColdBlocks-th request: a class a program asks
	// only a few blocks of, or whose blocks die young, holds no slab of
	// its own, and one in steady use soon leaves the heap. Stats counts a
	// cold class's blocks with the heap's (FitBytes), not in Classes.
	// 0 means DefaultColdBlocks;
	// negative means none (every class on its slabs from its first block,
	// as under Debug and PolicyMmap, and in a Local's bins).
	ColdBlocks int
}

// Allocator hands out off-heap memory. All methods are safe for
// concurrent use, Close included: a call racing Close succeeds or returns
// ErrClosed, and Close returns once no call is inside (gate.go). A block
// handed out before Close is unmapped with everything else: using it
// after Close is the caller's bug.
type Allocator struct {
	policy Policy
	os     *sys.OS
	budget *budget.Budget
	pages  arena.PageMap // the region's page map, kept here: one hop less on Free
	region *arena.Region
	slabs  *slab.Pool
	fit    *fit.Heap // medium requests and cold classes' blocks; nil under Debug and PolicyMmap
	// cold counts each class's requests while it is cold (coldClass): its
	// first coldN (Config.ColdBlocks; 0: none, as without a heap) are the
	// best-fit heap's, and up to as many more may be (turnsHot); hot says the
	// class turned hot, for good
	cold  [slab.NumClasses]atomic.Uint32
	hot   [slab.NumClasses]atomic.Bool
	coldN uint32
	// steps says which medium requests up to hotTo the slabs serve: a
	// class's exact size, and every size of a hot class, whose blocks
	// come from its slabs, no longer from the best-fit heap, once the heap
	// held hotAt of its chunks in use at once (noteInUse)
	steps steps
	hotAt int
	large *largealloc.Mappings
	page  uintptr

	// mmapFrom is where mappings start (requests >= mmapFrom get one);
	// threshold and trim are what Stats reports. Under the dynamic
	// threshold, requests up to the freed block's own size stay in the
	// region, as glibc's chunk header makes them, so mmapFrom is one more.
	mmapFrom  atomic.Uintptr
	threshold atomic.Uintptr
	trim      atomic.Int64
	dynamic   bool

	// smallLimit: requests below it go to the slabs' P caches (0 under
	// PolicyMmap and Debug), but for the medium ones the best-fit heap
	// serves (fitted).
	smallLimit uint

	// closed is set first thing by Close. gate counts the calls in flight
	// past the fast paths, plus gateClosed once Close has begun: Close
	// waits for the count to reach zero before it unmaps anything, and no
	// call enters after (gate.go).
	closed    atomic.Bool
	gate      atomic.Int64
	closeMu   sync.Mutex  // serializes Close: a second Close returns once the first is done
	reports   reportQueue // corruption reports waiting for their call to leave the gate (gate.go)
	shared    bool        // Default's: Close refuses
	idle      *idleLoop   // PurgeInBackground's goroutine, or nil (purge.go)
	scratches scratchSet  // the request arenas not yet freed (scratch.go)

	// moves is held for writing by the passes no caller makes — the
	// idle pass, the best-fit heap's purge timer — while they move memory
	// from one layer to another (a P cache's blocks to their slabs, an
	// empty slab or run to the region), and for reading by Counters while
	// it reads the layers' counters one after the other: a snapshot sees
	// each block, slab and run in exactly one layer (counters.go). No
	// Malloc, Free or other call of a caller takes it.
	moves sync.RWMutex

	debug        bool
	debugState   *debugState
	onCorruption func(*Corruption)
	prof         *profileSampler // the heap profile's records; nil with profiling off (profile.go)

	statsMu sync.Mutex
	vec     []byte // mincore scratch, under statsMu
	smaps   []byte // /proc/self/smaps scratch, under statsMu

	huge hugeState // fixed after New
}

// New makes an Allocator. It reserves the region's address space at once.
func New(cfg Config) (*Allocator, error) {
	if err := cfg.validate(); err != nil { // guard.go
		return nil, err
	}
	a := &Allocator{
		policy:  cfg.Policy,
		os:      &sys.OS{},
		budget:  budget.New(uint64(cfg.Limit)),
		page:    sys.PageSize,
		dynamic: cfg.DynamicThreshold || cfg.MmapThreshold == 0 && cfg.TrimThreshold == 0 && cfg.TopPad == 0,
	}
	a.steps.init()
	threshold := uintptr(orDefault(cfg.MmapThreshold, DefaultMmapThreshold))
	a.threshold.Store(threshold)
	a.mmapFrom.Store(threshold)
	trim := int64(orDefault(cfg.TrimThreshold, DefaultTrimThreshold))
	a.trim.Store(trim)
	topPad := orDefault(cfg.TopPad, DefaultTopPad)
	if topPad < 0 {
		topPad = 0
	}
	trimBytes := uintptr(trim)
	if trim < 0 {
		trimBytes = ^uintptr(0)
	}
	var err error
	if a.huge, err = resolveHugePages(cfg.HugePages); err != nil {
		return nil, err
	}
	delay := cfg.PurgeDelay
	if delay == 0 {
		delay = DefaultPurgeDelay
	}
	a.region, err = arena.New(arena.Config{
		Reserve:       uintptr(orDefault(cfg.Reserve, DefaultReserve)),
		TopPad:        uintptr(topPad),
		TrimThreshold: trimBytes,
		OS:            a.os,
		Budget:        a.budget,
		HugePageSize:  a.huge.regionSize(),
		Purge:         delay >= 0,
		PurgeDelay:    purgeDelay(delay),
		SideShift:     sideShift(a.policy, cfg.Debug),
	})
	if err != nil {
		return nil, err
	}
	a.onCorruption = cfg.OnCorruption
	a.prof = newProfileSampler(cfg.ProfileRate)
	a.slabs = slab.New(a.region, slab.Options{
		ProfileRate:   a.prof.rateOrZero(),
		OnSampledFree: a.prof.freedSmall,
		OnCorruption: func(addr, size uintptr, detail string) {
			a.report(&Corruption{Kind: FreeList, Addr: addr, Size: int(size), Requested: -1, Offset: 0, Detail: detail})
		},
		OnLimit: func() {
			// the heap's free run and what its fronts hold, its cold
			// classes' blocks freed above all (Config.ColdBlocks)
			if a.fit != nil {
				a.fit.Trim()
			}
		},
	})
	a.pages = a.region.PageMap()
	if usesFit(a.policy, cfg.Debug) {
		fitTrim := trimBytes
		if trim < 0 {
			fitTrim = 0 // never
		}
		var onFree func(uintptr) // none with the profile off: no record to drop, a call less each Free
		if a.prof != nil {
			onFree = a.prof.freeingLarge
		}
		a.fit = fit.New(a.region, fit.Options{
			Purge:         delay >= 0,
			PurgeDelay:    purgeDelay(delay),
			TrimThreshold: fitTrim,
			TopPad:        uintptr(topPad),
			TrimLater:     fitTrimsLater(delay),
			OnFree:        onFree,
			ProfileRate:   a.prof.rateOrZero(),
			Moves:         &a.moves,
			OnCorruption: func(addr, size uintptr, detail string) {
				a.report(&Corruption{Kind: FreeList, Addr: addr, Size: int(size), Requested: -1, Offset: 0, Detail: detail})
			},
		})
		a.hotAt = hotChunks
		if cold := orDefault(cfg.ColdBlocks, DefaultColdBlocks); cold > 0 {
			// no heap, no cold class: 0; at most 1<<31 - 1, so that the
			// count of the request past twice it (turnsHot) fits a.cold's
			a.coldN = uint32(min(cold, 1<<31-1))
		}
	}
	switch {
	case a.policy == PolicyMmap:
		a.smallLimit = 0
	case a.policy == PolicyThreshold:
		a.smallLimit = min(slab.MaxSize+1, uint(threshold))
	default:
		a.smallLimit = slab.MaxSize + 1
	}
	a.large = largealloc.New(a.os, a.budget)
	a.large.SetHugePages(a.huge.largeSize())
	if cfg.Debug {
		// the fast paths are off: Malloc and Free take the debug paths
		a.debug, a.debugState = true, newDebugState()
		a.large.EnableDebug()
		a.smallLimit, a.pages = 0, arena.PageMap{}
	}
	if cfg.PurgeInBackground {
		a.idle = startIdleLoop(a, max(delay, time.Millisecond))
	}
	return a, nil
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

var (
	defaultOnce sync.Once
	defaultA    *Allocator
)

// Default returns a process-wide Allocator with the zero Config, made on
// first use. Every package that calls it shares it, so its Close refuses
// (ErrDefaultClose): make your own with New to have one you can close.
func Default() *Allocator {
	defaultOnce.Do(func() {
		a, err := New(Config{})
		if err != nil {
			panic(fmt.Sprintf("alloc: cannot make the default allocator: %v", err))
		}
		a.shared = true
		defaultA = a
	})
	return defaultA
}

// route says which layer serves a request of n bytes.
type route int

const (
	toSlab route = iota
	toFit
	toMid
	toMapping
)

// fitFrom is the smallest request routed to the best-fit heap by its size
// (route): above 1 KiB, where a class's rounding and its free blocks that
// no other class can use cost more than the heap's header. Below it, a
// size class's blocks come from the heap only while the class is cold
// (DefaultColdBlocks), and from its slabs once it is hot; from it up to
// hotTo, from the heap until the class turns hot another way, by the
// blocks it holds live (noteInUse). With the heap's boundary at 2 KiB
// instead (classes up to 2 KiB on their slabs once 128 blocks were asked
// for), the service workload's peak resident was 8.6 MiB against 7.9
// (glibc 8.5): its request buffers of 1–2 KiB, short-lived and of every
// size, share the heap's free chunks, where eight classes each keep slabs
// and P caches; the replayed traces' peaks were within a page or two
// either way.
const fitFrom = 1024 + 1

// DefaultColdBlocks is the zero Config's ColdBlocks: a small size class
// takes its first slab only once it has asked for this many blocks (and
// holds enough of them: turnsHot); until then the best-fit heap serves them
// (packed among blocks of every size, 8 bytes of header each, 32 at
// least, instead of in a slab of their own). A program touches many
// classes it asks only a few blocks of — at cc1's peak, 13 classes had
// 16 live blocks or fewer, each on a page of its own, 40 KB of holes —
// and a class in steady use has soon asked for more. The count never
// goes down: once hot, a class stays on its slabs and its P caches. A
// Local's bins refill from the slabs at once: a Local is for a class in
// steady use. Measured on the replayed traces, peak resident (bytes), with
// 32, 64, 128, 256 and 1024: cc1 3,780,608, 3,776,512, 3,776,512,
// 3,776,512, 3,788,800; diff 15,581,184, 15,577,088, 15,572,992,
// 15,572,992, 15,568,896; amptjp-bal 2,048,000, 2,048,000, 2,048,000,
// 2,039,808, 2,035,712; binary2-bal 221,184, 225,280, 245,760, 253,952,
// 385,024 (glibc's 368,640: binary2-bal's blocks of 16 and 112 bytes,
// thousands of each, in the heap's chunks of 64 and 128 until the class
// turns hot). Those runs had the heap's boundary (fitFrom) at 2 KiB; at
// 1 KiB, 128 gave cc1 3,780,608, diff 15,572,992, amptjp-bal 2,048,000,
// binary2-bal 245,760 (medians of five). With the heap's chunks 32 bytes
// at least and a medium class's exact size cold too, 128, 256, 288 and
// 384 give cc1 3,747,840, 3,743,744, 3,747,840, 3,760,128 (glibc's
// 3,743,744); amptjp-bal 2,043,904, 2,035,712, 2,031,616, 2,031,616
// (glibc's 2,031,616); binary2-bal 241,664, 245,760, and 290,816 at 512;
// diff 15,568,896 each (glibc's), the built-in workloads alike (medians of
// five); the live-set benchmark 465 and 471 instructions an operation over
// its first million operations, 448 and 447 over the second (128, 256).
const DefaultColdBlocks = 256

// coldClass says whether a request of n bytes of class c, aligned to
// align, that the slabs would serve goes to the best-fit heap (counting
// it), its class being cold: a small request, or a medium class's exact
// size up to coldExactTo, but not a request of a hot medium class
// (noteInUse). A class's first Config.ColdBlocks requests (coldN: 0
// without a best-fit heap) are cold; past them, the class turns hot, for
// good, once it holds enough blocks in use to fill half of a first slab
// (a slab would be worth its page), or at twice ColdBlocks whatever it
// holds (turnsHot).
func (a *Allocator) coldClass(c int, n, align uintptr) bool {
	if align > 16 || !a.mayBeCold(c, n) {
		return false
	}
	if k := a.cold[c].Add(1); k > a.coldN && a.turnsHot(c, k) {
		a.hot[c].Store(true)
		return false
	}
	return true
}

// mayBeCold says whether a request of n bytes of class c may be cold:
// there are cold classes, c has not turned hot, and n is not a size of a
// hot medium class or above coldExactTo.
func (a *Allocator) mayBeCold(c int, n uintptr) bool {
	return a.coldN != 0 && !a.hot[c].Load() && n <= coldExactTo && !a.hotSize(n)
}

// turnsHot says whether class c, past its first ColdBlocks requests,
// turns hot at its k-th: at twice ColdBlocks, or once the heap holds
// half a first slab's blocks of it in use. A class whose blocks die
// young stays in the heap, where their chunks serve any size once freed:
// on amptjp-bal, class 80 turned hot at its 257th request, near the end
// of its use, and its slab held a page at the trace's peak with no block
// of it live, one page above glibc's peak (medians of five, Config{}:
// 2,035,712 bytes, 2,031,616 so, glibc's 2,031,616). Measured: half a
// first slab and twice ColdBlocks left every replayed trace at or below
// glibc's peak and the service workload at 7.97 MiB (7.90 before,
// glibc's 8.48); a fixed 64 blocks and four times ColdBlocks kept cc1 and
// amptjp-bal there but took the service workload to 10.90 MiB (blocks of
// classes kept cold longer broke the heap's free space up); 16 blocks
// and sixteen times left amptjp-bal at 2,052,096.
func (a *Allocator) turnsHot(c int, k uint32) bool {
	return uint64(k) > 2*uint64(a.coldN) || a.coldLive(c) >= a.slabs.FirstBlocks(c)/2
}

// coldLive returns how many blocks of cold class c the heap holds in use
// (its chunks: room for the class's size), as far as the heap counts them
// (fit.CountTo); a class whose chunks it does not count (the exact sizes
// 2048 to coldExactTo) reads as many.
func (a *Allocator) coldLive(c int) int {
	hi := fit.ChunkSize(slab.ClassSize(c))
	if hi > fit.CountTo {
		return math.MaxInt
	}
	lo := uintptr(0)
	if c > 0 {
		lo = fit.ChunkSize(slab.ClassSize(c-1) + 1)
	}
	return a.fit.InUse(lo, hi)
}

// coldNow says whether a request of n bytes of class c would go to the
// heap now, without counting it (coldClass counts and decides; BlockSize
// asks).
func (a *Allocator) coldNow(c int, n uintptr) bool {
	if !a.mayBeCold(c, n) {
		return false
	}
	k := a.cold[c].Load() + 1
	return k <= a.coldN || !a.turnsHot(c, k)
}

// coldExactTo is the largest medium class whose exact size (2048, 4096,
// 8192) is cold as a small class is, its first ColdBlocks requests the
// best-fit heap's, each in a chunk of that size, 8 bytes more: a class
// asked for a few blocks held a slab of 4 to 32 KiB for them (at the
// spike workload's peak, 16 classes of 1–14 KiB held a slab each for 1 to
// 5 blocks: 300 KB of slabs, 60 KB of it resident; at cc1's, the classes
// 1152, 1280, 2048 and 4096 held 48 KiB for 3 blocks). Up to 8 KiB, cc1's
// peak resident went 3.78 -> 3.75 MB and diff's and the rest stayed within a page;
// up to 16 KiB or 32 KiB, random-bal's went 15.70 -> 15.81 MB (its few
// blocks of a class's exact size above 8 KiB, placed among its others,
// left the heap a free chunk too few; glibc's 15.78).
const coldExactTo = 8 << 10

// hotSize says whether n is a size of a hot medium class (noteInUse).
func (a *Allocator) hotSize(n uintptr) bool {
	return n >= fitFrom && n <= hotTo && a.steps.t[(n+7)>>3&hotMask].Load() == slabAll
}

func (a *Allocator) route(n uintptr) route {
	switch {
	case a.policy == PolicyMmap, a.policy == PolicyThreshold && n >= a.mmapFrom.Load():
		return toMapping
	case n < fitFrom:
		return toSlab
	case n <= slab.MaxSize:
		if a.fitted(n) {
			return toFit
		}
		return toSlab
	}
	return toMid
}

// fitted says whether the best-fit heap serves a request of n bytes,
// fitFrom <= n <= slab.MaxSize, as things stand (steps.slab).
func (a *Allocator) fitted(n uintptr) bool {
	return a.fit != nil && !a.steps.slab(uint(n))
}

// slabCached says whether a request of n bytes is served from bins (a P's
// cache, a Local's): below limit (the Allocator's smallLimit, which a
// Local copies: 0 where there is no best-fit heap, under Debug and
// PolicyMmap), and small, or a medium size the slabs serve (steps.slab).
// A compare for a small size, one table load for a medium one: the fast
// paths' test.
func slabCached(n, limit uint, st *steps) bool {
	return n < limit && (n < fitFrom || st.serves(n))
}

// serves says whether the slabs serve a medium request of n bytes,
// fitFrom <= n <= slab.MaxSize: below below, or as slab says.
func (st *steps) serves(n uint) bool { return n < uint(st.below.Load()) || st.slab(n) }

// steps says, for each 8-byte step of a medium request's size up to
// hotTo (the step (c-8, c] at index c/8, as fitSize), which requests of
// the step the slabs serve: every one (slabAll: the step's class is
// hot), those of n&7 == 0 (1: the step ends at a class's exact size,
// which takes no header and no rounding in a slab: fitSize), or none (0:
// the best-fit heap's). One atomic load, compared with n&7; a power of
// two of them, so that the index masked with hotMask needs no bounds
// check. Each Allocator has its own: a class turns hot for the Allocator
// whose heap held it (noteInUse). below is where the first size the
// slabs may not serve is: fitFrom, or past the last of the classes above
// it that are all hot, so that a program whose medium classes are hot
// pays a compare with it for them, not the table's load (a small size
// is tested against fitFrom first, a constant: serves).
type steps struct {
	below atomic.Uintptr
	t     [hotMask + 1]atomic.Uint32
	mu    sync.Mutex // noteInUse's
}

const (
	slabAll = 8 // more than any n&7
	hotMask = 511
)

const _ = uint(hotMask+1-hotTo/8-1) + uint(2*(hotTo/8)-hotMask-1) // hotTo/8 < hotMask+1 <= 2*(hotTo/8): no larger than it needs

// init sets the steps as a new Allocator has them: no class hot.
func (st *steps) init() {
	st.below.Store(fitFrom)
	for i := range st.t {
		switch {
		case uint(i)*8 < fitFrom:
			st.t[i].Store(slabAll) // never asked: small sizes are the slabs' (slabCached)
		case uint(i) <= hotTo/8 && !fitSize[i]:
			st.t[i].Store(1)
		}
	}
}

// slab says whether the slabs serve a request of n bytes, fitFrom <= n
// <= slab.MaxSize: a size of a hot class (noteInUse), or a class's exact
// size; every other size a few bytes below a class's (4095, 8190) is the
// best-fit heap's too: its slab block would waste only those bytes, but
// it would sit in a slab of its own class, of no use to any other size
// and unable to merge with its neighbours, where the heap's chunks of a
// 4095-byte pair merge into the home of an 8190-byte one (coalescing-bal:
// 16 KiB with the pair in slabs, 12 KiB in the heap, as glibc).
func (st *steps) slab(n uint) bool {
	if n <= hotTo {
		return st.t[(n+7)>>3&hotMask].Load() > uint32(n&7)
	}
	return !fitSize[(n+7)>>3] && n&7 == 0
}

// hotTo is the largest medium request whose size class can turn hot
// (noteInUse), and hotChunks the chunks of a class the best-fit heap
// holds in use at once that make it hot.
//
// Between 1 and 2 KiB the heap's chunk (8 bytes of header, rounded to 16)
// wastes less than a class's block (classes an eighth of an octave apart:
// about 6%), and a freed chunk serves any size; but a slab block is
// handed out and taken back by a P's cache in about half the
// instructions of a P's front (fit's front.go), which must prove without
// the lock that what it is given is a block in use. So a class there is
// the heap's while it has few blocks live (requests of every size that
// come and go, a service's buffers: the heap keeps them compact), and
// turns to its slabs, for good, once the heap held hotChunks of its
// chunks in use at once (thousands of one class: a class the program
// lives on, where a slab's rounding is the price of the fastest path).
// Measured (cachegrind), a live set of 100,000 blocks of 16 B–2 KiB, one
// free and one malloc an operation (BenchmarkLiveSet), instructions an
// operation over its first million operations and its second: 595 and
// 566 with these classes the heap's for good; 462 and 447 so (the first
// million frees the blocks the heap served before the classes turned
// hot); 450 and 443 with them on their slabs from the start; 438 and 437
// before the heap served medium sizes. With hotChunks 512, 2048 and 4096:
// 457, 473 and 504 over the first million. Peak resident, so and with
// them on their slabs from the start (glibc's): the service workload 7.97
// and 8.59 MiB (8.48), the spike 64.59 and 64.80 (64.33); the replayed
// traces' within a page either way.
const (
	hotTo     = 2048
	hotChunks = 1024
)

// noteInUse makes the class of a medium request of n bytes (fitFrom <=
// n <= hotTo) hot if the best-fit heap, which just served it, holds
// a.hotAt of the class's chunks in use: the chunks of its requests, those
// of the sizes (prev, c] (the chunk of the class below's largest request
// is counted for both).
func (a *Allocator) noteInUse(n uintptr) {
	k := slab.SizeClass(n)
	c, prev := slab.ClassSize(k), slab.ClassSize(k-1)
	st := &a.steps
	if a.hotSize(c) || a.fit.InUse(fit.ChunkSize(prev+1), fit.ChunkSize(c)) < a.hotAt {
		return // hot already (a call that raced the one that made it so), or not yet
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for i := prev/8 + 1; i <= c/8; i++ {
		st.t[i].Store(slabAll)
	}
	b := st.below.Load()
	for b <= hotTo && st.t[(b+7)>>3].Load() == slabAll {
		b = (b+7)&^7 + 1 // the next step's first size
	}
	st.below.Store(b)
}

// hotAtCap says whether a request of n bytes aligned to align, which a
// medium class's slabs failed with err, goes to the best-fit heap: at the
// cap (Config.Limit), a hot class's slabs may find no room and be unable
// to take another slab where the heap, which served the class before it
// turned hot, still has free chunks it fits (as a cold small class at the cap
// goes to its slabs: place). The block has room for its class's size,
// which BlockSize says; UsableSize may say a little more, as for any
// block of the heap. Only a hot class's, and only at the cap: a class's
// exact size (2048) was its slabs' before any class turned hot, and a
// kernel's refusal without a cap is the caller's to see.
func (a *Allocator) hotAtCap(n, align uintptr, err error) bool {
	return err != nil && a.fit != nil && align <= 16 && a.hotSize(n) && a.region.Limit() != 0 && errors.Is(err, ErrOutOfMemory)
}

const _ = uint(fit.CountTo - hotTo) // the heap counts the chunks of every size that can turn hot

// fitSize[(n+7)/8] is false for the 8-byte step (c-8, c] that ends at a
// class's size c, fitFrom <= n <= slab.MaxSize, true for every other:
// one load on Malloc's fast path, and n&7 == 0 in such a step is c itself
// (classes are multiples of 16), the one size there a slab serves
// (fitted). It is where the class's block is no larger than the heap's
// chunk less its header, which is the same for every n of a step (chunks
// round n+8 to 16), so the table is exact.
var fitSize = func() (t [slab.MaxSize/8 + 1]bool) {
	for n := uintptr(fitFrom); n <= slab.MaxSize; n++ {
		t[(n+7)>>3] = slab.ClassSize(int(slab.ClassOf(n))) > fit.BlockSize(n)
	}
	return t
}()

// alloc returns a block of n bytes aligned to align (a power of two, at
// least 16), and whether its memory is known to be zero; cacheTried says
// the caller tried this P's cache already (smallFast). A sampled block is
// recorded for the heap profile (profile.go) before it is handed out.
func (a *Allocator) alloc(size int, align uintptr, cacheTried bool) (unsafe.Pointer, bool, error) {
	p, zero, sampled, err := a.place(size, align, cacheTried)
	if sampled {
		a.prof.record(p, size)
	}
	return p, zero, err
}

// place finds room for a block and says whether it is to be sampled.
func (a *Allocator) place(size int, align uintptr, cacheTried bool) (p unsafe.Pointer, zero, sampled bool, err error) {
	if size < 0 {
		return nil, false, false, fmt.Errorf("%w: %d", ErrInvalidSize, size)
	}
	if err := a.usable(); err != nil {
		return nil, false, false, err
	}
	n := uintptr(size)
	r := a.route(n)
	if r != toMapping && a.policy == PolicyThreshold && align > max(a.mmapFrom.Load(), maxRegionAlign) {
		// An alignment past the threshold (and 1 MiB): in the region its
		// padding would be committed (the break moves over it); a
		// mapping's padding is only reserved address space, cut off at
		// once.
		r = toMapping
	}
	if a.debug {
		return a.debugAlloc(r, n, align)
	}
	if r == toFit {
		if align <= 16 {
			return a.fitBlock(n, 0)
		}
		r = toSlab // an aligned medium block: a class whose blocks are aligned
	}
	if r == toSlab {
		if c := a.smallClass(n, align); c >= 0 {
			if a.coldClass(c, n, align) {
				p, zero, sampled, err := a.fitBlock(n, slab.ClassSize(c))
				if n >= fitFrom || !errors.Is(err, ErrOutOfMemory) {
					// a class's exact medium size: its slab block would have
					// 8 bytes less than the heap's chunk, what BlockSize says
					return p, zero, sampled, err
				}
				// at the cap (Config.Limit): the class's slabs may have room
				// (its block as large as the heap's: the class's size)
			}
			if cacheTried {
				p, zero, sampled, err = a.slabs.Refill(c, n)
			} else {
				p, zero, sampled, err = a.slabs.Alloc(c, n)
			}
			if a.hotAtCap(n, align, err) {
				return a.fitBlock(n, slab.ClassSize(c))
			}
			return p, zero, sampled, err
		}
		r = toMid
	}
	if r == toMid {
		return a.midBlock(n, 0, align)
	}
	return a.mappedBlock(n, 0, align)
}

// maxRegionAlign is the largest alignment PolicyThreshold serves from the
// region whatever the threshold: up to it, the padding (reused as free
// runs) costs at most this much committed memory.
const maxRegionAlign = 1 << 20

// fitBlock serves a medium block of n bytes from the best-fit heap, with
// room for least bytes at least (0: n; a cold class's block: the class's
// size, which BlockSize reports): this P's front, else the heap
// (heapBlock).
func (a *Allocator) fitBlock(n, least uintptr) (p unsafe.Pointer, zero, sampled bool, err error) {
	if p, sampled = a.fit.AllocFast(n, least); p == nil {
		return a.heapBlock(n, least)
	}
	if sampled {
		a.prof.sampledLarge() // marked by AllocFast
	}
	return p, false, sampled, nil
}

// heapBlock serves a medium block of n bytes under the heap's lock: for a
// caller that found this P's front without one. (fitMalloc writes it out
// for least 0, a call level less: the two are kept in step.)
func (a *Allocator) heapBlock(n, least uintptr) (p unsafe.Pointer, zero, sampled bool, err error) {
	if p, sampled, err = a.fit.AllocSampled(n, least); err != nil {
		return nil, false, false, heapErr(n, err)
	}
	if least == 0 && n <= hotTo {
		a.noteInUse(n)
	}
	if sampled {
		a.prof.sampledLarge() // marked by the heap, under its lock
	}
	return p, false, sampled, nil
}

// heapErr is the error of the heap's refusal of n bytes: its own ErrClosed
// as it is, anything else wrapped.
func heapErr(n uintptr, err error) error {
	if err == ErrClosed {
		return err
	}
	return fmt.Errorf("alloc: %d bytes from the best-fit heap: %w", n, err)
}

// midBlock serves a mid-size block of n bytes (and room more, for Debug's
// canary) with a page run of the region.
func (a *Allocator) midBlock(n, room, align uintptr) (p unsafe.Pointer, zero, sampled bool, err error) {
	pages := max((n+room+a.page-1)/a.page, 1) // n < 2^63: no overflow
	run, zero, err := a.region.Alloc(pages, align, arena.KindMid, n)
	if err != nil {
		return nil, false, false, fmt.Errorf("alloc: %d bytes from the region: %w", n, err)
	}
	return a.region.Ptr(run.Start()), zero, a.prof.sampleLarge(n), nil
}

// mappedBlock serves n bytes (and room more) with a mapping of their own.
func (a *Allocator) mappedBlock(n, room, align uintptr) (p unsafe.Pointer, zero, sampled bool, err error) {
	if p, err = a.large.Alloc(n, room, align); err != nil {
		return nil, false, false, fmt.Errorf("alloc: %d bytes in a mapping: %w", n, err)
	}
	return p, true, a.prof.sampleLarge(n), nil
}

// smallClass returns the size class for n bytes aligned to align, or -1.
func (a *Allocator) smallClass(n, align uintptr) int {
	switch {
	case align <= 16:
		return slab.SizeClass(n)
	case align <= a.page:
		return slab.AlignedClass(n, align)
	}
	return -1
}

// smallFast is the small Malloc's fast path: a block popped from this P's
// cache, or nil (not small, not served from slabs, the cache is empty, or
// the block is the heap-profile sample). tried says it looked in the
// cache, so the slow path calls Refill, which pops the sample or refills.
func (a *Allocator) smallFast(n int) (p unsafe.Pointer, tried bool) {
	if !slabCached(uint(n), a.smallLimit, &a.steps) {
		return nil, false
	}
	return a.slabs.AllocFast(slab.ClassOf(uintptr(n)), uintptr(n)), true
}

func bytesAt(p unsafe.Pointer, n int) []byte { return unsafe.Slice((*byte)(p), n) }

// Malloc returns n bytes, len == cap == n, 16-byte aligned, contents
// unspecified. Malloc(0) returns a non-nil empty slice that must be freed
// like any other.
func (a *Allocator) Malloc(n int) ([]byte, error) {
	if uint(n) < a.smallLimit {
		// a small size's test is one compare, and its branch is the
		// medium slab one's, repeated: joined (n < fitFrom ||
		// st.serves(n)), the compiler makes the test's bool, around the
		// table's atomic load, and tests it again, five instructions more
		if uint(n) < fitFrom {
			if p := a.slabs.AllocFast(slab.ClassOf(uintptr(n)), uintptr(n)); p != nil {
				return bytesAt(p, n), nil
			}
			return a.allocGated(n, 16, true, false)
		}
		if a.steps.serves(uint(n)) {
			if p := a.slabs.AllocFast(slab.ClassOf(uintptr(n)), uintptr(n)); p != nil {
				return bytesAt(p, n), nil
			}
			return a.allocGated(n, 16, true, false)
		}
		if p, sampled := a.fit.AllocFast(uintptr(n), 0); p != nil { // this P's front: no lock, no gate
			if sampled { // marked by AllocFast: the region may be unmapped from here on
				a.prof.sampledLarge()
				a.prof.record(p, n)
			}
			return bytesAt(p, n), nil
		}
		return a.fitMalloc(n)
	}
	return a.allocGated(n, 16, false, false)
}

// fitMalloc is Malloc of a medium block the best-fit heap serves
// (fitted), once this P's front had none: place's path for it, without
// the routing, and without looking in the front again. It does not enter
// the gate: the heap's lock orders it with Close (the heap refuses once
// closed, before the region goes), and it touches no other memory of the
// allocator's; it delivers the reports the heap found, as leave would
// (leaveOutside).
func (a *Allocator) fitMalloc(n int) ([]byte, error) {
	// heapBlock's work, its call level less (cachegrind: a 3000-byte pair
	// 1012 -> 988 instructions)
	p, sampled, err := a.fit.AllocSampled(uintptr(n), 0)
	if err != nil {
		err = heapErr(uintptr(n), err)
		a.leaveOutside(nil, err)
		return nil, err
	}
	if uintptr(n) <= hotTo {
		a.noteInUse(uintptr(n))
	}
	if sampled {
		a.prof.sampledLarge() // marked by the heap, under its lock
		a.prof.record(p, n)
	}
	b := bytesAt(p, n)
	a.leaveOutside(b, nil)
	return b, nil
}

// leaveOutside is leave for a call outside the gate that went to the
// best-fit heap's lock (fitMalloc, fitFree), with the block it was handing
// out: it delivers the reports queued, unless the heap refused the call
// (err is the heap's own ErrClosed, unwrapped): such a call found nothing,
// and the queue may hold what Close found.
func (a *Allocator) leaveOutside(b []byte, err error) {
	if a.reports.n.Load() != 0 && err != ErrClosed { // the load first: the comparison of interfaces costs more
		a.deliver(b)
	}
}

// allocGated is the slow path of every allocation, inside the gate
// (gate.go): a block of n bytes aligned to align, cleared if zeroed and
// not known to be zero.
func (a *Allocator) allocGated(n int, align uintptr, cacheTried, zeroed bool) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("%w: %d", ErrInvalidSize, n)
	}
	if !a.enter() {
		return nil, ErrClosed
	}
	p, zero, err := a.alloc(n, align, cacheTried)
	b := blockAt(p, n, zeroed, zero, err)
	a.leave(b)
	return b, err
}

// blockAt is the end of an allocation: the block at p as n bytes, cleared
// if zeroed and not known zero; nil if the allocation failed (err).
func blockAt(p unsafe.Pointer, n int, zeroed, zero bool, err error) []byte {
	if err != nil {
		return nil
	}
	b := bytesAt(p, n)
	if zeroed && !zero {
		clear(b)
	}
	return b
}

// Calloc is Malloc with the memory zeroed. Memory known to be fresh from
// the kernel (a new mapping, pages never used since the break moved up or
// since they were released) is not cleared again. It always enters the
// gate: it writes the block before returning it.
func (a *Allocator) Calloc(n int) ([]byte, error) {
	if !a.enter() {
		return nil, ErrClosed
	}
	p, tried := a.smallFast(n)
	zero := false // a cached block was used before
	var err error
	if p == nil {
		p, zero, err = a.alloc(n, 16, tried)
	}
	b := blockAt(p, n, true, zero, err)
	a.leave(b)
	return b, err
}

// AlignedAlloc returns n bytes starting at a multiple of align, which must
// be a power of two (any size the reservation or the kernel allows).
func (a *Allocator) AlignedAlloc(align, n int) ([]byte, error) {
	if align <= 0 || align&(align-1) != 0 {
		return nil, fmt.Errorf("%w: alignment %d is not a power of two", ErrInvalidSize, align)
	}
	return a.allocGated(n, max(uintptr(align), 16), false, false)
}

func addrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// Free gives b back. b must be a slice returned by this Allocator (its
// length may have been cut, not its start). Free(nil) does nothing. A bad
// free returns ErrDoubleFree or ErrInvalidFree and changes nothing. A
// slice of capacity 0 frees only a block of 0 bytes: b[len(b):] has
// capacity 0, and Go keeps the block's start in it rather than point past
// the end, so it would name the whole block; it is refused with
// ErrInvalidFree.
func (a *Allocator) Free(b []byte) error {
	if b == nil {
		return nil
	}
	if cap(b) == 0 {
		return a.freeEmpty(b)
	}
	// the fast path: a small block, and this P's cache has room
	p := unsafe.Pointer(unsafe.SliceData(b))
	run := a.pages.Lookup(uintptr(p))
	if run != nil && run.Kind() == arena.KindSlab && a.slabs.FreeFast(run, p) {
		return nil
	}
	if run != nil && run.Kind() == arena.KindFit {
		// a medium block: into this P's front (no lock; a sampled one
		// goes to the heap's Free, which drops its record), else the lock
		// (called here, not in fitFree: a call level more costs a 1500 B
		// pair 12 instructions, cachegrind)
		if a.fit.FreeFast(run, uintptr(p)) {
			return nil
		}
		_, err := a.fit.Free(run, uintptr(p)) // fitFree's body: a call level less
		a.leaveOutside(nil, err)
		return err
	}
	if !a.enter() {
		return ErrClosed
	}
	err := a.free(b)
	a.leave(nil)
	return err
}

// fitFree is Free of a block of the best-fit heap that this P's front did
// not take: freeRegion's path for it, the run known. Like fitMalloc, it
// does not enter the gate.
func (a *Allocator) fitFree(run *arena.Run, p unsafe.Pointer) error {
	_, err := a.fit.Free(run, uintptr(p))
	a.leaveOutside(nil, err)
	return err
}

// freeEmpty frees a slice of capacity 0: a block of 0 bytes, or refused.
func (a *Allocator) freeEmpty(b []byte) error {
	if !a.enter() {
		return ErrClosed
	}
	err := a.emptyOnly(b)
	if err == nil {
		err = a.free(b)
	}
	a.leave(nil)
	return err
}

// emptyOnly refuses a slice of capacity 0 that starts a block of more than
// 0 bytes (b[len(b):], whose start Go leaves at the block's).
func (a *Allocator) emptyOnly(b []byte) error {
	if cap(b) != 0 {
		return nil
	}
	if blk, err := a.find(addrOf(b)); err == nil && blk.requested > 0 {
		return fmt.Errorf("%w: %#x: a slice of capacity 0 of a %d-byte block (b[len(b):] keeps the block's start)",
			ErrInvalidFree, addrOf(b), blk.requested)
	}
	return nil
}

// freeAny is Free inside the gate: the fast path, then free.
func (a *Allocator) freeAny(b []byte) error {
	p := unsafe.Pointer(unsafe.SliceData(b))
	if run := a.pages.Lookup(uintptr(p)); run != nil && run.Kind() == arena.KindSlab && a.slabs.FreeFast(run, p) {
		return nil
	}
	return a.free(b)
}

// free is Free's slow path, inside the gate.
func (a *Allocator) free(b []byte) error {
	if err := a.usable(); err != nil {
		return err
	}
	p := addrOf(b)
	if a.debug {
		return a.debugFree(p)
	}
	if a.region.Contains(p) {
		return a.freeRegion(p)
	}
	return a.freeMapped(p)
}

// freeMapped unmaps a large block (Debug: quarantines it) and lets the
// dynamic threshold slide.
func (a *Allocator) freeMapped(p uintptr) error {
	a.prof.freeingLarge(p)
	m, err := a.large.Free(p)
	if err != nil {
		return err
	}
	a.slide(m.Len)
	return nil
}

// regionRun returns the run in use that p, an address of the region,
// starts: a slab (p still to be checked by the slab layer) or a mid-size
// block. Free memory is ErrDoubleFree; the inside of a block, or a
// request arena's page (scratch.go), ErrInvalidFree.
func (a *Allocator) regionRun(p uintptr) (*arena.Run, error) {
	run := a.region.Lookup(p)
	switch {
	case run == nil || run.Kind() == arena.KindFree:
		return nil, fmt.Errorf("%w: %#x is in free memory of the region", ErrDoubleFree, p)
	case run.Kind() == arena.KindScratch:
		return nil, fmt.Errorf("%w: %#x is in a request arena (Scratch): its objects are freed with it", ErrInvalidFree, p)
	case run.Kind() == arena.KindMid && p != run.Start():
		return nil, fmt.Errorf("%w: %#x is inside a block that starts at %#x", ErrInvalidFree, p, run.Start())
	}
	return run, nil
}

func (a *Allocator) freeRegion(p uintptr) error {
	run, err := a.regionRun(p)
	if err != nil {
		return err
	}
	switch run.Kind() {
	case arena.KindSlab:
		_, err := a.slabs.Free(run, p) // a sampled block's record goes in the slab's onFree hook
		return err
	case arena.KindFit:
		_, err := a.fit.Free(run, p) // a sampled block's record goes in the heap's OnFree hook
		return err
	}
	a.prof.freeingLarge(p)
	if err := a.region.Free(run); err != nil {
		if errors.Is(err, arena.ErrNotLive) {
			return fmt.Errorf("%w: block at %#x", ErrDoubleFree, p)
		}
		return ErrClosed
	}
	return nil
}

// slide is glibc's dynamic threshold: freeing a mapped block larger than
// the threshold (and at most 32 MiB) raises the threshold to its size and
// the trim threshold to twice that.
func (a *Allocator) slide(size uintptr) {
	if !a.dynamic || size <= a.threshold.Load() || size > MaxDynamicThreshold {
		return
	}
	a.threshold.Store(size)
	a.mmapFrom.Store(size + 1)
	a.trim.Store(int64(2 * size))
	a.region.SetTrimThreshold(2 * size)
	if a.fit != nil {
		a.fit.SetTrimThreshold(2 * size)
	}
}

// fitTrimsLater says whether the best-fit heap leaves its runs' tops to
// the purge's timer (fit.Options.TrimLater): so when the purge waits (a
// delay), a free that leaves a run's last free chunk past the trim
// threshold arms the timer instead of paying the madvise itself, and the
// chunk's pages past TopPad go back within two delays (the purge's pass
// trims a top it found past the threshold at two passes in a row, busy
// at its low end or not; an unchanged free chunk of 64 KiB or more, the
// top's included, it releases whole, TopPad and all). A program that
// frees a heap and builds it again within the delay faults nothing back
// in; glibc's tcache and fast bins, which hold the chunks beside its
// top, have the same effect. Replaying random-bal, the madvise at free
// took 9% of the replay's samples and an 8.7 MB one ended it; the replay
// went from 1.26 to 1.14 times glibc's time, amptjp-bal's from 1.25 to
// 1.09 (medians of 15 and 21, alternated). The region's own top, the
// break, still moves down as soon as it is free. (PurgeNever is
// negative, PurgeImmediately a nanosecond: purgeDelay makes both 0.)
func fitTrimsLater(delay time.Duration) bool {
	return purgeDelay(delay) > 0
}

// block describes a live block found from its address.
type block struct {
	run       *arena.Run          // in the region
	mapping   *largealloc.Mapping // or its own mapping
	size      uintptr             // usable
	requested uintptr
}

// find validates p as the start of a live block and describes it.
func (a *Allocator) find(p uintptr) (block, error) {
	if a.region.Contains(p) {
		run, err := a.regionRun(p)
		if err != nil {
			return block{}, err
		}
		switch run.Kind() {
		case arena.KindSlab:
			size, req, err := a.slabs.Usable(run, p)
			return block{run: run, size: size, requested: req}, err
		case arena.KindFit:
			size, req, err := a.fit.Usable(run, p)
			if err == nil && req < fitFrom {
				// a cold class's block (Config.ColdBlocks): the class's size, as
				// BlockSize says, which its chunk has room for
				size = slab.ClassSize(slab.SizeClass(req))
			}
			return block{run: run, size: size, requested: req}, err
		}
		used, size, live := a.region.Used(run)
		if !live {
			return block{}, fmt.Errorf("%w: block at %#x", ErrDoubleFree, p)
		}
		return block{run: run, size: size, requested: used}, nil
	}
	m := a.large.Lookup(p)
	if m == nil {
		if a.large.Quarantined(p) {
			return block{}, fmt.Errorf("%w: mapping at %#x (freed, still in quarantine)", ErrDoubleFree, p)
		}
		return block{}, fmt.Errorf("%w: %#x is not a live block of this allocator", ErrInvalidFree, p)
	}
	return block{mapping: m, size: m.Len, requested: m.Requested}, nil
}

// UsableSize returns how many bytes the block b starts could hold (at
// least len(b)), or 0 if b is not a live block of this allocator.
func (a *Allocator) UsableSize(b []byte) int {
	if b == nil || a.usable() != nil || !a.enter() {
		return 0
	}
	defer a.leave(nil)
	blk, err := a.find(addrOf(b))
	if err != nil {
		return 0
	}
	if a.debug {
		return int(blk.requested) // the rest is the canary
	}
	return int(blk.size)
}

// Realloc resizes b to n bytes, keeping its first min(len(b), n) bytes. It
// works in place when the block's class, run or mapping has room (a run
// can grow into free pages after it, a mapping with mremap); otherwise it
// moves the block. Without mremap (not Linux: Stats().Platform.Mremap), a
// mapped block that changes size always moves: map, copy, unmap.
// Realloc(nil, n) is Malloc(n). On error b is unchanged and still live.
func (a *Allocator) Realloc(b []byte, n int) ([]byte, error) {
	if b == nil {
		return a.Malloc(n)
	}
	if n < 0 {
		return nil, fmt.Errorf("%w: %d", ErrInvalidSize, n)
	}
	if err := a.usable(); err != nil {
		return nil, err
	}
	if !a.enter() {
		return nil, ErrClosed
	}
	nb, err := a.realloc(b, n)
	moved := nb // freed if a corruption handler panics (gate.go)
	if err != nil || addrOf(nb) == addrOf(b) {
		moved = nil // b, resized in place, stays the caller's
	}
	a.leave(moved)
	return nb, err
}

// realloc is Realloc inside the gate.
func (a *Allocator) realloc(b []byte, n int) ([]byte, error) {
	p := addrOf(b)
	un := uintptr(n)
	r := a.route(un)
	blk, err := a.find(p)
	if err != nil {
		return nil, err
	}
	if cap(b) == 0 && blk.requested > 0 {
		return nil, a.emptyOnly(b)
	}
	switch {
	case a.debug:
		// always move: the old block's canary is checked as it is freed
	case blk.run != nil && blk.run.Kind() == arena.KindSlab && r == toSlab:
		ok, _, err := a.slabs.Resize(blk.run, p, un)
		if err != nil {
			return nil, err
		}
		if ok {
			return bytesAt(unsafe.Pointer(unsafe.SliceData(b)), n), nil
		}
	case blk.run != nil && blk.run.Kind() == arena.KindFit && (r == toFit || r == toSlab):
		// glibc's way: shrink by splitting, grow into the free chunk after;
		// to a small size, with room for its class's size, as a cold
		// class's block (Config.ColdBlocks: BlockSize and UsableSize say so)
		least := uintptr(0)
		if r == toSlab {
			least = slab.ClassSize(slab.SizeClass(un))
		}
		ok, err := a.fit.Resize(blk.run, p, un, least)
		if err != nil {
			return nil, err
		}
		if ok {
			return bytesAt(unsafe.Pointer(unsafe.SliceData(b)), n), nil
		}
	case blk.run != nil && blk.run.Kind() == arena.KindMid && (r == toMid || r == toMapping && a.policy == PolicyThreshold):
		// Past the threshold too, as glibc's realloc grows a heap chunk
		// in place (into the free chunk after it, or the top) before it
		// moves it: a block the program grows little by little past the
		// threshold stays where it is instead of taking a mapping while
		// the region keeps the pages it left.
		pages := (un + a.page - 1) / a.page
		if a.region.Resize(blk.run, pages) {
			a.region.SetUsed(blk.run, un)
			return bytesAt(unsafe.Pointer(unsafe.SliceData(b)), n), nil
		}
	case blk.mapping != nil && r == toMapping && sys.HasMremap: // else map, copy, unmap below
		q, err := a.large.Resize(p, un)
		if err != nil {
			return nil, err
		}
		a.prof.moved(p, uintptr(q)) // mremap may move the mapping
		return bytesAt(q, n), nil
	}
	q, tried := a.smallFast(n)
	if q == nil {
		if q, _, err = a.alloc(n, 16, tried); err != nil {
			return nil, err
		}
	}
	nb := bytesAt(q, n)
	copy(nb, b[:min(len(b), n)])
	if err := a.freeAny(b); err != nil {
		_ = a.freeAny(nb)
		return nil, err
	}
	return nb, nil
}

// Trim gives free memory back to the kernel, like malloc_trim(0): cached
// empty slabs go back to the region first, then every free page run is
// released with madvise and the break moves down to the last block in
// use. It returns the bytes given back, each once: a byte committed
// before the call and no longer after it (the break moved down past it,
// a quarantined mapping was unmapped), whether it had been released
// before or not, and a byte still committed that the allocator did not
// know to be released (Stats' ReleasedBytes and FitReleasedBytes) and
// released now. So, nothing else running, with C the committed bytes and
// R the known released ones before (b) and after (a):
// C_b-C_a + R_a-R_b <= Trim() <= C_b-C_a + R_a, and Trim() is at least
// the drop of the measured Resident; when nothing stays live, it is C_b.
// Every layer gives the region what it empties and counts what it
// releases itself; the region, holding the runs freed meanwhile, gives
// back and counts its free runs and its top once (arena.Region.TrimAfter;
// TestTrimCountsEverything, TestTrimCountsQuarantinesAndRuns).
func (a *Allocator) Trim() int {
	if a.usable() != nil || !a.enter() {
		return 0
	}
	defer a.leave(nil)
	return int(a.region.TrimAfter(func() uintptr {
		a.slabs.Trim()
		// Freed mappings the map-count limit kept (largealloc): their
		// pages were released and their bytes left the budget when they
		// were freed, so unmapping them now gives back neither: nothing
		// to count.
		a.large.UnmapDeferred()
		released := a.large.FlushQuarantine() // Debug: freed mappings kept PROT_NONE, committed until unmapped
		a.flushScratchQuarantine()            // Debug: freed Scratch runs kept PROT_NONE
		if a.fit != nil {
			released += a.fit.Trim() // the pages inside its free chunks; its empty runs to the region
		}
		return released
	}))
}

// Stats returns the allocator's counters (Counters) and its resident
// memory, measured: one mincore over the region up to its break and one
// per live mapping, and /proc/self/smaps when huge pages may be in play.
// For a figure to take often (a metrics scrape), Counters costs none of that.
func (a *Allocator) Stats() stats.Snapshot {
	s := a.Counters()
	if a.usable() != nil || !a.enter() {
		return s
	}
	defer a.leave(nil)
	a.statsMu.Lock()
	s.ArenaResident = uint64(a.region.Resident(&a.vec))
	s.MmapResident = uint64(a.large.Resident(&a.vec))
	a.hugeStats(&s)
	a.statsMu.Unlock()
	s.Resident = s.ArenaResident + s.MmapResident
	s.ResidentMeasured = true
	s.Mincore = a.os.Calls(sys.OpMincore) // this call's own measuring included
	return s
}

// Close gives every mapping and the whole region back to the kernel. Every
// block becomes invalid, and every later call returns ErrClosed (or does
// nothing). Calls in flight finish first: Close refuses new ones, waits
// for those inside the gate (gate.go), then retires the per-P caches
// (waiting for every pinned fast path) and unmaps. Closing twice is not an
// error; a second Close returns once the first is done. Damage Close
// finds as it drains the caches goes to OnCorruption before it returns
// (it panics with it if there is no handler). The Allocator of
// Default refuses (ErrDefaultClose), and a zero Allocator has nothing to
// close (ErrNotInitialized).
func (a *Allocator) Close() error {
	if a.shared {
		return ErrDefaultClose
	}
	if a.region == nil {
		return ErrNotInitialized
	}
	err := a.close()
	if a.reports.n.Load() != 0 {
		// what Close found (a chunk damaged while a P's front held it,
		// met as the fronts drain), delivered now that it holds no lock,
		// as any call's: the handler may call back in (ErrClosed), and
		// Close again (nil)
		a.deliver(nil)
	}
	return err
}

// close is Close's work, under closeMu.
func (a *Allocator) close() error {
	a.closeMu.Lock()
	defer a.closeMu.Unlock()
	if a.closed.Load() {
		return nil
	}
	a.closed.Store(true)
	a.gate.Add(gateClosed)
	a.waitGate() // no call is inside the gate now, and none can enter (a medium call outside it is ordered by fit.Close)
	a.scratches.close()
	a.idle.stop()
	a.slabs.Close()
	if a.fit != nil {
		a.fit.Close() // under its lock: every later call refused, its purge's timer stopped, before the region goes
	}
	a.prof.closed()
	err1 := a.large.Close()
	err2 := a.region.Close()
	return errors.Join(err1, err2)
}

// usesFit reports whether an allocator of this policy has the best-fit
// heap (package fit).
func usesFit(p Policy, debug bool) bool { return p != PolicyMmap && !debug }

// sideShift is the region's side for the heap's bitmaps, if it has the
// heap (arena.Side).
func sideShift(p Policy, debug bool) uint {
	if usesFit(p, debug) {
		return fit.SideShift
	}
	return 0
}
