package slab

import (
	"fmt"
	"unsafe"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/errs"
)

// The direct paths, for Debug mode: one block at a time straight between
// the caller and its class's slabs, under the class lock, no P cache.

// AllocDirect is Alloc without the P caches: one block straight from the
// class's slabs under its lock. It also says whether the block was on a
// slab's free list (handed out and freed before) rather than never used.
func (p *Pool) AllocDirect(c int, n uintptr) (ptr unsafe.Pointer, zero, reused, sampled bool, err error) {
	cl := &p.classes[c]
	var one [1]entry
	cl.mu.Lock()
	k, err := p.takeLocked(cl, one[:])
	bad := cl.takeBadLocked()
	cl.mu.Unlock()
	if bad != nil {
		p.reportBad(cl, bad, one[:k])
	}
	if err != nil {
		return nil, false, false, false, err
	}
	e := one[0]
	v := loadState(e.st)
	cl.mu.Lock()
	sampled = cl.nextSample.due(&p.opts.ProfileRate, n)
	handOut(e.st, cl.size, n, sampled, &cl.counts)
	cl.mu.Unlock()
	return e.p, v == stateZero, v == stateCached, sampled, nil
}

// FreeDirect is Free without the P caches: the block goes straight back on
// its slab's free list (its first 4 bytes become the link). It returns the
// size that had been requested.
func (p *Pool) FreeDirect(run *arena.Run, addr uintptr) (uintptr, error) {
	st, c, err := p.state(run, addr)
	if err != nil {
		return 0, err
	}
	cl := &p.classes[c]
	cl.mu.Lock()
	defer cl.mu.Unlock()
	v, ok := takeAny(st)
	if !ok {
		return 0, fmt.Errorf("%w: %d-byte block at %#x", errs.ErrDoubleFree, classSize[c], addr)
	}
	p.sampledFree(v, addr)
	n := requested(cl.size, v)
	cl.takeBack(n)
	p.giveBackLocked(cl, []entry{{p: p.region.Ptr(addr), st: st}})
	return n, nil
}
