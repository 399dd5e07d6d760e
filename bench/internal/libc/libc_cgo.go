//go:build cgo

package libc

/*
#include <stdlib.h>
#include <malloc.h>
*/
import "C"

import "unsafe"

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
