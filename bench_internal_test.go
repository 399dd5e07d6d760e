package alloc_test

import (
	"fmt"
	"testing"

	"github.com/brkmap/alloc"
)

// BenchmarkPair is the small fast path: Malloc (or Calloc), write one byte,
// Free; with Debug off and on, to show what Debug costs. The suite against
// the peers is in bench/peers_test.go.
func BenchmarkPair(b *testing.B) {
	for _, debug := range []bool{false, true} {
		for _, op := range []string{"malloc", "calloc"} {
			for _, n := range []int{16, 64, 1024, 32768} {
				b.Run(fmt.Sprintf("debug=%v/op=%s/size=%d", debug, op, n), func(b *testing.B) {
					a, err := alloc.New(alloc.Config{Debug: debug})
					if err != nil {
						b.Fatal(err)
					}
					defer a.Close()
					get := a.Malloc
					if op == "calloc" {
						get = a.Calloc
					}
					b.ReportAllocs()
					for b.Loop() {
						p, err := get(n)
						if err != nil {
							b.Fatal(err)
						}
						p[0] = 1
						if err := a.Free(p); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// BenchmarkStart is what an Allocator costs before its first block is
// back: New, one Malloc of each layer a program meets first (a small
// class and the best-fit heap, whose first run makes the page map's first
// chunk), the Frees and Close. A short program, or a replay of a few
// thousand operations, pays it once; the Go heap's share (the page map,
// the run's bitmaps, a P's cache and front) is scanned by every GC cycle
// after.
func BenchmarkStart(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		a, err := alloc.New(alloc.Config{})
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{100, 4095} {
			p, err := a.Malloc(n)
			if err != nil {
				b.Fatal(err)
			}
			p[0] = 1
			if err := a.Free(p); err != nil {
				b.Fatal(err)
			}
		}
		if err := a.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
