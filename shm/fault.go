package shm

import (
	"fmt"
	"runtime/debug"
)

// A pool's file can be truncated by another process while this one maps
// it; touching a page past the new end raises SIGBUS. Every method of
// Pool runs with debug.SetPanicOnFault set on its goroutine, so that such
// a fault panics instead of killing the process, and a deferred unguard
// turns the panic into an error wrapping ErrFault. If the faulting
// goroutine held the pool's lock, its operation is rolled back and the
// lock released (if the header itself is gone, neither is possible, and
// every process will fault on the pool from now on).
//
// The same guard catches metadata that breaks an invariant badly enough
// to point outside the pool (ent, word): a corruption panic, turned into
// ErrCorrupt the same way.

// corruption is the panic of an index that would leave the pool.
type corruption string

// unguard is deferred with the previous SetPanicOnFault setting: it
// restores it, and turns a fault or corruption panic into *err. held is
// the operation's lock flag, nil where none is taken.
func (p *Pool) unguard(old bool, held *opState, err *error) {
	r := recover()
	debug.SetPanicOnFault(old)
	if r == nil {
		return
	}
	switch r := r.(type) {
	case corruption:
		*err = fmt.Errorf("shm: %s: %w", string(r), ErrCorrupt)
	case interface{ Addr() uintptr }:
		*err = fmt.Errorf("shm: access at %#x: %w", r.Addr(), ErrFault)
	default:
		p.abandon(held)
		panic(r)
	}
	p.abandon(held)
}

// abandon undoes what a panicking operation had done: rolls back and
// unlocks if it held the lock, and stops counting it as a waiter if it
// was still waiting.
func (p *Pool) abandon(held *opState) {
	switch {
	case held == nil:
	case held.held:
		p.abort(held)
	case held.waiting:
		held.waiting = false
		inLock.Add(-1)
	}
}

// abort rolls back the operation in progress and unlocks, as far as the
// pool's memory is still there.
func (p *Pool) abort(held *opState) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		if recover() != nil && held.held {
			held.held = false // the lock is beyond reach; this process no longer counts it
			inLock.Add(-1)
		}
		debug.SetPanicOnFault(old)
	}()
	p.rollback()
	p.unlock(held)
}

// Read copies bytes of the live block r, from offset off in it, into dst,
// and returns how many (up to the block's end). A fault — the pool's file
// truncated under this mapping — is returned as ErrFault, never a crash.
func (p *Pool) Read(r Ref, off int, dst []byte) (n int, err error) {
	return p.copyAt("read", r, off, func(b []byte) int { return copy(dst, b) })
}

// Write copies src into the live block r from offset off in it, and
// returns how many bytes it wrote (up to the block's end). A fault is
// returned as ErrFault, as by Read.
func (p *Pool) Write(r Ref, off int, src []byte) (n int, err error) {
	return p.copyAt("write", r, off, func(b []byte) int { return copy(b, src) })
}

// copyAt is Read and Write (op names which in errors): it checks that the
// pool is open and r is a live block with off inside it, then calls
// copyFn on the block from off, inside the call (done waits for it) and
// with a fault returned as ErrFault.
func (p *Pool) copyAt(op string, r Ref, off int, copyFn func(b []byte) int) (n int, err error) {
	if !p.use() {
		return 0, fmt.Errorf("shm: %v: %w", r, ErrClosed)
	}
	defer p.done() // the copy below is inside the call too
	b, err := p.Bytes(r)
	if err != nil {
		return 0, err
	}
	if off < 0 || off > len(b) {
		return 0, fmt.Errorf("shm: %s %v at %d of %d bytes: %w", op, r, off, len(b), ErrInvalidSize)
	}
	defer p.unguard(debug.SetPanicOnFault(true), nil, &err)
	return copyFn(b[off:]), nil
}
