package largealloc

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/brkmap/alloc/internal/budget"
	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/sys"
	"golang.org/x/sys/unix"
)

const numShards = 64

// Mapping is one live large block.
type Mapping struct {
	Addr      uintptr
	Len       uintptr // bytes mapped for the block (a multiple of the page size)
	Requested uintptr // bytes asked for
	Huge      bool    // advised MADV_HUGEPAGE (see SetHugePages)
	ptr       unsafe.Pointer
	guard     uintptr // Debug: bytes of PROT_NONE guard after the block
	deferred  bool    // freed, on the deferred list (its budget given back)
}

type shard struct {
	mu   sync.Mutex
	live map[uintptr]*Mapping
	_    [40]byte // keep shards on separate cache lines
}

// Mappings hands out and takes back mappings. Safe for concurrent use.
type Mappings struct {
	os     *sys.OS
	budget *budget.Budget
	page   uintptr
	huge   uintptr // huge page size if large mappings use huge pages, else 0; set before use
	closed atomic.Bool
	shards [numShards]shard

	count     atomic.Int64
	bytes     atomic.Int64 // mapped
	requested atomic.Int64

	// Debug mode: a guard page after every block, and freed mappings kept
	// PROT_NONE (their pages released) for a while before munmap, so a
	// late access faults at a clear address and a late free is known.
	debug       bool
	quarMu      sync.Mutex
	quarantine  []*Mapping // oldest first
	quarantined map[uintptr]*Mapping

	// Freed mappings whose munmap the kernel refused with ENOMEM: taking
	// a block out of the middle of an area of merged mappings splits the
	// area, and past vm.max_map_count the kernel refuses. Their pages are
	// released with madvise (which never splits an area), and the ranges
	// wait here: Alloc reuses one of the same size, and Trim and Close
	// unmap them (UnmapDeferred) — not every free, since an unmap that
	// splits an area would take the room a free just made. Guarded by
	// defMu; ndeferred is len(deferred), read without it.
	defMu     sync.Mutex
	deferred  []*Mapping
	ndeferred atomic.Int32

	resMu sync.Mutex // Resident's scratch
	spans []span
}

// QuarantineLen is how many freed mappings Debug mode keeps PROT_NONE
// before it unmaps the oldest.
const QuarantineLen = 64

// EnableDebug turns on guard pages and the quarantine. Call before use.
func (ms *Mappings) EnableDebug() {
	ms.debug = true
	ms.quarantined = make(map[uintptr]*Mapping)
}

// New returns an allocator that makes its calls through os and charges its
// mappings to budget.
func New(os *sys.OS, budget *budget.Budget) *Mappings {
	ms := &Mappings{os: os, budget: budget, page: sys.PageSize}
	for i := range ms.shards {
		ms.shards[i].live = make(map[uintptr]*Mapping)
	}
	return ms
}

func (ms *Mappings) shard(addr uintptr) *shard {
	x := uint64(addr >> 12)
	x *= 0x9e3779b97f4a7c15
	return &ms.shards[x>>(64-6)]
}

func (ms *Mappings) roundUp(n uintptr) (uintptr, bool) {
	r := (n + ms.page - 1) &^ (ms.page - 1)
	return r, r >= n
}

// Alloc maps a block of n bytes, with at least room bytes more mapped past
// them (Debug's canary), whose start is a multiple of align (a power of
// two; anything up to the page size means page-aligned). Its memory is
// zero, fresh from the kernel.
func (ms *Mappings) Alloc(n, room, align uintptr) (unsafe.Pointer, error) {
	if ms.closed.Load() {
		return nil, errs.ErrClosed
	}
	size, ok := ms.roundUp(max(n+room, 1))
	if !ok {
		return nil, fmt.Errorf("largealloc: %d bytes: %w", n, errs.ErrNoMemory)
	}
	huge := ms.hugeBlock(size)
	if huge {
		align = max(align, ms.huge)
	}
	guard := uintptr(0)
	if ms.debug {
		guard = ms.page
	}
	if size+guard < size {
		return nil, fmt.Errorf("largealloc: %d bytes: %w", n, errs.ErrNoMemory)
	}
	if !ms.budget.Take(size) && (!ms.debug || ms.FlushQuarantine() == 0 || !ms.budget.Take(size)) {
		return nil, fmt.Errorf("largealloc: map %d bytes: limit of %d bytes reached: %w", size, ms.budget.Limit(), errs.ErrNoMemory)
	}
	if guard == 0 && !huge && align <= ms.page {
		if m := ms.reuseDeferred(size); m != nil {
			m.Requested = n
			return ms.register(m)
		}
	}
	var p unsafe.Pointer
	var err error
	if align > ms.page {
		p, err = ms.os.MmapAligned(size+guard, align, unix.PROT_READ|unix.PROT_WRITE, 0)
	} else {
		p, err = ms.os.Mmap(size+guard, unix.PROT_READ|unix.PROT_WRITE, 0)
	}
	if err != nil {
		ms.budget.Give(size)
		return nil, fmt.Errorf("largealloc: map %d bytes aligned to %d: %w: %w", size, align, errs.ErrNoMemory, err)
	}
	if guard > 0 {
		if err := ms.os.Mprotect(unsafe.Add(p, size), guard, unix.PROT_NONE); err != nil {
			_ = ms.os.Munmap(p, size+guard)
			ms.budget.Give(size)
			return nil, fmt.Errorf("largealloc: guard page: %w: %w", errs.ErrNoMemory, err)
		}
	}
	if huge {
		huge = ms.adviseHuge(p, size)
	}
	return ms.register(&Mapping{Addr: uintptr(p), Len: size, Requested: n, Huge: huge, ptr: p, guard: guard})
}

// register makes a new mapping live, its budget taken.
func (ms *Mappings) register(m *Mapping) (unsafe.Pointer, error) {
	sh := ms.shard(m.Addr)
	sh.mu.Lock()
	if ms.closed.Load() {
		sh.mu.Unlock()
		_ = ms.os.Munmap(m.ptr, m.Len+m.guard)
		ms.budget.Give(m.Len)
		return nil, errs.ErrClosed
	}
	sh.live[m.Addr] = m
	sh.mu.Unlock()
	ms.count.Add(1)
	ms.bytes.Add(int64(m.Len))
	ms.requested.Add(int64(m.Requested))
	return m.ptr, nil
}

// Lookup returns the live mapping starting at addr, or nil.
func (ms *Mappings) Lookup(addr uintptr) *Mapping {
	sh := ms.shard(addr)
	sh.mu.Lock()
	m := sh.live[addr]
	var c *Mapping
	if m != nil {
		cp := *m
		c = &cp
	}
	sh.mu.Unlock()
	return c
}

// take removes the live mapping at addr from the registry.
func (ms *Mappings) take(addr uintptr) (*Mapping, error) {
	if ms.closed.Load() {
		return nil, errs.ErrClosed
	}
	sh := ms.shard(addr)
	sh.mu.Lock()
	m := sh.live[addr]
	if m != nil {
		delete(sh.live, addr)
	}
	sh.mu.Unlock()
	if m == nil {
		if ms.debug {
			ms.quarMu.Lock()
			q := ms.quarantined[addr]
			ms.quarMu.Unlock()
			if q != nil {
				return nil, fmt.Errorf("%w: %d-byte mapping at %#x (freed, still in quarantine)", errs.ErrDoubleFree, q.Len, addr)
			}
		}
		return nil, fmt.Errorf("%w: %#x is not a live block of this allocator (foreign, interior, or already unmapped)",
			errs.ErrInvalidFree, addr)
	}
	return m, nil
}

func (ms *Mappings) put(m *Mapping) {
	sh := ms.shard(m.Addr)
	sh.mu.Lock()
	sh.live[m.Addr] = m
	sh.mu.Unlock()
}

// Free unmaps the block at addr and returns its mapped length. Anything
// that is not a live mapping's start is refused with ErrInvalidFree.
func (ms *Mappings) Free(addr uintptr) (*Mapping, error) {
	m, err := ms.take(addr)
	if err != nil {
		return nil, err
	}
	if ms.debug {
		if err := ms.quarantineAdd(m); err != nil {
			ms.put(m)
			return nil, err
		}
	} else if err := ms.os.Munmap(m.ptr, m.Len); err != nil {
		// ENOMEM is the map-count limit: release the pages and unmap the
		// range later. Any other refusal (or madvise's) leaves the mapping
		// as it was: keep it live, the caller may retry.
		if !errors.Is(err, unix.ENOMEM) || ms.os.Madvise(m.ptr, m.Len, unix.MADV_DONTNEED) != nil {
			ms.put(m)
			return nil, fmt.Errorf("largealloc: unmap %d bytes: %w", m.Len, errnoErr(err))
		}
		ms.budget.Give(m.Len)
		ms.deferUnmap(m)
	} else {
		ms.budget.Give(m.Len)
	}
	ms.count.Add(-1)
	ms.bytes.Add(-int64(m.Len))
	ms.requested.Add(-int64(m.Requested))
	return m, nil
}

// deferUnmap puts a freed mapping, its pages released, on the deferred
// list.
func (ms *Mappings) deferUnmap(m *Mapping) {
	m.deferred = true
	ms.defMu.Lock()
	ms.deferred = append(ms.deferred, m)
	ms.ndeferred.Store(int32(len(ms.deferred)))
	ms.defMu.Unlock()
}

// reuseDeferred takes a deferred range of exactly size bytes off the list,
// or returns nil. Its pages were released: they read as zero.
func (ms *Mappings) reuseDeferred(size uintptr) *Mapping {
	if ms.ndeferred.Load() == 0 {
		return nil
	}
	ms.defMu.Lock()
	defer ms.defMu.Unlock()
	for i, m := range ms.deferred {
		if m.Len == size && !m.Huge {
			ms.deferred = slices.Delete(ms.deferred, i, i+1)
			ms.ndeferred.Store(int32(len(ms.deferred)))
			m.deferred = false
			return m
		}
	}
	return nil
}

// UnmapDeferred unmaps the deferred ranges, highest address first (taking
// the top of an area off never splits it), until the kernel refuses one:
// the rest wait for the next try. Trim calls it.
func (ms *Mappings) UnmapDeferred() {
	if ms.ndeferred.Load() == 0 {
		return
	}
	ms.defMu.Lock()
	defer ms.defMu.Unlock()
	slices.SortFunc(ms.deferred, func(x, y *Mapping) int { return cmp.Compare(x.Addr, y.Addr) })
	for len(ms.deferred) > 0 {
		m := ms.deferred[len(ms.deferred)-1]
		if ms.os.Munmap(m.ptr, m.Len) != nil {
			break // still at the limit: later
		}
		ms.deferred = ms.deferred[:len(ms.deferred)-1]
	}
	ms.ndeferred.Store(int32(len(ms.deferred)))
}

// takeDeferred empties the deferred list and returns what it held.
func (ms *Mappings) takeDeferred() []*Mapping {
	ms.defMu.Lock()
	defer ms.defMu.Unlock()
	d := ms.deferred
	ms.deferred = nil
	ms.ndeferred.Store(0)
	return d
}

// DeferredBytes returns the bytes of freed mappings waiting on the
// deferred list to be unmapped (their pages released).
func (ms *Mappings) DeferredBytes() uint64 {
	ms.defMu.Lock()
	defer ms.defMu.Unlock()
	return totalLen(ms.deferred)
}

// errnoErr wraps ENOMEM (munmap splitting a mapping past vm.max_map_count)
// as out of memory.
func errnoErr(err error) error {
	if errors.Is(err, unix.ENOMEM) {
		return fmt.Errorf("%w: %w", errs.ErrNoMemory, err)
	}
	return err
}

// quarantineAdd releases a freed mapping's pages and makes it PROT_NONE
// (guard included), keeping it mapped; past QuarantineLen the oldest is
// unmapped.
func (ms *Mappings) quarantineAdd(m *Mapping) error {
	total := m.Len + m.guard
	// PROT_NONE first: if it is refused, nothing has changed and the block
	// is still the caller's, contents and all.
	if err := ms.os.Mprotect(m.ptr, total, unix.PROT_NONE); err != nil {
		return fmt.Errorf("largealloc: quarantine %d bytes: %w", m.Len, errnoErr(err))
	}
	// Releasing the pages is only thrift: if it is refused they stay
	// resident until the mapping leaves the quarantine.
	_ = ms.os.ReleaseProtNone(m.ptr, m.Len)
	ms.quarMu.Lock()
	defer ms.quarMu.Unlock()
	ms.quarantine = append(ms.quarantine, m)
	ms.quarantined[m.Addr] = m
	for len(ms.quarantine) > QuarantineLen {
		if !ms.unquarantineLocked(ms.quarantine[0]) {
			break // keep it; try again next time
		}
		ms.quarantine = ms.quarantine[1:]
	}
	return nil
}

// unquarantineLocked unmaps quarantined mapping m, guard included, and
// gives its bytes back to the budget; it reports false, changing nothing,
// if the kernel refused. ms.quarMu must be held; the caller takes m off
// ms.quarantine.
func (ms *Mappings) unquarantineLocked(m *Mapping) bool {
	if ms.os.Munmap(m.ptr, m.Len+m.guard) != nil {
		return false
	}
	ms.budget.Give(m.Len)
	delete(ms.quarantined, m.Addr)
	return true
}

// FlushQuarantine unmaps every freed mapping Debug mode keeps in
// quarantine, giving its bytes back to the budget, and returns how many
// bytes. Trim calls it, and Alloc when the budget (Config.Limit) would
// refuse: a quarantine is a debugging aid, never a reason to run out.
func (ms *Mappings) FlushQuarantine() uintptr {
	ms.quarMu.Lock()
	defer ms.quarMu.Unlock()
	var n uintptr
	kept := ms.quarantine[:0]
	for _, m := range ms.quarantine {
		if !ms.unquarantineLocked(m) {
			kept = append(kept, m) // try again next time
			continue
		}
		n += m.Len
	}
	ms.quarantine = kept
	return n
}

// Quarantined reports whether addr is a freed block Debug mode still keeps
// in quarantine.
func (ms *Mappings) Quarantined(addr uintptr) bool {
	if !ms.debug {
		return false
	}
	ms.quarMu.Lock()
	defer ms.quarMu.Unlock()
	return ms.quarantined[addr] != nil
}

// Pointer returns the block's first byte.
func (m *Mapping) Pointer() unsafe.Pointer { return m.ptr }

// QuarantineBytes returns the bytes of freed mappings Debug mode still holds.
func (ms *Mappings) QuarantineBytes() uint64 {
	ms.quarMu.Lock()
	defer ms.quarMu.Unlock()
	return totalLen(ms.quarantine)
}

// totalLen returns the bytes of the mappings in list.
func totalLen(list []*Mapping) uint64 {
	var n uint64
	for _, m := range list {
		n += uint64(m.Len)
	}
	return n
}

// Resize changes the block at addr to n bytes: in place if its mapping
// already holds n, else with mremap, which may move it (the contents
// move with it). It returns the block's new address.
func (ms *Mappings) Resize(addr, n uintptr) (unsafe.Pointer, error) {
	m, err := ms.take(addr)
	if err != nil {
		return nil, err
	}
	size, ok := ms.roundUp(max(n, 1))
	if !ok {
		ms.put(m)
		return nil, fmt.Errorf("largealloc: %d bytes: %w", n, errs.ErrNoMemory)
	}
	if size != m.Len {
		if size > m.Len && !ms.budget.Take(size-m.Len) {
			ms.put(m)
			return nil, fmt.Errorf("largealloc: grow to %d bytes: limit of %d bytes reached: %w", size, ms.budget.Limit(), errs.ErrNoMemory)
		}
		var p unsafe.Pointer
		var err error
		if ms.hugeBlock(size) && size > m.Len {
			p, err = ms.growHuge(m, size)
		} else {
			p, err = ms.os.Mremap(m.ptr, m.Len, size)
		}
		if err != nil {
			if size > m.Len {
				ms.budget.Give(size - m.Len)
			}
			ms.put(m)
			return nil, fmt.Errorf("largealloc: remap %d to %d bytes: %w: %w", m.Len, size, errs.ErrNoMemory, err)
		}
		if size < m.Len {
			ms.budget.Give(m.Len - size)
		}
		ms.bytes.Add(int64(size) - int64(m.Len))
		huge := m.Huge
		if !huge && ms.hugeBlock(size) {
			huge = ms.adviseHuge(p, size)
		}
		m = &Mapping{Addr: uintptr(p), Len: size, Requested: m.Requested, Huge: huge, ptr: p}
	}
	ms.requested.Add(int64(n) - int64(m.Requested))
	m.Requested = n
	ms.put(m)
	return m.ptr, nil
}

// Counters returns live mappings, bytes mapped and bytes requested.
func (ms *Mappings) Counters() (count, bytes, requested uint64) {
	return uint64(ms.count.Load()), uint64(ms.bytes.Load()), uint64(ms.requested.Load())
}

// MetaBytes estimates the registry's bookkeeping in the Go heap: a
// Mapping and a map entry (key and pointer) per live mapping.
func (ms *Mappings) MetaBytes() uint64 {
	return uint64(ms.count.Load()) * uint64(unsafe.Sizeof(Mapping{})+2*unsafe.Sizeof(uintptr(0)))
}

// Each calls fn for every live mapping (under its shard's lock: fn must not
// call back into the allocator).
func (ms *Mappings) Each(fn func(m Mapping)) {
	for i := range ms.shards {
		sh := &ms.shards[i]
		sh.mu.Lock()
		for _, m := range sh.live {
			fn(*m)
		}
		sh.mu.Unlock()
	}
}

// Resident measures with mincore how many bytes of live mappings are
// resident in RAM. Mappings that touch (the kernel places new mappings
// next to each other) are measured with one call: with thousands of live
// mappings this is a few calls, not one per mapping. If a run of them can
// no longer be measured as one (one was unmapped meanwhile: ENOMEM), each
// is measured by itself.
func (ms *Mappings) Resident(vec *[]byte) uintptr {
	ms.resMu.Lock()
	defer ms.resMu.Unlock()
	spans := ms.spans[:0]
	ms.Each(func(m Mapping) { spans = append(spans, span{m.ptr, m.Addr, m.Len, m.guard}) })
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.addr, b.addr) })
	var total uintptr
	for i := 0; i < len(spans); {
		j, end := i+1, spans[i].addr+spans[i].len
		for j < len(spans) && spans[j-1].guard == 0 && spans[j].addr == end {
			end += spans[j].len
			j++
		}
		n, err := ms.os.Resident(spans[i].ptr, end-spans[i].addr, vec)
		if err != nil && j > i+1 {
			n = 0
			for _, sp := range spans[i:j] {
				if k, err := ms.os.Resident(sp.ptr, sp.len, vec); err == nil {
					n += k
				}
			}
		}
		total += n // an error: unmapped meanwhile, nothing resident
		i = j
	}
	ms.spans = spans[:0]
	return total
}

// span is a live mapping as Resident measures it.
type span struct {
	ptr              unsafe.Pointer
	addr, len, guard uintptr
}

// Close unmaps every live mapping (and every one the quarantine or the
// deferred list still holds) and refuses every later call. It unmaps them
// from the highest address down: adjacent anonymous mappings merge into
// one area of the kernel's (a VMA), and taking the top of an area off
// shrinks it where taking the middle would split it in two — which the
// kernel refuses past vm.max_map_count. What is refused anyway (an area
// shared with a mapping not ours) is tried again once the rest is gone,
// until no further one succeeds; the error says what is left.
func (ms *Mappings) Close() error {
	ms.closed.Store(true)
	var all []*Mapping
	for i := range ms.shards {
		sh := &ms.shards[i]
		sh.mu.Lock()
		for addr, m := range sh.live {
			all = append(all, m)
			delete(sh.live, addr)
		}
		sh.mu.Unlock()
	}
	ms.quarMu.Lock()
	all = append(all, ms.quarantine...)
	ms.quarantine, ms.quarantined = nil, nil
	ms.quarMu.Unlock()
	all = append(all, ms.takeDeferred()...)
	slices.SortFunc(all, func(x, y *Mapping) int { return cmp.Compare(y.Addr, x.Addr) })
	var err error
	for len(all) > 0 {
		left := all[:0]
		err = nil
		for _, m := range all {
			if e := ms.os.Munmap(m.ptr, m.Len+m.guard); e != nil {
				left = append(left, m)
				if err == nil {
					err = e
				}
				continue
			}
			if !m.deferred { // a deferred range was given back to the budget when freed
				ms.budget.Give(m.Len)
			}
		}
		if len(left) == len(all) {
			break // no progress
		}
		all = left
	}
	ms.count.Store(0)
	ms.bytes.Store(0)
	ms.requested.Store(0)
	if err != nil {
		return fmt.Errorf("largealloc: close: %d mappings left: %w", len(all), errnoErr(err))
	}
	return nil
}
