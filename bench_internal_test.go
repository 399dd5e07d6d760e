package alloc_test

import (
	"fmt"
	"testing"

	"github.com/brkmap/alloc"
)

// BenchmarkPair is the small fast path: Malloc, write one byte, Free.
func BenchmarkPair(b *testing.B) {
	for _, n := range []int{16, 64, 1024, 32768} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			a, _ := alloc.New(alloc.Config{})
			defer a.Close()
			b.ReportAllocs()
			for b.Loop() {
				p, _ := a.Malloc(n)
				p[0] = 1
				_ = a.Free(p)
			}
		})
	}
}
