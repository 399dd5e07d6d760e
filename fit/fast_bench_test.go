package fit

import "testing"

// BenchmarkFastPair is a medium Alloc and Free of one size, over and
// over: the fast bins' own path (popFast, handOut; check, pushFast).
func BenchmarkFastPair(b *testing.B) {
	h, r := newHeap(b)
	keep, err := h.Alloc(3000) // the block before: the chunk freed never merges
	if err != nil {
		b.Fatal(err)
	}
	_ = keep
	for b.Loop() {
		p, err := h.Alloc(1500)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.Free(r.Lookup(uintptr(p)), uintptr(p)); err != nil {
			b.Fatal(err)
		}
	}
}
