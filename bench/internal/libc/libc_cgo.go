//go:build cgo

package libc

/*
#include <stdlib.h>
#include <malloc.h>
*/
import "C"

import (
	"runtime"
	"unsafe"
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
