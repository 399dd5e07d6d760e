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
	if !ms.budget.Take(size) {
		return nil, fmt.Errorf("largealloc: map %d bytes: limit of %d bytes reached: %w", size, ms.budget.Limit(), errs.ErrNoMemory)
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
	m := &Mapping{Addr: uintptr(p), Len: size, Requested: n, Huge: huge, ptr: p, guard: guard}
	sh := ms.shard(m.Addr)
	sh.mu.Lock()
	if ms.closed.Load() {
		sh.mu.Unlock()
		_ = ms.os.Munmap(p, size+guard)
		ms.budget.Give(size)
		return nil, errs.ErrClosed
	}
	sh.live[m.Addr] = m
	sh.mu.Unlock()
	ms.count.Add(1)
	ms.bytes.Add(int64(size))
	ms.requested.Add(int64(n))
	return p, nil
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
		// The mapping is still there: keep it live, the caller may retry.
		ms.put(m)
		return nil, fmt.Errorf("largealloc: unmap %d bytes: %w", m.Len, errnoErr(err))
	} else {
		ms.budget.Give(m.Len)
	}
	ms.count.Add(-1)
	ms.bytes.Add(-int64(m.Len))
	ms.requested.Add(-int64(m.Requested))
	return m, nil
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
	_ = ms.os.Madvise(m.ptr, m.Len, unix.MADV_DONTNEED)
	ms.quarMu.Lock()
	defer ms.quarMu.Unlock()
	ms.quarantine = append(ms.quarantine, m)
	ms.quarantined[m.Addr] = m
	for len(ms.quarantine) > QuarantineLen {
		old := ms.quarantine[0]
		if ms.os.Munmap(old.ptr, old.Len+old.guard) != nil {
			break // keep it; try again next time
		}
		ms.budget.Give(old.Len)
		ms.quarantine = ms.quarantine[1:]
		delete(ms.quarantined, old.Addr)
	}
	return nil
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
	var n uint64
	for _, m := range ms.quarantine {
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

// Close unmaps every live mapping and refuses every later call.
func (ms *Mappings) Close() error {
	ms.closed.Store(true)
	var first error
	for i := range ms.shards {
		sh := &ms.shards[i]
		sh.mu.Lock()
		for addr, m := range sh.live {
			if err := ms.os.Munmap(m.ptr, m.Len+m.guard); err != nil && first == nil {
				first = err
			}
			ms.budget.Give(m.Len)
			delete(sh.live, addr)
		}
		sh.mu.Unlock()
	}
	ms.quarMu.Lock()
	for _, m := range ms.quarantine {
		if err := ms.os.Munmap(m.ptr, m.Len+m.guard); err != nil && first == nil {
			first = err
		}
		ms.budget.Give(m.Len)
	}
	ms.quarantine, ms.quarantined = nil, nil
	ms.quarMu.Unlock()
	ms.count.Store(0)
	ms.bytes.Store(0)
	ms.requested.Store(0)
	return first
}
