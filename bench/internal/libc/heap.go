// Package libc is the glibc baseline: the system malloc through cgo, for
// the benchmarks and the replay's libc policy. The cgo calls are in
// libc_cgo.go, behind the cgo build constraint; without cgo the package
// still builds (Available is false and every function panics), so the
// library and `go vet ./...` never need a C compiler. Heap is the one
// adapter that gives glibc the allocator's shape (blocks as []byte).
package libc

import (
	"fmt"
	"unsafe"

	"github.com/brkmap/alloc"
)

// Heap is glibc's malloc with the allocator's methods: blocks are slices
// over C memory. It has no state; glibc's own lock guards it.
type Heap struct{}

// errNull is what a NULL from malloc or realloc becomes.
var errNull = fmt.Errorf("libc: malloc returned NULL: %w", alloc.ErrOutOfMemory)

// Malloc is malloc(3) of n bytes as a slice.
func (Heap) Malloc(n int) ([]byte, error) {
	p := Malloc(n)
	if p == nil {
		return nil, errNull
	}
	return unsafe.Slice((*byte)(p), n), nil
}

// Realloc is realloc(3); Realloc(nil, n) allocates, and a size of 0 keeps
// a block of 1 byte (realloc(p, 0) would free p).
func (Heap) Realloc(b []byte, n int) ([]byte, error) {
	var old unsafe.Pointer
	if b != nil {
		old = unsafe.Pointer(unsafe.SliceData(b))
	}
	p := Realloc(old, max(n, 1))
	if p == nil {
		return nil, errNull
	}
	return unsafe.Slice((*byte)(p), n), nil
}

// Free is free(3); Free(nil) does nothing.
func (Heap) Free(b []byte) error {
	if b != nil {
		Free(unsafe.Pointer(unsafe.SliceData(b)))
	}
	return nil
}

// Trim is malloc_trim(0).
func (Heap) Trim() int { return Trim() }
