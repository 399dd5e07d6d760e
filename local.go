package alloc

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/slab"
)

// Local is a handle on an Allocator owned by one goroutine — a worker, a
// connection, a request — with its own cache of free blocks: mimalloc's
// first-class heaps. Its small Malloc and Free pop and push its own bins
// with no pinning to a P, no lock and no atomic instruction, which makes
// them cheaper than the Allocator's (see the README's speed table).
//
// A Local is not safe for concurrent use: one goroutine at a time (hand it
// over with the usual synchronization, a channel or a mutex). In race
// builds, two goroutines using one Local unsynchronized are reported by
// the race detector.
//
// Blocks are shared with the Allocator: a block a Local hands out may be
// freed by the Allocator's Free (from any goroutine) or by another Local,
// and a Local's Free takes any block of the Allocator. Freed small blocks
// go on the Local's bins, up to the same bound as a P cache's bins (16 KiB
// of blocks a class), then back to their slabs in batches.
//
// Close gives the cached blocks back; every call after Close returns
// ErrClosed. Until then, Trim does not take its cached blocks (its owner
// may be using them); a Local dropped without Close gives them back once
// the garbage collector finds it unreachable (a cleanup), but Close is
// what gives them back at once. The Allocator's Close may run with Locals still
// open: their later calls return ErrClosed, and their Close does nothing.
// Stats counts a Local's cached blocks in CachedBytes, as a P cache's.
type Local struct {
	c       *slab.Local // nil for a zero Allocator's
	a       *Allocator
	small   uint            // the Allocator's smallLimit: requests below it go to the bins
	steps   *steps          // the Allocator's: which medium requests go to the bins too
	cleanup runtime.Cleanup // closes c if the Local is dropped unclosed
}

// NewLocal returns a Local on a; close it when the goroutine is done with
// it. With Debug, a Local has no bins: every call takes the Allocator's
// paths, with all of Debug's checks.
func (a *Allocator) NewLocal() *Local {
	l := &Local{a: a}
	if a.slabs != nil {
		l.c = a.slabs.NewLocal()
		l.small, l.steps = a.smallLimit, &a.steps
		l.cleanup = runtime.AddCleanup(l, closeLocal, localOf{a, l.c})
	}
	return l
}

// localOf is what a dropped Local's cleanup needs: not the Local itself,
// which must be unreachable for the cleanup to run.
type localOf struct {
	a *Allocator
	c *slab.Local
}

// closeLocal gives a Local's blocks back: its Close, and the cleanup of
// one dropped unclosed (nobody uses it then).
func closeLocal(l localOf) {
	if l.a.enter() {
		l.c.Close()
		l.a.leave(nil)
	} else {
		l.c.Drop() // the Allocator is closing: its memory is going
	}
}

// Malloc is Allocator.Malloc from the Local's bins.
func (l *Local) Malloc(n int) ([]byte, error) {
	if slabCached(uint(n), l.small, l.steps) {
		if p := l.c.AllocFast(slab.ClassOf(uintptr(n)), uintptr(n)); p != nil {
			return bytesAt(p, n), nil
		}
	} else if uint(n) < l.small {
		// a medium block: the Allocator's own path (this P's front, else
		// the best-fit heap's lock, outside the gate: gate.go)
		if err := l.usable(); err != nil {
			return nil, err
		}
		return l.a.Malloc(n)
	}
	return l.allocSlow(n, false)
}

// Calloc is Allocator.Calloc from the Local's bins.
func (l *Local) Calloc(n int) ([]byte, error) { return l.allocSlow(n, true) }

// allocSlow is the Local's allocation inside the gate: the bins' Refill
// for a small request, the Allocator's alloc for the rest; zeroed, the
// block is cleared unless known zero.
func (l *Local) allocSlow(n int, zeroed bool) ([]byte, error) {
	a := l.a
	if n < 0 {
		return nil, fmt.Errorf("%w: %d", ErrInvalidSize, n)
	}
	if err := l.usable(); err != nil {
		return nil, err
	}
	if !a.enter() {
		return nil, ErrClosed
	}
	var (
		p    unsafe.Pointer
		zero bool
		err  error
	)
	if slabCached(uint(n), l.small, l.steps) {
		// Refill pops the bin first (counting the sample, which AllocFast
		// leaves to it): Malloc's AllocFast is not tried again.
		c := int(slab.ClassOf(uintptr(n)))
		var sampled bool
		p, zero, sampled, err = l.c.Refill(c, uintptr(n))
		if a.hotAtCap(uintptr(n), 16, err) {
			p, zero, sampled, err = a.fitBlock(uintptr(n), slab.ClassSize(c))
		}
		if sampled {
			a.prof.record(p, n)
		}
	} else {
		p, zero, err = a.alloc(n, 16, false)
	}
	b := blockAt(p, n, zeroed, zero, err)
	a.leave(b)
	return b, err
}

// usable says whether the Local may be used: ErrClosed after its Close or
// the Allocator's, ErrNotInitialized for a zero Allocator's.
func (l *Local) usable() error {
	if err := l.a.usable(); err != nil {
		return err
	}
	if l.c != nil && l.c.Closed() {
		return errLocalClosed
	}
	return nil
}

// errLocalClosed is what a closed Local's calls return: ErrClosed to
// errors.Is, with a message naming the handle (the Allocator may be open).
var errLocalClosed error = localClosed{}

type localClosed struct{}

func (localClosed) Error() string { return "alloc: use of a closed Local" }
func (localClosed) Unwrap() error { return ErrClosed }

// Free is Allocator.Free onto the Local's bins: any block of the
// Allocator, whoever allocated it. A bad free returns ErrDoubleFree or
// ErrInvalidFree and changes nothing.
func (l *Local) Free(b []byte) error {
	if b == nil {
		return nil
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	if cap(b) != 0 {
		run := l.a.pages.Lookup(uintptr(p))
		if run != nil && run.Kind() == arena.KindSlab && l.c.FreeFast(run, p) {
			return nil
		}
		if run != nil && run.Kind() == arena.KindFit {
			// a medium block: the Allocator's own path, as Malloc's (no
			// run of the best-fit heap exists under Debug)
			if err := l.usable(); err != nil {
				return err
			}
			if l.a.fit.FreeFast(run, uintptr(p)) {
				return nil
			}
			return l.a.fitFree(run, p)
		}
	}
	return l.freeSlow(b)
}

// freeSlow is the Local's Free inside the gate: a small block onto the
// bins (Local.Free), anything else the Allocator's way.
func (l *Local) freeSlow(b []byte) error {
	if err := l.usable(); err != nil {
		return err
	}
	a := l.a
	if cap(b) == 0 || l.c == nil || a.debug {
		return a.Free(b) // a block of 0 bytes or refused; Debug: its checks
	}
	if !a.enter() {
		return ErrClosed
	}
	defer a.leave(nil)
	p := addrOf(b)
	if !a.region.Contains(p) {
		return a.free(b)
	}
	run, err := a.regionRun(p)
	if err != nil || run.Kind() != arena.KindSlab {
		return a.free(b) // the same error, or a mid-size block
	}
	_, err = l.c.Free(run, p)
	return err
}

// Realloc is Allocator.Realloc; Realloc(nil, n) is the Local's Malloc. A
// block resized in place stays where it is; one that moves is allocated
// and freed the Allocator's way.
func (l *Local) Realloc(b []byte, n int) ([]byte, error) {
	if b == nil {
		return l.Malloc(n)
	}
	if err := l.usable(); err != nil {
		return nil, err
	}
	return l.a.Realloc(b, n)
}

// Close gives the Local's cached blocks back to their slabs. Every later
// call of the Local returns ErrClosed. Closing twice, or after the
// Allocator's Close, does nothing and returns nil.
func (l *Local) Close() error {
	if l.c == nil {
		return l.a.usable()
	}
	l.cleanup.Stop()
	closeLocal(localOf{l.a, l.c})
	return nil
}
