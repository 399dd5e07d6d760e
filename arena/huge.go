package arena

import (
	"unsafe"

	"github.com/brkmap/alloc/internal/sys"
	"golang.org/x/sys/unix"
)

// Huge pages for the region (Config.HugePageSize non-zero).
//
// The reservation starts on a huge page boundary and is advised
// MADV_HUGEPAGE once, as a whole, when it is made: the advice is a flag of
// the mapping, and the pieces mprotect later splits off inherit it, so
// moving the break costs no extra call. The break then only ever stops on
// huge page boundaries: it moves up to the next boundary past what is
// needed plus TopPad, and down to the first boundary at or above the start
// of the top free run plus TopPad. Every huge page below the break is then
// either wholly in use or wholly given back, never cut in two by the break.
//
// The price is coarser release. A huge page is resident as a whole once
// any byte of it is touched, and the top is given back in whole huge pages
// only, so up to one huge page more than TopPad stays above the last live
// run. Trim still releases everything free: it releases each free run with
// MADV_DONTNEED, which on part of a huge page splits it and frees the small
// pages of the run. (khugepaged may later collapse such a split range back
// into a huge page if it still holds live pages: the kernel's
// khugepaged/max_ptes_none says how many empty small pages it fills to do
// so.)

// reserveRange maps the reservation, and side bytes after it (a side:
// side.go): huge-page aligned, and the reservation alone advised, when
// huge is non-zero.
func reserveRange(os *sys.OS, reserve, side, huge uintptr) (unsafe.Pointer, error) {
	if huge == 0 {
		return os.Mmap(reserve+side, unix.PROT_NONE, sys.MapNoReserve)
	}
	p, err := os.MmapAligned(reserve+side, huge, unix.PROT_NONE, sys.MapNoReserve)
	if err != nil {
		return nil, err
	}
	if err := os.MadviseHuge(p, reserve); err != nil {
		_ = os.Munmap(p, reserve+side)
		return nil, err
	}
	return p, nil
}

// hugeUp returns n, or with huge pages the smallest m >= n such that
// from+m is on a huge page boundary (never past the reservation's end,
// which is one).
func (r *Region) hugeUp(from, n uintptr) uintptr {
	if r.huge == 0 {
		return n
	}
	return alignUp(from+n, r.huge) - from
}

// Reservation returns the region's whole reserved range [lo, hi).
func (r *Region) Reservation() (lo, hi uintptr) { return r.lo, r.hi }
