package sys

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// What Linux offers, and so what the allocator uses.
const (
	// HasHugePages: transparent huge pages can be asked for with
	// MADV_HUGEPAGE (whether the kernel grants them is its THP mode's say).
	HasHugePages = true
	// MapNoReserve reserves address space without committing swap for it.
	MapNoReserve = unix.MAP_NORESERVE
)

// HasMremap: mappings grow, shrink and move with mremap, without copying
// their bytes. A variable so that a test can take the fallback (map, copy,
// unmap) on Linux too.
var HasMremap = true

const (
	mremapMayMove = unix.MREMAP_MAYMOVE
	mremapFixed   = unix.MREMAP_FIXED
)

func madvise(p unsafe.Pointer, n uintptr, advice int) error {
	return unix.Madvise(unsafe.Slice((*byte)(p), n), advice)
}

func releaseProtNone(p unsafe.Pointer, n uintptr) error { return madvise(p, n, unix.MADV_DONTNEED) }

func madviseHuge(p unsafe.Pointer, n uintptr) error {
	return madvise(p, n, unix.MADV_HUGEPAGE)
}

func mremap(p unsafe.Pointer, old, n uintptr, dst unsafe.Pointer, flags int) (unsafe.Pointer, error) {
	return unix.MremapPtr(p, old, dst, n, flags)
}
