//go:build cgo

// Package libc is the glibc baseline: the system malloc through cgo, for
// the benchmarks and the replay's libc policy. Without cgo it still builds
// (Available is false and every function panics), so the library and
// `go vet ./...` never need a C compiler.
package libc

/*
#include <stdlib.h>
#include <malloc.h>

// pair allocates and frees n bytes count times, writing one byte each time,
// in one cgo call: glibc's own cost without cgo's.
static void pair(size_t n, long count) {
	for (long i = 0; i < count; i++) {
		volatile char *p = malloc(n);
		p[0] = 1;
		free((void *)p);
	}
}
*/
import "C"

import "unsafe"

// Available reports whether glibc can be called (cgo is on).
const Available = true

// Mallopt parameters.
const (
	MmapThreshold = int(C.M_MMAP_THRESHOLD)
	TrimThreshold = int(C.M_TRIM_THRESHOLD)
	TopPad        = int(C.M_TOP_PAD)
	MmapMax       = int(C.M_MMAP_MAX)
)

// Malloc is malloc(3).
func Malloc(n int) unsafe.Pointer { return C.malloc(C.size_t(n)) }

// Calloc is calloc(3) of n bytes.
func Calloc(n int) unsafe.Pointer { return C.calloc(1, C.size_t(n)) }

// Realloc is realloc(3).
func Realloc(p unsafe.Pointer, n int) unsafe.Pointer { return C.realloc(p, C.size_t(n)) }

// Free is free(3).
func Free(p unsafe.Pointer) { C.free(p) }

// Trim is malloc_trim(0).
func Trim() int { return int(C.malloc_trim(0)) }

// Mallopt is mallopt(3); it returns 1 on success.
func Mallopt(param, value int) int { return int(C.mallopt(C.int(param), C.int(value))) }

// Pair runs count malloc+write+free pairs of n bytes inside one cgo call.
func Pair(n, count int) { C.pair(C.size_t(n), C.long(count)) }
