package shm

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"
)

// The pool's lock is the header's Lock word: 0 when free, else the
// holder's pid<<32 | the acquisition's generation (LockGen+1), so that two processes
// that both find the holder dead and race to take the lock over cannot
// both win (the compare-and-swap names the exact acquisition they saw).
//
// A waiter spins (the holder is on another CPU and its operation takes
// well under a microsecond), then yields, then sleeps, checking now and
// then whether the holder's process is still alive (alive_*.go). A dead
// holder's lock is taken over, and its operation rolled back from the
// undo log (rollback) before anything else.
const (
	spinIters  = 200
	yieldIters = 2000
	checkEvery = 64
	sleepFor   = 20 * time.Microsecond
)

// maxPid is the largest pid any kernel hands out (Linux's PID_MAX_LIMIT;
// the BSDs' and macOS's are lower).
const maxPid = 1 << 22

// inLock counts this process's goroutines inside lock or holding one, for
// any pool: a lock word bearing this process's own pid is a dead
// predecessor's (the pid was reused) only when no goroutine here could be
// its holder.
var inLock atomic.Int64

// opState is where an operation stands with the lock, for the fault
// guard to undo: waiting (counted in inLock, not holding), or holding.
type opState struct{ waiting, held bool }

// lock takes the pool's lock for this goroutine and sets held. If the
// previous holder died mid-operation, its operation is rolled back first.
func (p *Pool) lock(held *opState) error {
	h := p.h
	inLock.Add(1)
	held.waiting = true
	var me uint64
	for i := 0; ; i++ {
		w := atomic.LoadUint64(&h.Lock)
		if w == 0 {
			// LockGen is read without the lock (it shares the lock's
			// cache line): two acquirers may pick the same number, and
			// only one of them wins the swap.
			me = p.pid<<32 | uint64(uint32(atomic.LoadUint64(&h.LockGen)+1))
			if atomic.CompareAndSwapUint64(&h.Lock, 0, me) {
				break
			}
			continue
		}
		if i < spinIters {
			continue
		}
		if i%checkEvery == 0 && p.closed.Load() {
			// Close waits for this call: stop waiting.
			held.waiting = false
			inLock.Add(-1)
			return ErrClosed
		}
		if i%checkEvery == 0 && p.holderDead(w) {
			me = p.pid<<32 | uint64(uint32(w+1))
			if atomic.CompareAndSwapUint64(&h.Lock, w, me) {
				break
			}
			continue
		}
		if i < spinIters+yieldIters {
			runtime.Gosched()
		} else {
			time.Sleep(sleepFor)
		}
	}
	held.waiting, held.held = false, true
	h.LockGen = me & 0xffffffff
	p.step()
	if atomic.LoadUint64(&h.Log.N) != 0 {
		if err := p.rollback(); err != nil {
			p.unlock(held)
			return err
		}
	}
	return nil
}

// unlock releases the lock. The operation must be committed or rolled
// back (the undo log empty).
func (p *Pool) unlock(held *opState) {
	p.step()
	held.held = false
	atomic.StoreUint64(&p.h.Lock, 0)
	inLock.Add(-1)
}

// holderDead reports whether the process holding lock word w is gone.
func (p *Pool) holderDead(w uint64) bool {
	pid := int(w >> 32)
	if pid <= 0 || pid > maxPid {
		// No process's (a corrupt word): and kill(pid, 0) would answer
		// for a process group, or for every process (-1), as alive.
		return true
	}
	if uint64(pid) == p.pid {
		return inLock.Load() == 1 // only this goroutine: not ours, so a dead predecessor's
	}
	return !alive(pid)
}

// The undo log. An operation, lock held, calls begin, then changes each
// metadata word through set — which records the word's offset and old
// value and publishes the record before the store — then commit (or, on
// an error, rollback). A process dying anywhere in between leaves a log
// that rollback undoes exactly: an entry not yet counted was not yet
// stored; a counted entry restores its old value whether or not the store
// happened. The stores are plain: Go's compiler keeps stores in program
// order (they are chained through one memory state), and nobody reads the
// log while its writer lives — a process that takes the lock over from a
// dead one sees every store the dead one executed, in program order up to
// where it was killed (its CPU's store buffer drains before the kernel
// lets the process die). The lock's own compare-and-swap and release
// store order the log against live successors. Writes to pages that were free when the operation began (a new
// slab's bitmap) need no entry: rolling back frees those pages again.

func (p *Pool) begin(op uint64) {
	l := &p.h.Log
	l.Owner = atomic.LoadUint64(&p.h.Lock)
	l.Op = op
}

// set stores v in the metadata word w, logging its old value first.
func (p *Pool) set(w *uint64, v uint64) {
	l := &p.h.Log
	n := l.N
	if n >= logCap {
		panic("shm: undo log overflow (an operation changed more words than logCap)")
	}
	l.Ent[n] = logEntry{Off: uint64(uintptr(unsafe.Pointer(w)) - uintptr(p.base)), Old: *w}
	p.step()
	l.N = n + 1
	p.step()
	*w = v
	p.step()
}

// commit ends the operation: its changes stand.
func (p *Pool) commit() {
	p.step()
	p.h.Log.N = 0
}

// end commits the operation if err is nil and rolls it back otherwise,
// then unlocks.
func (p *Pool) end(err error, held *opState) error {
	if err != nil {
		if rerr := p.rollback(); rerr != nil {
			err = fmt.Errorf("%w (and %w)", err, rerr)
		}
	} else {
		p.commit()
	}
	p.unlock(held)
	return err
}

// rollback restores every word the undo log recorded, newest first, and
// empties the log. It is idempotent: a process dying inside it leaves the
// log as it was, and the next holder rolls back again. An entry naming a
// word outside the pool's metadata is not followed: the pool is corrupt.
func (p *Pool) rollback() error {
	l := &p.h.Log
	n := atomic.LoadUint64(&l.N)
	if n > logCap {
		return fmt.Errorf("shm: undo log holds %d entries: %w", n, ErrCorrupt)
	}
	for i := n; i > 0; i-- {
		e := l.Ent[i-1]
		if !p.loggable(e.Off) {
			return fmt.Errorf("shm: undo log entry %d names offset %#x: %w", i-1, e.Off, ErrCorrupt)
		}
	}
	for i := n; i > 0; i-- {
		e := l.Ent[i-1]
		*p.word(e.Off) = e.Old
		p.step()
	}
	if n > 0 {
		atomic.AddUint64(&p.h.Recoveries, 1)
	}
	atomic.StoreUint64(&l.N, 0)
	return nil
}

// loggable reports whether off may be named by the undo log: an aligned
// word of the header's guarded fields, of the page table, or of the data
// (free-list links and bitmaps), but never the lock or the log itself.
func (p *Pool) loggable(off uint64) bool {
	if off%8 != 0 || off+8 > p.size {
		return false
	}
	if off >= PageSize {
		return true
	}
	return off >= uint64(unsafe.Offsetof(header{}.Root)) && off < uint64(unsafe.Offsetof(header{}.Log))
}

// step is a point at which a test may kill the process (crash injection);
// nothing outside tests sets the hook.
func (p *Pool) step() {
	if p.hook != nil {
		p.hook()
	}
}
