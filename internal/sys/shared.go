package sys

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// MmapShared maps n bytes of the file fd from its start, MAP_SHARED and
// readable and writable: the mapping of a shared or file-backed pool
// (package shm), whose stores every process that maps the file sees.
// Counted as an mmap.
func (s *OS) MmapShared(fd int, n uintptr) (unsafe.Pointer, error) {
	if err := s.enter(OpMmap); err != nil {
		return nil, err
	}
	return unix.MmapPtr(fd, 0, nil, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

// Msync writes the dirty pages of the shared mapping [p, p+n) back to its
// file and waits for the writes (MS_SYNC).
func (s *OS) Msync(p unsafe.Pointer, n uintptr) error {
	if err := s.enter(OpMsync); err != nil {
		return err
	}
	return unix.Msync(unsafe.Slice((*byte)(p), n), unix.MS_SYNC)
}
