package arena

import (
	"math"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The purge: free pages anywhere in the region go back to the kernel by
// themselves, a delay after they were freed (Config.Purge, PurgeDelay).
//
// A free run that is not known zero is dirty: its pages are resident if
// they were touched. Each remembers when it was last made dirty (dirtyAt;
// a run merged with its neighbours takes the newest time, so memory being
// freed piece by piece is released once the freeing stops, not while it
// goes on). Once dirtyAt+PurgeDelay has passed, the run is released with
// one madvise(MADV_DONTNEED) and known zero again; the run at the top
// also moves the break down, keeping TopPad (released too).
//
// The work is done where the region's lock is taken anyway: in Free (a
// slab or a mid-size block given back), and by Purge, which the slab
// layer's slow paths and an optional background goroutine call. When runs
// wait, a one-shot timer is armed for the first of them, so memory goes
// back even if the program makes no other call; no timer exists while
// nothing waits. The check on the way is one comparison with the time the
// next run is due: a scan of the free runs happens at most once per run
// due.
//
// MADV_DONTNEED rather than MADV_FREE: after MADV_FREE the pages stay
// mapped and counted in RSS (and by mincore) until the kernel needs the
// memory, so neither the process's RSS nor this allocator's measured
// Resident goes down, and they are not known zero afterwards (Calloc must
// clear them again). MADV_DONTNEED costs a page fault when a page is
// used again, which the delay keeps rare.

const never = math.MaxInt64

// purger is the region's purge state. on, delay and clock are fixed by
// New; the rest is under Region.mu.
type purger struct {
	on    bool
	delay int64 // nanoseconds
	clock func() int64
	epoch time.Time

	next   int64 // when the first dirty run is due; never: none waits
	timer  *time.Timer
	armed  bool
	due    []*Run // scratch for purgeLocked
	purged uintptr
}

func (p *purger) init(c Config) {
	p.on, p.delay, p.clock, p.epoch, p.next = c.Purge, int64(max(c.PurgeDelay, 0)), c.Now, time.Now(), never
}

// now is the purge's clock: monotonic nanoseconds, never 0.
func (p *purger) now() int64 {
	if p.clock != nil {
		return p.clock()
	}
	return int64(time.Since(p.epoch)) + 1
}

// stop cancels the timer (Close).
func (p *purger) stop() {
	if p.timer != nil {
		p.timer.Stop()
	}
	p.next = never
}

// purgeDueLocked releases the dirty runs that are due at now, if any may
// be, and arms the timer for the next.
func (r *Region) purgeDueLocked(now int64) {
	p := &r.purge
	if now >= p.next || p.next == never && r.dirtyPages > 0 {
		r.purgeLocked(now)
	}
	r.armLocked(now)
}

// Purge releases the dirty free runs whose delay has passed. It returns the
// bytes released. Without Config.Purge it does nothing.
func (r *Region) Purge() uintptr {
	if !r.purge.on {
		return 0
	}
	now := r.purge.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || now < r.purge.next {
		return 0
	}
	n := r.purgeLocked(now)
	r.armLocked(now)
	return n
}

// purgeLocked releases every dirty free run due at now and finds when the
// next one is due.
func (r *Region) purgeLocked(now int64) uintptr {
	r.mu.AssertHeld()
	p := &r.purge
	p.next = never
	due := p.due[:0]
	if r.dirtyPages > 0 {
		for b := range r.buckets {
			for f := r.buckets[b]; f != nil; f = f.next {
				if f.zero {
					continue
				}
				if at := f.dirtyAt + p.delay; at <= now {
					due = append(due, f)
				} else {
					p.next = min(p.next, at)
				}
			}
		}
	}
	var released uintptr
	for _, f := range due {
		if f.start+f.pages<<r.shift == r.brk {
			released += r.shrinkLocked(f, r.topPad)
			if r.topFreeLocked() != f {
				continue // wholly given back
			}
		}
		released += r.releaseRunLocked(f)
	}
	clear(due)
	p.due = due[:0]
	p.purged += released
	return released
}

// releaseRunLocked releases the pages of free run f with madvise, unless
// they are known zero, and returns the bytes released.
func (r *Region) releaseRunLocked(f *Run) uintptr {
	r.mu.AssertHeld()
	if f.zero && r.huge == 0 {
		return 0 // known released, or never touched
	}
	n := f.pages << r.shift
	if err := r.os.Madvise(unsafe.Add(r.base, f.start-r.lo), n, unix.MADV_DONTNEED); err != nil {
		return 0 // the pages stay as they are; nothing is lost
	}
	if !f.zero {
		f.zero = true
		r.dirtyPages -= f.pages
	}
	return n
}

// armLocked arms the timer for the next run due, if one waits and the
// timer is not armed already.
func (r *Region) armLocked(now int64) {
	r.mu.AssertHeld()
	p := &r.purge
	if p.next == never || p.armed || r.closed {
		return
	}
	p.armed = true
	d := time.Duration(max(p.next-now, 0))
	if p.timer == nil {
		p.timer = time.AfterFunc(d, r.onTimer)
	} else {
		p.timer.Reset(d)
	}
}

// onTimer is the timer's purge.
func (r *Region) onTimer() {
	now := r.purge.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.purge.armed = false
	if r.closed {
		return
	}
	if now >= r.purge.next {
		r.purgeLocked(now)
	}
	r.armLocked(now)
}
