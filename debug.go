package alloc

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/slab"
)

// Debug mode, in one place: the patterns it writes and what it keeps.
const (
	// debugCanary fills the bytes between a block's requested size and the
	// end of its block (at least debugCanaryMin of them for small blocks);
	// Free and Realloc check them.
	debugCanary = 0xCB
	// debugPoison fills a freed small block; the next time the block is
	// handed out it is checked (except its first 4 bytes, the free-list
	// link), so a write after free is caught then.
	debugPoison    = 0xDF
	debugCanaryMin = 8
	debugStack     = 16      // frames kept per allocating or freeing call
	debugFreed     = 1 << 14 // freeing stacks kept, for use-after-free reports
)

// CorruptionKind says what was found damaged.
type CorruptionKind string

// What each report leaves behind (the report comes after):
const (
	// Overflow: bytes past the requested size of a block were written
	// (Debug: the canary after the block), found by Free or Realloc. The
	// block is freed all the same (Free returns nil; Realloc has moved
	// it): a handler's Free of it gets ErrDoubleFree.
	Overflow CorruptionKind = "write past the end of a block"
	// UseAfterFree: a freed block was written (Debug: its poison), found
	// when Malloc hands it out again. The block is handed out all the same
	// (its contents are unspecified anyway); the report comes before Malloc
	// returns, and if the handler panics the block is freed.
	UseAfterFree CorruptionKind = "write after free"
	// FreeList: a free-list link stored in a free block was damaged
	// (always checked), found when blocks are taken from the slab. The
	// link is not followed: the rest of that slab's free list is dropped
	// (those blocks are not handed out again before Close), and the
	// allocation is served from good blocks.
	FreeList CorruptionKind = "damaged free list"
)

// Corruption is a report of memory damage the allocator found. It is
// given to Config.OnCorruption; by default the allocator panics with it.
type Corruption struct {
	Kind      CorruptionKind
	Addr      uintptr // the block's first byte
	Size      int     // the block's size
	Requested int     // bytes asked for (-1: unknown)
	Offset    int     // first damaged byte, from Addr (-1: unknown)
	Detail    string
	// Call stacks (program counters) of the allocation and of the free,
	// when Debug recorded them.
	AllocStack, FreeStack []uintptr
}

// Error makes a Corruption an error (for logging and for the panic).
func (c *Corruption) Error() string { return c.String() }

// String gives the report with its call stacks symbolized.
func (c *Corruption) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "alloc: %s: block %#x (%d bytes", c.Kind, c.Addr, c.Size)
	if c.Requested >= 0 {
		fmt.Fprintf(&b, ", %d requested", c.Requested)
	}
	b.WriteString(")")
	if c.Offset >= 0 {
		fmt.Fprintf(&b, ", first damaged byte at +%d", c.Offset)
	}
	if c.Detail != "" {
		b.WriteString(": " + c.Detail)
	}
	for _, s := range []struct {
		name string
		pcs  []uintptr
	}{{"allocated", c.AllocStack}, {"freed", c.FreeStack}} {
		if len(s.pcs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s at:", s.name)
		frames := runtime.CallersFrames(s.pcs)
		for {
			f, more := frames.Next()
			fmt.Fprintf(&b, "\n\t%s\n\t\t%s:%d", f.Function, f.File, f.Line)
			if !more {
				break
			}
		}
	}
	return b.String()
}

// report queues a Corruption, with the call stacks Debug recorded for its
// block as they are now, for leave to deliver to OnCorruption (or to panic
// with) once the call holds no lock (gate.go).
func (a *Allocator) report(c *Corruption) {
	if a.debugState != nil {
		a.debugState.stacks(c)
	}
	a.reports.push(c)
}

// ptrOf turns the address of a block found by find into a pointer.
func (a *Allocator) ptrOf(blk block, p uintptr) unsafe.Pointer {
	if blk.mapping != nil {
		return blk.mapping.Pointer()
	}
	return a.region.Ptr(p)
}

// debugState keeps the call stacks of live blocks and of recent frees.
type debugState struct {
	mu     sync.Mutex
	allocs map[uintptr][]uintptr
	frees  map[uintptr][]uintptr
	order  []uintptr // keys of frees, oldest first

	scratch scratchQuarantine // freed Scratch runs, PROT_NONE (scratch.go)
}

func newDebugState() *debugState {
	return &debugState{allocs: map[uintptr][]uintptr{}, frees: map[uintptr][]uintptr{}}
}

func callers() []uintptr {
	pcs := make([]uintptr, debugStack)
	return pcs[:runtime.Callers(4, pcs)]
}

func (d *debugState) allocated(p uintptr) {
	pcs := callers()
	d.mu.Lock()
	d.allocs[p] = pcs
	// A report about this block names its own free, not the one of an
	// earlier block at the address (a write-after-free report of that one
	// was made, with its stacks, before this block was handed out).
	delete(d.frees, p)
	d.mu.Unlock()
}

func (d *debugState) freed(p uintptr) {
	pcs := callers()
	d.mu.Lock()
	delete(d.allocs, p)
	if _, ok := d.frees[p]; !ok {
		d.order = append(d.order, p)
	}
	d.frees[p] = pcs
	for len(d.order) > debugFreed {
		delete(d.frees, d.order[0])
		d.order = d.order[1:]
	}
	d.mu.Unlock()
}

func (d *debugState) stacks(c *Corruption) {
	d.mu.Lock()
	if c.AllocStack == nil {
		c.AllocStack = d.allocs[c.Addr]
	}
	if c.FreeStack == nil {
		c.FreeStack = d.frees[c.Addr]
	}
	d.mu.Unlock()
}

// firstNot returns the offset of the first byte of b that is not v, or -1.
func firstNot(b []byte, v byte) int {
	for i, x := range b {
		if x != v {
			return i
		}
	}
	return -1
}

// debugAlloc serves a request in Debug mode: no P caches; a canary after
// the requested bytes; a reused small block checked for its poison; the
// allocating stack recorded.
func (a *Allocator) debugAlloc(r route, n, align uintptr) (p unsafe.Pointer, zero, sampled bool, err error) {
	var (
		size  uintptr
		class = -1
	)
	if r == toSlab && n+debugCanaryMin <= slab.MaxSize {
		class = a.smallClass(n+debugCanaryMin, align)
	}
	switch {
	case class >= 0:
		var reused bool
		p, zero, reused, sampled, err = a.slabs.AllocDirect(class, n)
		if err != nil {
			return nil, false, false, fmt.Errorf("alloc: %d bytes from the slabs: %w", n, err)
		}
		size = slab.ClassSize(class)
		if reused {
			blk := bytesAt(p, int(size))
			if off := firstNot(blk[4:], debugPoison); off >= 0 {
				a.report(&Corruption{Kind: UseAfterFree, Addr: uintptr(p), Size: int(size), Requested: -1, Offset: 4 + off,
					Detail: "the block was written after it was freed; found when it was handed out again"})
			}
		}
	default:
		serve := a.midBlock
		if r == toMapping {
			serve = a.mappedBlock
		}
		if p, zero, sampled, err = serve(n, debugCanaryMin, align); err != nil {
			return nil, false, false, err
		}
		size = (n + debugCanaryMin + a.page - 1) &^ (a.page - 1) // what both map: whole pages
	}
	tail := bytesAt(unsafe.Add(p, n), int(size-n))
	for i := range tail {
		tail[i] = debugCanary
	}
	a.debugState.allocated(uintptr(p))
	return p, zero, sampled, nil
}

// debugFree frees a block in Debug mode: its canary checked, a small
// block poisoned, a large mapping quarantined, the freeing stack recorded.
func (a *Allocator) debugFree(p uintptr) error {
	blk, err := a.find(p)
	if err != nil {
		return err
	}
	ptr := a.ptrOf(blk, p)
	if off := firstNot(bytesAt(unsafe.Add(ptr, blk.requested), int(blk.size-blk.requested)), debugCanary); off >= 0 {
		a.report(&Corruption{Kind: Overflow, Addr: p, Size: int(blk.size), Requested: int(blk.requested),
			Offset: int(blk.requested) + off, Detail: "found when the block was freed"})
	}
	switch {
	case blk.run != nil && blk.run.Kind() == arena.KindSlab:
		b := bytesAt(ptr, int(blk.size))
		for i := range b {
			b[i] = debugPoison
		}
		if _, err := a.slabs.FreeDirect(blk.run, p); err != nil {
			return err
		}
	case blk.run != nil:
		if err := a.freeRegion(p); err != nil {
			return err
		}
	default:
		if err := a.freeMapped(p); err != nil {
			return err
		}
	}
	a.debugState.freed(p)
	return nil
}
