package sys

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ResidentPages asks the kernel with mincore which pages of [p, p+n) are
// resident, and returns one byte a page (bit 0 set: resident). The result
// lives in *vec, scratch space grown as needed, and is valid until vec is
// used again.
func (s *OS) ResidentPages(p unsafe.Pointer, n uintptr, vec *[]byte) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	pages := (n + PageSize - 1) / PageSize
	if uintptr(cap(*vec)) < pages {
		*vec = make([]byte, pages)
	}
	v := (*vec)[:pages]
	if err := s.enter(OpMincore); err != nil {
		return nil, err
	}
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(p), n, uintptr(unsafe.Pointer(&v[0])))
	if e != 0 {
		return nil, syscall.Errno(e)
	}
	return v, nil
}
