//go:build !linux

package sys

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// What macOS and the BSDs lack, and the allocator's fallbacks:
//
//   - no mremap: Realloc of a large block maps a new one, copies and
//     unmaps the old (the root package checks HasMremap);
//   - no MADV_HUGEPAGE nor transparent huge pages: Config.HugePages is
//     never in effect (the THP mode reads as "never": there is no
//     /sys/kernel/mm/transparent_hugepage);
//   - no MAP_NORESERVE on FreeBSD (macOS ignores it): reserving address
//     space PROT_NONE commits nothing there anyway;
//   - MADV_DONTNEED keeps the pages' contents (it only lowers their
//     priority), while the allocator counts on released pages reading as
//     zero (Calloc does not clear them). So a DONTNEED is done by mapping
//     fresh anonymous pages over the range (mmap MAP_FIXED, read and
//     write): the old pages go back to the kernel at once and the range
//     reads as zero, as on Linux. It is still counted as the madvise the
//     caller asked for. Callers that want the range inaccessible
//     mprotect it afterwards, as the region does when its break moves
//     down, or call ReleaseProtNone on a range already PROT_NONE.
const (
	HasHugePages = false
	MapNoReserve = 0
)

// HasMremap is false here: there is no mremap.
var HasMremap = false

const (
	mremapMayMove = 1
	mremapFixed   = 2
)

func madvise(p unsafe.Pointer, n uintptr, advice int) error {
	if advice == unix.MADV_DONTNEED {
		return remapZero(p, n, unix.PROT_READ|unix.PROT_WRITE)
	}
	return unix.Madvise(unsafe.Slice((*byte)(p), n), advice)
}

func releaseProtNone(p unsafe.Pointer, n uintptr) error { return remapZero(p, n, unix.PROT_NONE) }

func madviseHuge(unsafe.Pointer, uintptr) error { return ErrUnsupported }

func mremap(unsafe.Pointer, uintptr, uintptr, unsafe.Pointer, int) (unsafe.Pointer, error) {
	return nil, ErrUnsupported
}
