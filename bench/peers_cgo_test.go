//go:build cgo

package main

import (
	"testing"
	"unsafe"

	"github.com/brkmap/alloc/bench/libc"
)

// glibc is the system malloc through cgo.
type glibc struct{}

func (glibc) Malloc(n int) ([]byte, error) { return unsafe.Slice((*byte)(libc.Malloc(n)), n), nil }
func (glibc) Free(b []byte) error          { libc.Free(unsafe.Pointer(unsafe.SliceData(b))); return nil }

func init() {
	g := peer{name: "glibc", make: func(testing.TB) allocator { return glibc{} }}
	peers = append(peers, g)
	largePeers = append(largePeers, g)
}
