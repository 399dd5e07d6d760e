//go:build !cgo

package libc

import "unsafe"

// Available reports whether glibc can be called (cgo is on).
const Available = false

// MmapThreshold is mallopt's M_MMAP_THRESHOLD parameter (meaningless
// without cgo).
const MmapThreshold = -3

const msg = "libc: built without cgo: the glibc baseline is not available"

func Malloc(n int) unsafe.Pointer                          { panic(msg) }
func Realloc(p unsafe.Pointer, n int) unsafe.Pointer       { panic(msg) }
func Free(p unsafe.Pointer)                                { panic(msg) }
func Trim() int                                            { panic(msg) }
func Mallopt(param, value int) int                         { panic(msg) }
func Mallinfo2() (arena, hblkhd, uordblks uint64)          { panic(msg) }
func Break() unsafe.Pointer                                { panic(msg) }
func HeapResident(from unsafe.Pointer, vec *[]byte) uint64 { panic(msg) }
