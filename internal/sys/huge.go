package sys

import (
	"unsafe"

	"github.com/brkmap/alloc/internal/errs"
)

// MadviseHuge advises [p, p+n) MADV_HUGEPAGE: let the kernel back it with
// huge pages (in THP madvise mode, only advised ranges get them). Counted
// as a madvise call. Only where HasHugePages; elsewhere ErrUnsupported.
func (s *OS) MadviseHuge(p unsafe.Pointer, n uintptr) error {
	if err := s.enter(OpMadvise); err != nil {
		return err
	}
	return madviseHuge(p, n)
}

// MremapInPlace resizes the mapping [p, p+old) to n bytes without moving
// it; it fails (ENOMEM) if the pages after it are taken. Only where
// HasMremap.
func (s *OS) MremapInPlace(p unsafe.Pointer, old, n uintptr) error {
	if err := s.enter(OpMremap); err != nil {
		return err
	}
	_, err := mremap(p, old, n, nil, 0)
	return err
}

// MremapTo moves the mapping [p, p+old) to dst, resized to n bytes,
// replacing whatever was mapped at [dst, dst+n). Page tables move with it:
// huge pages stay huge when p and dst are both huge-page aligned. Only
// where HasMremap.
func (s *OS) MremapTo(p unsafe.Pointer, old, n uintptr, dst unsafe.Pointer) (unsafe.Pointer, error) {
	if err := s.enter(OpMremap); err != nil {
		return nil, err
	}
	return mremap(p, old, n, dst, mremapMayMove|mremapFixed)
}

// MmapAligned maps n bytes (a multiple of the page size) starting at a
// multiple of align (a power of two above the page size) by mapping
// n+align-page bytes and unmapping the head and tail. It costs one mmap and
// one or two munmaps.
func (s *OS) MmapAligned(n, align uintptr, prot, flags int) (unsafe.Pointer, error) {
	extra := align - PageSize
	if n+extra < n {
		return nil, errs.ErrNoMemory
	}
	p, err := s.Mmap(n+extra, prot, flags)
	if err != nil {
		return nil, err
	}
	start := uintptr(p)
	head := (start+align-1)&^(align-1) - start
	if head > 0 {
		if err := s.Munmap(p, head); err != nil {
			_ = s.Munmap(p, n+extra)
			return nil, err
		}
		p = unsafe.Add(p, head)
	}
	if tail := extra - head; tail > 0 {
		if err := s.Munmap(unsafe.Add(p, n), tail); err != nil {
			_ = s.Munmap(p, n+tail)
			return nil, err
		}
	}
	return p, nil
}
