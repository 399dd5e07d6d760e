package zerocopy

import "syscall"

// ReadOnce is readOnce, for the tests.
func ReadOnce(rc syscall.RawConn, op func(fd int) (int, error), end error) (int, error) {
	return readOnce(rc, op, end)
}

// SetFailHook makes every system call of this package ask f first (nil:
// none), as the kernel refusing it; the returned function restores the
// previous hook. Tests only, not in parallel.
func SetFailHook(f func(Op) error) (restore func()) {
	var p *func(Op) error
	if f != nil {
		p = &f
	}
	old := failHook.Swap(p)
	return func() { failHook.Store(old) }
}
