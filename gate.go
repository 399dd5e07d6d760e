package alloc

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The gate between Close and the calls in flight, and the delivery of
// corruption reports.
//
// Close must not unmap memory that a call is still using. The fast paths
// (a small Malloc popped from this P's cache, a small Free pushed on it)
// touch no memory of the allocator's but Go memory (the caches, the slabs'
// states), and Close retires the caches only once every pinned section has
// ended (slab's drain), so they need nothing more; nor do a P's front's
// (fit's fronts: Close drains them the same way). A medium Malloc or Free
// that goes to the best-fit heap's lock does not enter the gate either:
// the lock orders it with Close, which closes the heap under it before
// the region goes, and the heap refuses every call after that
// (ErrClosed); such a call delivers the reports it found as leave does,
// and a refused one delivers nothing, as a call enter refuses.
// That saves the gate's two atomic additions on a path that takes a lock
// anyway (coalescing-bal's 4 and 8 KiB blocks: 900 -> 755 ns a cycle of
// three pairs, with the two changes beside it: fit's AllocSampled). Every
// other call — the slow paths, Calloc (it clears the block), Realloc (it
// copies), Trim, Stats — enters the gate: one atomic add on the way in and
// one on the way out. Close sets gateClosed, after which enter fails (the
// call returns ErrClosed), waits until the calls inside have left, and
// only then drains the caches and unmaps.
//
// Corruption reports are found inside the gate, often under a lock (a
// class's, the region's). They are queued and delivered by leave, when
// the call that found them holds no lock and is no longer counted in the
// gate (and what Close finds as it drains the caches, by Close once it
// holds no lock), so a handler may call anything — Stats, Malloc, Free, even Close —
// and a handler that panics leaves the allocator usable. If a handler
// panics while the call delivering it was handing out a block, that block
// is freed first: the caller never gets it, and nothing leaks.

// gateClosed is added to Allocator.gate by Close; the bits below it count
// the calls in flight.
const gateClosed = 1 << 62

// enter counts a call in, or reports false if the allocator is closed.
func (a *Allocator) enter() bool {
	if a.gate.Add(1)&gateClosed != 0 {
		a.gate.Add(-1)
		return false
	}
	return true
}

// leave counts a call out and delivers the corruption reports waiting. b
// is the block the call is handing out (nil if none): freed if a handler
// panics.
func (a *Allocator) leave(b []byte) {
	a.gate.Add(-1)
	if a.reports.n.Load() != 0 {
		a.deliver(b)
	}
}

// waitGate waits until every call that entered the gate has left; the
// caller has set gateClosed.
func (a *Allocator) waitGate() {
	for i := 0; a.gate.Load() != gateClosed; i++ {
		if i < 64 {
			runtime.Gosched()
		} else {
			time.Sleep(20 * time.Microsecond)
		}
	}
}

// reportQueue holds corruption reports found and not yet delivered.
type reportQueue struct {
	n  atomic.Int32 // len(q), read without mu by leave
	mu sync.Mutex
	q  []*Corruption
}

func (q *reportQueue) push(c *Corruption) {
	q.mu.Lock()
	q.q = append(q.q, c)
	q.n.Store(int32(len(q.q)))
	q.mu.Unlock()
}

func (q *reportQueue) pop() *Corruption {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.q) == 0 {
		return nil
	}
	c := q.q[0]
	q.q[0] = nil
	q.q = q.q[1:]
	q.n.Store(int32(len(q.q)))
	return c
}

// deliver hands every queued report to OnCorruption (or panics with it).
// If one panics, b — the block the call was handing out — is freed before
// the panic goes on.
func (a *Allocator) deliver(b []byte) {
	delivered := false
	defer func() {
		if !delivered && b != nil && a.enter() {
			_ = a.freeAny(b)
			a.gate.Add(-1)
		}
	}()
	for c := a.reports.pop(); c != nil; c = a.reports.pop() {
		if a.onCorruption == nil {
			panic(c)
		}
		a.onCorruption(c)
	}
	delivered = true
}
