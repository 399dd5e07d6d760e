package arena

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/brkmap/alloc/internal/errs"
)

// A Side is a table beside the region: one byte of bookkeeping for each
// 1<<shift bytes of the reservation, found from the address alone, outside
// the Go heap. The fit heap's bitmap of blocks in use is one (a bit for
// each 16 bytes): a run's part of it is a window of the side, so a run that
// grows in place grows its bitmap in place — no copy, no garbage for the Go
// collector to find, no zeroing of memory the Go heap had used before —
// and a page of the table is touched, and resident, only once a block
// lives in the 512 KiB of the region it covers. (In a Go slice grown by
// append, the bitmap of a 16 MiB heap was allocated five times over as it
// grew: a replay of random-bal faulted 223 pages of the Go heap, 105 so,
// and 4,210 in all, 4,150 so.)
//
// The side is reserved with the region, in the same mapping, a guard page
// after its end (Config.SideShift), PROT_NONE as the region and never
// advised to huge pages; it is made writable from its start in steps of
// sideStep as its windows reach further (an mprotect for each 128 MiB of
// the region a bitmap covers), and unmapped with the region by Close: a
// window is read under the same rules as the region's memory.
type Side struct {
	r         *Region
	base      unsafe.Pointer
	n         uintptr // bytes reserved
	shift     uint
	committed atomic.Uintptr // bytes writable from base (written under r.mu)
}

// sideStep is the least a side is made writable by at a time.
const sideStep = 1 << 20

// sideBytes is the size of the side of a reservation of reserve bytes,
// and of the guard page before it (never made writable: a write past the
// region's end faults there, rather than landing in the bitmaps): a page
// more than it needs, for a window that takes the word after its last (a
// bitmap read two words at a time), rounded up to 2 MiB, so that the
// mapping stays a multiple of 2 MiB when the reservation is one (the
// kernel places such an anonymous mapping on a 2 MiB boundary, where
// transparent huge pages can back the region from its first page).
func sideBytes(reserve uintptr, shift uint, page uintptr) uintptr {
	if shift == 0 {
		return 0
	}
	return alignUp(page+reserve>>shift+page, max(page, 2<<20))
}

// Side returns the region's side (Config.SideShift), or nil.
func (r *Region) Side() *Side { return r.side }

// Words returns the side's n words for the region from address from on,
// writable: from-Base() must be a multiple of 8<<shift. The slice's
// capacity is its length, so that an append copies it out of the side
// rather than writing over the next window.
func (s *Side) Words(from uintptr, n int) ([]uint64, error) {
	off := (from - s.r.lo) >> s.shift
	end := off + uintptr(n)*8
	if !s.r.Contains(from) || (from-s.r.lo)&(8<<s.shift-1) != 0 || n < 0 || uintptr(n) > s.n/8 || end > s.n {
		return nil, fmt.Errorf("arena: %d words of a side at %#x: out of its bounds", n, from)
	}
	if end > s.committed.Load() {
		if err := s.commit(end); err != nil {
			return nil, err
		}
	}
	return unsafe.Slice((*uint64)(unsafe.Add(s.base, off)), n)[:n:n], nil
}

// commit makes the side writable up to end at least.
func (s *Side) commit(end uintptr) error {
	r := s.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("arena: a side of a closed region")
	}
	was := s.committed.Load()
	if end <= was {
		return nil
	}
	to := min(alignUp(end, sideStep), s.n)
	if err := r.os.Mprotect(unsafe.Add(s.base, was), to-was, unix.PROT_READ|unix.PROT_WRITE); err != nil {
		return fmt.Errorf("arena: %d bytes of a side: %w: %w", to-was, errs.ErrNoMemory, err)
	}
	s.committed.Store(to)
	return nil
}

// Release gives back to the kernel the whole pages of the side inside
// window w (from Words), which then read as zero, and returns the words
// of w it released, a run of them from index lo to hi (none: lo == hi);
// the words of w outside them are the caller's to clear. Words not of
// the side's committed bytes are refused, untouched.
func (s *Side) Release(w []uint64) (lo, hi int, err error) {
	if len(w) == 0 {
		return 0, 0, nil
	}
	off := uintptr(unsafe.Pointer(&w[0])) - uintptr(s.base) // the window's place in the side
	if end, c := off+uintptr(len(w))*8, s.committed.Load(); off >= c || end > c || end < off {
		// not words of this side (of the Go heap, another side, or this
		// one's once closed: the addresses may be anyone's now)
		return 0, 0, fmt.Errorf("arena: %d words at %p: not of the side", len(w), &w[0])
	}
	b, e := alignUp(off, s.r.page), (off+uintptr(len(w))*8)&^(s.r.page-1)
	if e <= b {
		return 0, 0, nil
	}
	if err := s.r.os.Madvise(unsafe.Add(s.base, b), e-b, unix.MADV_DONTNEED); err != nil {
		return 0, 0, err
	}
	return int(b-off) / 8, int(e-off) / 8, nil
}

// Committed returns the bytes of the side made writable so far.
func (s *Side) Committed() uintptr { return s.committed.Load() }
