package largealloc

import (
	"unsafe"

	"github.com/brkmap/alloc/internal/sys"
	"golang.org/x/sys/unix"
)

// Huge pages for large blocks.
//
// With SetHugePages(size), a mapping of at least size bytes starts on a
// multiple of size (mapped with room to spare, head and tail unmapped) and
// is advised MADV_HUGEPAGE, so that touching it faults in a whole huge
// page at a time: an 8 MiB block costs 4 faults instead of 2048. Its
// length is not rounded up: a tail shorter than a huge page is backed by
// small pages, so no block is resident beyond its last page.
//
// mremap keeps the advice (it is a flag of the mapping and moves with it)
// and moves page tables, not bytes: huge pages stay huge if the source and
// the destination are both huge-page aligned. So a grow that cannot be
// done in place moves the block to an aligned destination of its own
// choosing (a placeholder mapping, replaced with MREMAP_FIXED) rather than
// wherever the kernel would put it. A shrink never moves.

// SetHugePages turns huge pages on for mappings of at least size bytes (a
// power of two, the kernel's huge page size), or off with 0. It must be
// called before the allocator is used.
func (ms *Mappings) SetHugePages(size uintptr) { ms.huge = size }

// hugeBlock reports whether a mapping of size bytes gets huge pages.
func (ms *Mappings) hugeBlock(size uintptr) bool { return ms.huge != 0 && size >= ms.huge }

// adviseHuge advises [p, p+n) MADV_HUGEPAGE and reports whether the kernel
// took the advice. Refused advice is not an error: the block works the same
// with small pages.
func (ms *Mappings) adviseHuge(p unsafe.Pointer, n uintptr) bool {
	return ms.os.MadviseHuge(p, n) == nil
}

// growHuge grows m to size bytes, keeping its start huge-page aligned: in
// place if m is aligned and the address space after it is free, else moved
// to a fresh aligned range.
func (ms *Mappings) growHuge(m *Mapping, size uintptr) (unsafe.Pointer, error) {
	if m.Addr&(ms.huge-1) == 0 {
		if err := ms.os.MremapInPlace(m.ptr, m.Len, size); err == nil {
			return m.ptr, nil
		}
	}
	dst, err := ms.os.MmapAligned(size, ms.huge, unix.PROT_NONE, sys.MapNoReserve)
	if err != nil {
		return nil, err
	}
	p, err := ms.os.MremapTo(m.ptr, m.Len, size, dst)
	if err != nil {
		_ = ms.os.Munmap(dst, size)
		return nil, err
	}
	return p, nil
}
