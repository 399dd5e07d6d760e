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
