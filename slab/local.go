package slab

import (
	"unsafe"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/errs"
)

// Local is a cache owned by one goroutine (mimalloc's first-class heap):
// the same bins as a P's cache, with no pinning, since only its owner
// touches them. Blocks move between a Local and the classes in batches,
// as a P's cache's do, and a Local may free any block of the Pool (a
// block a Local handed out may be freed anywhere). A Local is not safe
// for concurrent use; in race builds its owner's calls write a field the
// detector watches, so two goroutines using one Local are reported
// (ownerCheck), and a mutex lets Stats read the bins (localLock).
//
// Pool.Stats counts a Local's bins like a P cache's; Trim and Pool.Close
// do not touch them (the owner may be using them): Close returns them to
// the classes. After the Pool is closed, AllocFast finds nothing (the
// check of the Pool's closed is the one load the per-P path does not
// need).
type Local struct {
	localLock
	ownerCheck
	p          *Pool
	nextSample countdown
	bins       [NumClasses]bin
}

// NewLocal makes a Local over the Pool and registers it for Stats. Its
// Close must be called: until then, its blocks stay cached and it stays
// registered.
func (p *Pool) NewLocal() *Local {
	l := &Local{p: p}
	l.nextSample = countdown(NextSample(p.opts.ProfileRate))
	for c := range l.bins {
		l.bins[c].cap = binCap(p.classes[c].size, p.classes[c].batch)
	}
	p.localsMu.Lock()
	p.locals[l] = struct{}{}
	p.localsMu.Unlock()
	return l
}

// AllocFast pops a block of class c for a request of n bytes from the
// Local's bin, or returns nil when the bin is empty, the block would be
// the heap-profile sample, the Local is closed or the Pool is: then the
// caller calls Refill. Pop, hand out (mark live, count): no pin, no lock,
// no atomic instruction, no call.
func (l *Local) AllocFast(c uint8, n uintptr) unsafe.Pointer {
	l.touch()
	l.lock()
	b := &l.bins[c]
	if b.n > 0 && l.nextSample.skip(n) && !l.p.closed.Load() {
		b.n--
		e := b.e[b.n&binMask]
		handOut(e.st, uintptr(classSize[c]), n, false, &b.counts)
		l.unlock()
		return e.p
	}
	l.unlock()
	return nil
}

// FreeFast frees the small block ptr of run's slab on the Local's bin if
// it can do so without a lock: ptr is the start of a live block, not
// sampled, and the bin has room (a closed Local's bins have none).
// Otherwise it changes nothing and returns false, and the caller calls
// Free.
func (l *Local) FreeFast(run *arena.Run, ptr unsafe.Pointer) bool {
	l.touch()
	l.lock()
	s := slabOf(run)
	idx, ok := s.index(uintptr(ptr))
	b := &l.bins[s.class]
	if (ok || !checks) && b.n < b.cap {
		st := &s.states[idx]
		if v, ok := takeLive(st); ok {
			b.push(entry{p: ptr, st: st}, requested(uintptr(s.size), v))
			l.unlock()
			return true
		}
	}
	l.unlock()
	return false
}

// Refill is the slow path of the Local's small allocation: a block from
// the bin if it has one (the sample AllocFast left, with the countdown
// counted: a caller need not try AllocFast first), or a batch of blocks
// from the class (one lock per batch), the first handed out and the rest
// in the bin. The caller keeps the Pool open (the root package's gate).
func (l *Local) Refill(c int, n uintptr) (ptr unsafe.Pointer, zero, sampled bool, err error) {
	l.touch()
	if l.Closed() {
		return nil, false, false, errs.ErrClosed
	}
	p := l.p
	l.lock()
	if b := &l.bins[c]; b.n > 0 {
		b.n--
		e := b.e[b.n&binMask]
		sampled = l.nextSample.due(&p.opts.ProfileRate, n)
		handOut(e.st, uintptr(classSize[c]), n, sampled, &b.counts)
		l.unlock()
		return e.p, false, sampled, nil
	}
	l.unlock()
	cl := &p.classes[c]
	var buf [maxBatch]entry
	k, err := p.takeForRefill(cl, buf[:cl.batch])
	if k == 0 {
		return nil, false, false, err
	}
	first, rest := buf[0], buf[1:k]
	zero = loadState(first.st) == stateZero
	l.lock()
	b := &l.bins[c]
	sampled = l.nextSample.due(&p.opts.ProfileRate, n)
	handOut(first.st, cl.size, n, sampled, &b.counts)
	rest = rest[b.fill(rest):]
	l.unlock()
	p.giveBack(cl, rest)
	return first.p, zero, sampled, nil
}

// Free frees the block at addr, which lies in run (a KindSlab run), on
// the Local's bin, and returns the size that had been requested: the slow
// path of FreeFast (Pool.Free's, with the Local's bin for the P's). A
// full bin first sends its older half back to the slabs. The caller keeps
// the Pool open.
func (l *Local) Free(run *arena.Run, addr uintptr) (uintptr, error) {
	l.touch()
	if l.Closed() {
		return 0, errs.ErrClosed
	}
	p := l.p
	e, c, n, err := p.claim(run, addr)
	if err != nil {
		return 0, err
	}
	var buf [maxBatch]entry
	k := 0
	l.lock()
	b := &l.bins[c]
	if b.n == b.cap {
		k = b.flushHalf(&buf)
	}
	b.push(e, n)
	l.unlock()
	p.giveBack(&p.classes[c], buf[:k])
	return n, nil
}

// Closed reports whether the Local or its Pool is closed.
func (l *Local) Closed() bool { return l.bins[0].cap == 0 || l.p.closed.Load() }

// Close gives the Local's blocks back to their slabs and its counts to
// the classes, and unregisters it; every later call of the Local fails
// (its bins have no room and hold nothing). The caller keeps the Pool
// open while Close runs (the root package's gate): if it cannot, it calls
// Drop. Closing twice does nothing.
func (l *Local) Close() { l.retire(true) }

// Drop is Close for a Pool that is closed or closing: the Local is
// unregistered and emptied, and its blocks are not given back (their
// memory is gone, or about to be).
func (l *Local) Drop() { l.retire(false) }

func (l *Local) retire(giveBack bool) {
	l.touch()
	p := l.p
	p.localsMu.Lock()
	_, registered := p.locals[l]
	delete(p.locals, l)
	p.localsMu.Unlock()
	if !registered {
		return
	}
	l.lock()
	defer l.unlock()
	for c := range l.bins {
		b := &l.bins[c]
		if giveBack {
			p.emptyBin(c, b)
		}
		b.n, b.cap, b.counts = 0, 0, counts{}
	}
}
