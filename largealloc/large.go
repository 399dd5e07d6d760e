package largealloc

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/brkmap/alloc/internal/sys"
	"golang.org/x/sys/unix"
)

const numShards = 64

// Mapping is one live large block.
type Mapping struct {
	Addr      uintptr
	Len       uintptr // bytes mapped (a multiple of the page size)
	Requested uintptr // bytes asked for
	ptr       unsafe.Pointer
}

type shard struct {
	mu   sync.Mutex
	live map[uintptr]*Mapping
	_    [40]byte // keep shards on separate cache lines
}

// Allocator hands out and takes back mappings. Safe for concurrent use.
type Allocator struct {
	os     *sys.OS
	budget *sys.Budget
	page   uintptr
	closed atomic.Bool
	shards [numShards]shard

	count     atomic.Int64
	bytes     atomic.Int64 // mapped
	requested atomic.Int64
}

// New returns an allocator that makes its calls through os and charges its
// mappings to budget.
func New(os *sys.OS, budget *sys.Budget) *Allocator {
	a := &Allocator{os: os, budget: budget, page: sys.PageSize}
	for i := range a.shards {
		a.shards[i].live = make(map[uintptr]*Mapping)
	}
	return a
}

func (a *Allocator) shard(addr uintptr) *shard {
	x := uint64(addr >> 12)
	x *= 0x9e3779b97f4a7c15
	return &a.shards[x>>(64-6)]
}

func (a *Allocator) roundUp(n uintptr) (uintptr, bool) {
	r := (n + a.page - 1) &^ (a.page - 1)
	return r, r >= n
}

// Alloc maps a block of n bytes whose start is a multiple of align (a power
// of two; anything up to the page size means page-aligned). Its memory is
// zero, fresh from the kernel.
func (a *Allocator) Alloc(n, align uintptr) (unsafe.Pointer, error) {
	if a.closed.Load() {
		return nil, sys.ErrClosed
	}
	size, ok := a.roundUp(max(n, 1))
	if !ok {
		return nil, fmt.Errorf("largealloc: %d bytes: %w", n, sys.ErrNoMemory)
	}
	extra := uintptr(0)
	if align > a.page {
		extra = align - a.page
	}
	if size+extra < size {
		return nil, fmt.Errorf("largealloc: %d bytes: %w", n, sys.ErrNoMemory)
	}
	if !a.budget.Take(size) {
		return nil, fmt.Errorf("largealloc: map %d bytes: limit of %d bytes reached: %w", size, a.budget.Limit(), sys.ErrNoMemory)
	}
	p, err := a.os.Mmap(size+extra, unix.PROT_READ|unix.PROT_WRITE, 0)
	if err != nil {
		a.budget.Give(size)
		return nil, fmt.Errorf("largealloc: map %d bytes: %w: %w", size+extra, sys.ErrNoMemory, err)
	}
	if extra > 0 {
		start := uintptr(p)
		head := (start+align-1)&^(align-1) - start
		if head > 0 {
			if err := a.os.Munmap(p, head); err != nil {
				_ = a.os.Munmap(p, size+extra)
				a.budget.Give(size)
				return nil, fmt.Errorf("largealloc: trim aligned mapping: %w: %w", sys.ErrNoMemory, err)
			}
			p = unsafe.Add(p, head)
		}
		if tail := extra - head; tail > 0 {
			if err := a.os.Munmap(unsafe.Add(p, size), tail); err != nil {
				_ = a.os.Munmap(p, size+tail)
				a.budget.Give(size)
				return nil, fmt.Errorf("largealloc: trim aligned mapping: %w: %w", sys.ErrNoMemory, err)
			}
		}
	}
	m := &Mapping{Addr: uintptr(p), Len: size, Requested: n, ptr: p}
	sh := a.shard(m.Addr)
	sh.mu.Lock()
	if a.closed.Load() {
		sh.mu.Unlock()
		_ = a.os.Munmap(p, size)
		a.budget.Give(size)
		return nil, sys.ErrClosed
	}
	sh.live[m.Addr] = m
	sh.mu.Unlock()
	a.count.Add(1)
	a.bytes.Add(int64(size))
	a.requested.Add(int64(n))
	return p, nil
}

// Lookup returns the live mapping starting at addr, or nil.
func (a *Allocator) Lookup(addr uintptr) *Mapping {
	sh := a.shard(addr)
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
func (a *Allocator) take(addr uintptr) (*Mapping, error) {
	if a.closed.Load() {
		return nil, sys.ErrClosed
	}
	sh := a.shard(addr)
	sh.mu.Lock()
	m := sh.live[addr]
	if m != nil {
		delete(sh.live, addr)
	}
	sh.mu.Unlock()
	if m == nil {
		return nil, fmt.Errorf("%w: %#x is not a live block of this allocator (foreign, interior, or already unmapped)",
			sys.ErrInvalidFree, addr)
	}
	return m, nil
}

func (a *Allocator) put(m *Mapping) {
	sh := a.shard(m.Addr)
	sh.mu.Lock()
	sh.live[m.Addr] = m
	sh.mu.Unlock()
}

// Free unmaps the block at addr and returns its mapped length. Anything
// that is not a live mapping's start is refused with ErrInvalidFree.
func (a *Allocator) Free(addr uintptr) (*Mapping, error) {
	m, err := a.take(addr)
	if err != nil {
		return nil, err
	}
	if err := a.os.Munmap(m.ptr, m.Len); err != nil {
		// The mapping is still there: keep it live, the caller may retry.
		a.put(m)
		if errors.Is(err, unix.ENOMEM) { // splitting a mapping past vm.max_map_count
			return nil, fmt.Errorf("largealloc: unmap %d bytes: %w: %w", m.Len, sys.ErrNoMemory, err)
		}
		return nil, fmt.Errorf("largealloc: unmap %d bytes: %w", m.Len, err)
	}
	a.count.Add(-1)
	a.bytes.Add(-int64(m.Len))
	a.requested.Add(-int64(m.Requested))
	a.budget.Give(m.Len)
	return m, nil
}

// Resize changes the block at addr to n bytes: in place if its mapping
// already holds n, else with mremap, which may move it (the contents
// move with it). It returns the block's new address.
func (a *Allocator) Resize(addr, n uintptr) (unsafe.Pointer, error) {
	m, err := a.take(addr)
	if err != nil {
		return nil, err
	}
	size, ok := a.roundUp(max(n, 1))
	if !ok {
		a.put(m)
		return nil, fmt.Errorf("largealloc: %d bytes: %w", n, sys.ErrNoMemory)
	}
	if size != m.Len {
		if size > m.Len && !a.budget.Take(size-m.Len) {
			a.put(m)
			return nil, fmt.Errorf("largealloc: grow to %d bytes: limit of %d bytes reached: %w", size, a.budget.Limit(), sys.ErrNoMemory)
		}
		p, err := a.os.Mremap(m.ptr, m.Len, size)
		if err != nil {
			if size > m.Len {
				a.budget.Give(size - m.Len)
			}
			a.put(m)
			return nil, fmt.Errorf("largealloc: remap %d to %d bytes: %w: %w", m.Len, size, sys.ErrNoMemory, err)
		}
		if size < m.Len {
			a.budget.Give(m.Len - size)
		}
		a.bytes.Add(int64(size) - int64(m.Len))
		m = &Mapping{Addr: uintptr(p), Len: size, Requested: m.Requested, ptr: p}
	}
	a.requested.Add(int64(n) - int64(m.Requested))
	m.Requested = n
	a.put(m)
	return m.ptr, nil
}

// Counters returns live mappings, bytes mapped and bytes requested.
func (a *Allocator) Counters() (count, bytes, requested uint64) {
	return uint64(a.count.Load()), uint64(a.bytes.Load()), uint64(a.requested.Load())
}

// Each calls fn for every live mapping (under its shard's lock: fn must not
// call back into the allocator).
func (a *Allocator) Each(fn func(m Mapping)) {
	for i := range a.shards {
		sh := &a.shards[i]
		sh.mu.Lock()
		for _, m := range sh.live {
			fn(*m)
		}
		sh.mu.Unlock()
	}
}

// Resident measures with mincore how many bytes of live mappings are
// resident in RAM.
func (a *Allocator) Resident(vec *[]byte) uintptr {
	var spans []Mapping
	a.Each(func(m Mapping) { spans = append(spans, m) })
	var total uintptr
	for _, m := range spans {
		n, err := a.os.Resident(m.ptr, m.Len, vec)
		if err == nil { // ENOMEM: unmapped meanwhile
			total += n
		}
	}
	return total
}

// Close unmaps every live mapping and refuses every later call.
func (a *Allocator) Close() error {
	a.closed.Store(true)
	var first error
	for i := range a.shards {
		sh := &a.shards[i]
		sh.mu.Lock()
		for addr, m := range sh.live {
			if err := a.os.Munmap(m.ptr, m.Len); err != nil && first == nil {
				first = err
			}
			a.budget.Give(m.Len)
			delete(sh.live, addr)
		}
		sh.mu.Unlock()
	}
	a.count.Store(0)
	a.bytes.Store(0)
	a.requested.Store(0)
	return first
}
