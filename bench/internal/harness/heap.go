package harness

import "github.com/brkmap/alloc/bench/internal/sampler"

// Heap is what a replay or a workload allocates from: this allocator
// under one policy, or glibc's malloc (libc.Heap).
type Heap interface {
	Malloc(n int) ([]byte, error)
	Realloc(b []byte, n int) ([]byte, error)
	Free(b []byte) error
	Trim() int
}

// CountingHeap counts the bytes live in a heap — glibc cannot say, and
// a workload's peak must not depend on when samples fall — and, given a
// sampler, makes it sample each time the live bytes pass their previous
// peak by 1/32 (at least 16 KiB), so that short peaks are measured too.
// The sample is taken at the next call, once the caller has written the
// block that made the peak (an untouched block is not resident yet).
// A malloc or a free that changes the live bytes by BigEvent or more
// takes a sample too (Sampler.Event), after the block is written or
// freed, so that every cycle of a large buffer shows in the series.
// It belongs to the one goroutine of the run: no lock.
type CountingHeap struct {
	Heap
	Live, Peak uint64
	S          *sampler.Sampler // nil: no extra samples

	nextMark uint64
	pending  bool // a new peak to sample at the next call
	event    bool // a large block to sample at the next call
}

// BigEvent is the change of live bytes (16 pages) that takes a sample.
const BigEvent = 64 << 10

func (c *CountingHeap) before() {
	if c.pending {
		c.pending = false
		c.S.Mark("")
	} else if c.event {
		c.event = false
		c.S.Event()
	}
}

func (c *CountingHeap) grew(n uint64) {
	if c.S != nil && n >= BigEvent && n < 1<<63 {
		c.event = true
	}
	c.Live += n
	if c.Live > c.Peak {
		c.Peak = c.Live
		if c.S != nil && c.Live >= c.nextMark {
			c.pending = true
			c.nextMark = c.Live + max(c.Live/32, 16<<10)
		}
	}
}

func (c *CountingHeap) Malloc(n int) ([]byte, error) {
	c.before()
	b, err := c.Heap.Malloc(n)
	if err == nil {
		c.grew(uint64(n))
	}
	return b, err
}

func (c *CountingHeap) Realloc(b []byte, n int) ([]byte, error) {
	c.before()
	nb, err := c.Heap.Realloc(b, n)
	if err == nil {
		c.grew(uint64(n) - uint64(len(b)))
	}
	return nb, err
}

func (c *CountingHeap) Free(b []byte) error {
	c.before()
	err := c.Heap.Free(b)
	if err == nil {
		c.Live -= uint64(len(b))
		if c.S != nil && len(b) >= BigEvent {
			c.S.Event()
		}
	}
	return err
}

func (c *CountingHeap) Trim() int {
	c.before()
	return c.Heap.Trim()
}
