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
//     (a neighbour freed meanwhile stays a run of its own). For the top,
//     the range from the new break to the old is split off as a run of its
//     own and taken the same way, and topBusy freezes the break: an Alloc
//     that must grow the region waits for the job (growLocked fails with
//     errTopBusy, and AllocRun waits on done), as does one that finds
//     neither a free run nor budget while anything is in flight (the job
//     may give both back).
//  2. Without the lock: madvise(MADV_DONTNEED) of each run; for the top,
//     madvise (if dirty) and mprotect(PROT_NONE).
//  3. Under the lock again: each run goes back to the buckets, known zero
//     if its madvise succeeded (dirty as before, with its old dirtyAt, if
//     it failed: nothing is lost), merged with its free neighbours; the
//     top's range leaves the region (the break moves down, the budget is
//     given back) or, if a call failed, comes back as a free run.
//
// Accounting while a job is in flight: its pages stay where they were
// counted before it began, in FreeBytes and, if dirty, in DirtyBytes (they
// are still resident until the madvise returns), and the top's range in
// ArenaBytes and the budget; step 3 moves them to their new category in
// the same critical section that changes the runs. Counters, read under the
// lock, therefore always sums exactly; PurgingBytes says how much of
// FreeBytes is in flight. The rescan condition of the purge ignores the
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
// slices come from the region's spare (jobSpace) so that a release
// allocates nothing in the steady state.
type job struct {
	*jobSpace          // nil until the first run is taken
	top       *Run     // nil, or the range from the new break to the old
	topPurge  bool     // the top is the purge's (counted in PurgedBytes)
	topDone   topState // what step 2 did to the top
	purge     bool     // the runs are the purge's
}

// jobSpace holds a job's runs and, after step 2, whether each was released.
type jobSpace struct {
	runs []*Run
	ok   []bool
}

type topState uint8

const (
	topKept     topState = iota // nothing done: a call failed before any change
	topReleased                 // madvise done, mprotect refused
	topCut                      // given back: the break moves down
)

// takeLocked takes free run f out of its bucket for release by j; it stays
// counted where it was (purge.go's accounting).
func (r *Region) takeLocked(f *Run, j *job) {
	r.mu.AssertHeld()
	r.unlinkLocked(f)
	f.purging = true
	r.purgingPages += f.pages
	if !f.zero {
		r.purgingDirty += f.pages
	}
	if j.jobSpace == nil {
		j.jobSpace = r.spare
		r.spare = nil
		if j.jobSpace == nil {
			j.jobSpace = new(jobSpace)
		}
	}
	j.runs = append(j.runs, f)
}

// takeTopLocked takes the part of top free run f above f.start+keep for
// j to give back (the break moves down to there once it is released), and
// reports whether it did (not when f is no longer than keep, nor when the
// top is in flight already) and whether f kept pages: they stay a free run
// in its bucket.
func (r *Region) takeTopLocked(f *Run, keep uintptr, purge bool, j *job) (taken, kept bool) {
	r.mu.AssertHeld()
	keep = r.hugeUp(f.start, alignUp(keep, r.page))
	size := f.pages << r.shift
	if size <= keep || r.topBusy || j.top != nil {
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
	t.purging = true
	r.purgingPages += t.pages
	if !t.zero {
		r.purgingDirty += t.pages
	}
	r.topBusy = true
	j.top, j.topPurge = t, purge
	return true, keep > 0
}

// unlockAndRelease does job j: it drops the lock (held on entry), makes
// the job's system calls, and retakes the lock to put the runs back
// (purge.go, steps 2 and 3). It returns the bytes given back.
func (r *Region) unlockAndRelease(j *job) uintptr {
	r.mu.AssertHeld()
	if j.top == nil && j.jobSpace == nil {
		r.mu.Unlock()
		return 0
	}
	r.inflight++
	r.mu.Unlock()

	if j.jobSpace != nil {
		j.ok = j.ok[:0]
		for _, f := range j.runs {
			j.ok = append(j.ok, r.adviseRun(f) == nil)
		}
	}
	if j.top != nil {
		j.topDone = r.cutTop(j.top)
	}

	r.mu.Lock()
	var released, purged uintptr
	if j.jobSpace != nil {
		for i, f := range j.runs {
			n := f.pages << r.shift
			r.putBackLocked(f, j.ok[i])
			if j.ok[i] {
				released += n
			}
		}
		if j.purge {
			purged = released
		}
		clear(j.runs)
		j.runs, j.ok = j.runs[:0], j.ok[:0]
		if r.spare == nil {
			r.spare = j.jobSpace
		}
	}
	if t := j.top; t != nil {
		n := r.putTopBackLocked(t, j.topDone)
		released += n
		if j.topPurge {
			purged += n
		}
	}
	r.purge.purged += purged
	r.inflight--
	r.done.Broadcast()
	r.mu.Unlock()
	return released
}

// adviseRun releases the pages of run f, taken for a job, with madvise.
// Without the lock: f's start and pages do not change while it is taken.
func (r *Region) adviseRun(f *Run) error {
	return r.os.Madvise(unsafe.Add(r.base, f.start-r.lo), f.pages<<r.shift, unix.MADV_DONTNEED)
}

// cutTop gives back the top range t, taken for a job: madvise unless it is
// known zero, then mprotect(PROT_NONE). Without the lock: t's fields do
// not change while it is taken, and the break does not move (topBusy).
func (r *Region) cutTop(t *Run) topState {
	p, n := unsafe.Add(r.base, t.start-r.lo), t.pages<<r.shift
	if !t.zero {
		if err := r.os.Madvise(p, n, unix.MADV_DONTNEED); err != nil {
			return topKept // the pages stay as they are; nothing is lost
		}
	}
	if err := r.os.Mprotect(p, n, unix.PROT_NONE); err != nil {
		return topReleased
	}
	return topCut
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

func (r *Region) endPurgingLocked(f *Run) {
	f.purging = false
	r.purgingPages -= f.pages
	if !f.zero {
		r.purgingDirty -= f.pages
	}
}

// putTopBackLocked ends the release of the top range t: cut, it leaves the
// region (the break moves down to its start and the budget gets it back);
// otherwise it comes back as a free run. It returns the bytes given back.
func (r *Region) putTopBackLocked(t *Run, done topState) uintptr {
	r.mu.AssertHeld()
	r.topBusy = false
	n := t.pages << r.shift
	if done != topCut {
		wasDirty := !t.zero
		r.putBackLocked(t, done == topReleased)
		if done == topReleased && wasDirty {
			return n
		}
		return 0
	}
	r.endPurgingLocked(t)
	r.uncountLocked(t)
	r.brk = t.start
	r.budget.Give(n)
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
