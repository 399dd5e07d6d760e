// Package budget is the commit budget behind Config.Limit: the bytes an
// allocator has committed (the region up to its break plus every live
// mapping), capped. The arena and largealloc take from it before they ask
// the kernel for memory and give back what they release.
package budget

import "sync/atomic"

// Budget caps the bytes an allocator has committed: the region up to its
// break plus every live mapping. A zero limit means no cap. Shared by the
// arena and largealloc; lock-free.
type Budget struct {
	limit uint64
	used  atomic.Uint64
}

// New returns a budget of limit bytes (0: unlimited).
func New(limit uint64) *Budget { return &Budget{limit: limit} }

// Take reserves n bytes of the budget, reporting false if that would pass
// the limit.
func (b *Budget) Take(n uintptr) bool {
	if b.limit == 0 {
		b.used.Add(uint64(n))
		return true
	}
	for {
		u := b.used.Load()
		if u+uint64(n) > b.limit || u+uint64(n) < u {
			return false
		}
		if b.used.CompareAndSwap(u, u+uint64(n)) {
			return true
		}
	}
}

// Give returns n bytes to the budget.
func (b *Budget) Give(n uintptr) { b.used.Add(^uint64(n - 1)) }

// Used returns the bytes currently committed.
func (b *Budget) Used() uint64 { return b.used.Load() }

// Limit returns the cap (0: none).
func (b *Budget) Limit() uint64 { return b.limit }
