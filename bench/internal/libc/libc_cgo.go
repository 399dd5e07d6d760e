//go:build cgo

package libc

/*
#include <stdlib.h>
#include <malloc.h>
#include <unistd.h>
*/
import "C"

import (
	"runtime"
	"unsafe"

	"github.com/brkmap/alloc/internal/sys"
)

// init keeps the main goroutine on the main thread: glibc serves the
// main thread from its main arena (the break), and gives every other
// thread that calls malloc an arena of its own. A Go program's goroutine
// moves between threads, so without this one replay would spread over
// several arenas, where a C program (the comparison the libc policy
// stands for) uses one. Every measured run of bench is made on the main
// goroutine of its child process.
func init() { runtime.LockOSThread() }

// Available reports whether glibc can be called (cgo is on).
const Available = true

// MmapThreshold is mallopt's M_MMAP_THRESHOLD parameter.
const MmapThreshold = int(C.M_MMAP_THRESHOLD)

// Malloc is malloc(3).
func Malloc(n int) unsafe.Pointer { return C.malloc(C.size_t(n)) }

// Realloc is realloc(3).
func Realloc(p unsafe.Pointer, n int) unsafe.Pointer { return C.realloc(p, C.size_t(n)) }

// Free is free(3).
func Free(p unsafe.Pointer) { C.free(p) }

// Trim is malloc_trim(0).
func Trim() int { return int(C.malloc_trim(0)) }

// Mallopt is mallopt(3); it returns 1 on success.
func Mallopt(param, value int) int { return int(C.mallopt(C.int(param), C.int(value))) }

// Mallinfo2 returns glibc's own account of its heap (mallinfo2(3)): the
// bytes of every arena got from the kernel (arena: from the break, or the
// heaps of other arenas), the bytes of chunks in their own mappings
// (hblkhd), and the bytes of chunks in use in the arenas (uordblks). It
// allocates nothing on the Go heap.
func Mallinfo2() (arena, hblkhd, uordblks uint64) {
	m := C.mallinfo2()
	return uint64(m.arena), uint64(m.hblkhd), uint64(m.uordblks)
}

// Break returns the program break, sbrk(0): the end of glibc's main arena
// while the break is contiguous.
func Break() unsafe.Pointer { return unsafe.Pointer(C.sbrk(0)) }

// HeapResident measures with mincore the bytes resident between from (a
// break returned by Break earlier) and the break now: what glibc's main
// arena grew by and holds in RAM. vec is scratch space, kept between
// calls.
func HeapResident(from unsafe.Pointer, vec *[]byte) uint64 {
	to := Break()
	if uintptr(to) <= uintptr(from) {
		return 0
	}
	n, err := mincoreOS.Resident(from, uintptr(to)-uintptr(from), vec)
	if err != nil {
		return 0
	}
	return uint64(n)
}

var mincoreOS sys.OS
