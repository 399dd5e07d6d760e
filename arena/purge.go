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
// The work is found where the region's lock is taken anyway: in Free (a
// slab or a mid-size block given back), and by Purge, which the slab
// layer's slow paths and an optional background goroutine call. When runs
// wait, a one-shot timer is armed for the first of them, so memory goes
// back even if the program makes no other call; no timer exists while
// nothing waits. The check on the way is one comparison with the time the
// next run is due: a scan of the free runs happens at most once per run
// due.
//
// The system calls are made without the lock, as jemalloc's decay does.
// Releasing 64 MiB takes milliseconds, and every Alloc and Free of the
// region (a slab refill, a mid-size block, a request arena's chunk) would
// wait that long behind it. So a release is a job in three steps:
//
//  1. Under the lock, the runs to release are taken out of the buckets and
//     marked purging: no Alloc can find them, and no Free merges with them
//     (a neighbour freed meanwhile stays a run of its own, and merges when
//     the run comes back). For the top, the range from the new break to
//     the old is split off as a run of its own and taken the same way.
//  2. Without the lock: madvise(MADV_DONTNEED) of each run.
//  3. Under the lock again, as soon as its call returns: each run goes
//     back to the buckets, known zero if its madvise succeeded (dirty as
//     before, with its old dirtyAt, if it failed: nothing is lost), merged
//     with its free neighbours. Merged with a dirty neighbour, it is dirty
//     as a whole again (a run is clean or dirty as one, as before: the
//     next purge advises its released pages once more, which costs little
//     since they are not resident).
//
// The top range takes one more step. While it is released the break may
// still move up (growLocked makes a new run above it; the range merges
// with it when it comes back, a clean free run below the new top). If
// it still ends at the break once released, it is cut: mprotect(PROT_NONE)
// without the lock, the break frozen meanwhile (topBusy: growLocked fails
// with errTopBusy and AllocRun waits on done), then the break moves down
// and the budget gets the bytes back. mprotect of released pages takes
// microseconds where the madvise of the same pages takes milliseconds, so
// an Alloc that must grow the region waits that long at most. An Alloc that finds neither a free run nor budget while a job is
// in flight waits for it too, and tries again: the job may give both back.
//
// Accounting while a job is in flight: its pages stay where they were
// counted before it began, in FreeBytes and, if dirty, in DirtyBytes (they
// are still resident until the madvise returns), and the top's range in
// ArenaBytes and the budget; step 3 (and the cut) moves them to their new
// category in the same critical section that changes the runs. Counters,
// read under the lock, therefore always sums exactly; PurgingBytes says
// how much of FreeBytes is in flight. The rescan condition of the purge ignores the
// dirty pages in flight (purgingDirty), so frees during a job do not scan.
//
// Close and Trim wait for the jobs in flight (inflight, done): Close so
// that no madvise or mprotect touches the reservation after it is
// unmapped, Trim so that every free run is within its reach. Free,
// FreeRuns, Resize, Purge and the timer make the system calls of the job
// they took out themselves (unlockAndRelease), so a caller still finds its
// own free's pages released when its call returns; only other goroutines
// see the job in flight.
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
	due    []*Run // scratch for takeDueLocked
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

// purgeDueLocked takes into j the dirty runs that are due at now, if any
// may be, and arms the timer for the next.
func (r *Region) purgeDueLocked(now int64, j *job) {
	p := &r.purge
	if now >= p.next || p.next == never && r.dirtyPages > r.purgingDirty {
		r.takeDueLocked(now, j)
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
	if r.closed || now < r.purge.next {
		r.mu.Unlock()
		return 0
	}
	var j job
	r.takeDueLocked(now, &j)
	r.armLocked(now)
	return r.unlockAndRelease(&j)
}

// takeDueLocked takes into j every dirty free run due at now (the top one
// to move the break down, keeping TopPad, the pad released as well) and
// finds when the next one is due.
func (r *Region) takeDueLocked(now int64, j *job) {
	r.mu.AssertHeld()
	p := &r.purge
	p.next = never
	due := p.due[:0]
	if r.dirtyPages > r.purgingDirty {
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
	for _, f := range due {
		if f.start+f.pages<<r.shift == r.brk {
			if taken, kept := r.takeTopLocked(f, r.topPad, true, j); taken && !kept {
				continue // wholly given back
			}
		}
		r.takeLocked(f, j) // a run below, or what the top keeps
		j.purge = true
	}
	clear(due)
	p.due = due[:0]
}

// job is the release work a call takes out under the region's lock and
// does without it (unlockAndRelease). It lives on the caller's stack; its
// slice of runs comes from the region's spare, so that a release
// allocates nothing in the steady state.
type job struct {
	*jobSpace      // nil until the first run is taken
	top       *Run // nil, or the range from the new break to the old
	topPurge  bool // the top is the purge's (counted in PurgedBytes)
	purge     bool // the runs are the purge's
}

// jobSpace holds a job's runs.
type jobSpace struct{ runs []*Run }

// takeLocked takes free run f out of its bucket for release by j; it stays
// counted where it was (see the accounting above).
func (r *Region) takeLocked(f *Run, j *job) {
	r.mu.AssertHeld()
	r.unlinkLocked(f)
	r.startPurgingLocked(f)
	if j.jobSpace == nil {
		j.jobSpace = r.spare
		r.spare = nil
		if j.jobSpace == nil {
			j.jobSpace = new(jobSpace)
		}
	}
	j.runs = append(j.runs, f)
}

func (r *Region) startPurgingLocked(f *Run) {
	f.purging = true
	r.purgingPages += f.pages
	if !f.zero {
		r.purgingDirty += f.pages
	}
}

func (r *Region) endPurgingLocked(f *Run) {
	f.purging = false
	r.purgingPages -= f.pages
	if !f.zero {
		r.purgingDirty -= f.pages
	}
}

// takeTopLocked splits off the part of top free run f above
// f.start+keep and takes it for j to give back, and reports whether it
// did (not when f is no longer than keep, nor when j has a top already)
// and whether f kept pages: they stay a free run in its bucket.
func (r *Region) takeTopLocked(f *Run, keep uintptr, purge bool, j *job) (taken, kept bool) {
	r.mu.AssertHeld()
	keep = r.hugeUp(f.start, alignUp(keep, r.page))
	size := f.pages << r.shift
	if size <= keep || j.top != nil {
		return false, false
	}
	r.removeFreeLocked(f)
	t := &Run{kind: KindFree, start: f.start + keep, pages: (size - keep) >> r.shift, zero: f.zero, dirtyAt: f.dirtyAt}
	if keep > 0 {
		f.pages = keep >> r.shift
		r.insertFreeLocked(f)
	}
	r.insertFreeLocked(t)
	r.unlinkLocked(t)
	r.startPurgingLocked(t)
	j.top, j.topPurge = t, purge
	return true, keep > 0
}

// unlockAndRelease does job j: with the lock held on entry, it drops it
// around each system call and retakes it to put each run back as soon as
// its call returns (the steps 2 and 3 above). It returns the bytes given
// back, with the lock released.
func (r *Region) unlockAndRelease(j *job) uintptr {
	r.mu.AssertHeld()
	if j.top == nil && j.jobSpace == nil {
		r.mu.Unlock()
		return 0
	}
	r.inflight++
	var released uintptr
	if j.jobSpace != nil {
		for _, f := range j.runs {
			r.mu.Unlock()
			err := r.adviseRun(f)
			r.mu.Lock()
			if err == nil {
				released += f.pages << r.shift
			}
			r.putBackLocked(f, err == nil)
		}
		if j.purge {
			r.purge.purged += released
		}
		clear(j.runs)
		j.runs = j.runs[:0]
		if r.spare == nil {
			r.spare = j.jobSpace
		}
	}
	if t := j.top; t != nil {
		n := r.giveTopLocked(t)
		released += n
		if j.topPurge {
			r.purge.purged += n
		}
	}
	r.inflight--
	r.done.Broadcast()
	r.mu.Unlock()
	return released
}

// giveTopLocked gives back the top range t taken by takeTopLocked, in two
// system calls, each without the lock: madvise (unless t is known zero),
// while the break may still move up above t (growLocked makes a new run
// there, and t merges with it when it comes back); then, if t still ends
// at the break, mprotect(PROT_NONE) while the break is frozen (topBusy),
// which takes microseconds once the pages are released. It returns the
// bytes given back: t's, if it was cut or released here.
func (r *Region) giveTopLocked(t *Run) uintptr {
	r.mu.AssertHeld()
	n := t.pages << r.shift
	released := uintptr(0)
	if !t.zero {
		r.mu.Unlock()
		err := r.cutTop(t, false)
		r.mu.Lock()
		if err != nil {
			r.putBackLocked(t, false) // the pages stay as they are; nothing is lost
			return 0
		}
		// released: the dirty pages in flight become released ones
		r.purgingDirty -= t.pages
		r.dirtyPages -= t.pages
		t.zero = true
		released = n
	}
	if t.start+n != r.brk {
		r.putBackLocked(t, true) // the break moved up meanwhile: t is a clean free run below it
		return released
	}
	r.topBusy = true
	r.mu.Unlock()
	err := r.cutTop(t, true)
	r.mu.Lock()
	r.topBusy = false
	if err != nil {
		r.putBackLocked(t, true)
		return released
	}
	r.endPurgingLocked(t)
	r.uncountLocked(t)
	r.brk = t.start
	r.budget.Give(n)
	return n
}

// adviseRun releases the pages of run f, taken for a job, with madvise.
// Without the lock: f's start and pages do not change while it is taken.
func (r *Region) adviseRun(f *Run) error {
	return r.os.Madvise(unsafe.Add(r.base, f.start-r.lo), f.pages<<r.shift, unix.MADV_DONTNEED)
}

// cutTop makes one of the top range t's system calls, without the lock:
// madvise(MADV_DONTNEED), or with protect mprotect(PROT_NONE). t's start
// and pages do not change while it is taken.
func (r *Region) cutTop(t *Run, protect bool) error {
	p, n := unsafe.Add(r.base, t.start-r.lo), t.pages<<r.shift
	if protect {
		return r.os.Mprotect(p, n, unix.PROT_NONE)
	}
	return r.os.Madvise(p, n, unix.MADV_DONTNEED)
}

// putBackLocked ends the release of run f: back in the buckets, known zero
// if released, merged with its free neighbours.
func (r *Region) putBackLocked(f *Run, released bool) {
	r.mu.AssertHeld()
	r.endPurgingLocked(f)
	r.uncountLocked(f)
	if released {
		f.zero = true
	}
	r.coalesceLocked(f)
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
	r.purge.armed = false
	if r.closed {
		r.mu.Unlock()
		return
	}
	var j job
	if now >= r.purge.next {
		r.takeDueLocked(now, &j)
	}
	r.armLocked(now)
	r.unlockAndRelease(&j)
}

// Release gives back to the kernel, with madvise(MADV_DONTNEED), the
// pages [addr, addr+n) of a live run its owner holds (page-aligned): free
// space inside the run that the owner keeps. The run stays the owner's;
// the pages read as zero when next touched.
func (r *Region) Release(addr, n uintptr) error {
	return r.os.Madvise(unsafe.Add(r.base, addr-r.lo), n, unix.MADV_DONTNEED)
}
