package alloc

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// nameMapping names [p, p+n) testName in /proc/self/maps (an anonymous
// mapping's name, Linux 5.17 and later), and reports whether the kernel
// did.
func nameMapping(p, n uintptr) bool {
	name := []byte(testName + "\x00")
	return unix.Prctl(unix.PR_SET_VMA, unix.PR_SET_VMA_ANON_NAME, p, n, uintptr(unsafe.Pointer(&name[0]))) == nil
}
