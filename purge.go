package alloc

import (
	"sync"
	"time"
)

// The purge's root part: the delay handed to the region (the region does
// the work; see package arena's purge.go), and PurgeInBackground's
// goroutine.

// purgeDelay is the region's delay for d (not negative): below a
// microsecond, none.
func purgeDelay(d time.Duration) time.Duration {
	if d < time.Microsecond {
		return 0
	}
	return d
}

// idleLoop is the goroutine of Config.PurgeInBackground: a pass every
// period until stop.
type idleLoop struct {
	done chan struct{}
	wg   sync.WaitGroup
}

func startIdleLoop(a *Allocator, period time.Duration) *idleLoop {
	l := &idleLoop{done: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-l.done:
				return
			case <-t.C:
				a.idlePass()
			}
		}
	}()
	return l
}

// stop ends the goroutine and waits for it (nil: none).
func (l *idleLoop) stop() {
	if l == nil {
		return
	}
	close(l.done)
	l.wg.Wait()
}

// idlePass flushes the P caches idle since the last pass, gives back the
// classes' kept empty slabs unused since the last pass, and releases the
// free pages whose delay has passed. The first three move memory between
// layers, under a.moves, so that no snapshot sees it in two layers or in
// none: a retired P cache is out of its slot before its blocks and counts
// are back in their classes (for as long as the stop-the-world of its
// quiesce takes, milliseconds on a loaded machine), and an empty slab or
// run given back between a snapshot's read of its layer and its read of
// the region would be counted by both. The
// region's purge changes only the region's counters, which Counters reads
// whole under the region's lock: it runs outside, so that no Stats waits
// for its releases.
func (a *Allocator) idlePass() {
	if a.closed.Load() {
		return
	}
	a.moves.Lock()
	a.slabs.FlushIdle()
	a.slabs.ReleaseIdle()
	if a.fit != nil {
		a.fit.Idle() // an idle heap's free chunks and empty run
	}
	a.moves.Unlock()
	a.region.Purge()
}
