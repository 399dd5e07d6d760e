package arena_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/budget"
	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/sys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// purgeRegion is a region with the purge on after delay, on clock (nil:
// the real one).
func purgeRegion(t *testing.T, delay time.Duration, clock func() int64) env {
	t.Helper()
	e := env{os: &sys.OS{}, b: budget.New(0)}
	r, err := arena.New(arena.Config{Reserve: 1 << 30, TopPad: 64 << 10, TrimThreshold: 1 << 30, OS: e.os, Budget: e.b,
		Purge: true, PurgeDelay: delay, Now: clock})
	require.NoError(t, err)
	e.r = r
	t.Cleanup(func() { _ = r.Close() })
	return e
}

func TestPurgeAfterDelayInjectedClock(t *testing.T) {
	var now atomic.Int64
	now.Store(1)
	e := purgeRegion(t, time.Second, now.Load)
	var runs []*arena.Run
	for range 8 {
		run := e.alloc(t, 4)
		clear(e.bytes(run))
		runs = append(runs, run)
	}
	pad := e.r.Counters().TopFreeBytes // what is left of TopPad above the last run
	// a trapped run (below a live one) and the top
	e.free(t, runs[2])
	e.free(t, runs[7])
	c := e.r.Counters()
	require.Equal(t, 8*page+pad, c.DirtyBytes, "two runs dirty (the top merged with the pad)")
	madv := e.os.Calls(sys.OpMadvise)
	assert.Zero(t, e.r.Purge(), "nothing is due before the delay")
	now.Add(int64(time.Second) - 2)
	e.free(t, runs[4]) // freeing checks what is due: still nothing
	assert.Equal(t, madv, e.os.Calls(sys.OpMadvise))
	now.Add(2)
	released := e.r.Purge()
	c = e.r.Counters()
	assert.Equal(t, 4*page, c.DirtyBytes, "the run freed last waits for its own delay")
	assert.Equal(t, 8*page+pad, released, "the trapped run and the top (break moved down, pad released)")
	assert.Equal(t, runs[7].Start()+min(4*page+pad, 64<<10), c.Break, "the break moved down to the pad (if it was above)")
	assert.Equal(t, uint64(c.ArenaBytes), e.b.Used())
	now.Add(int64(time.Second))
	assert.Equal(t, 4*page, e.r.Purge())
	c = e.r.Counters()
	assert.Zero(t, c.DirtyBytes)
	assert.Equal(t, 12*page+pad, c.PurgedBytes)
	assert.Zero(t, e.r.Purge(), "nothing left")
	for _, s := range spans(t, e.r) {
		assert.True(t, s.Kind != arena.KindFree || s.Released)
	}
	checkConsistent(t, e.r)
	// released pages come back zero
	run, zero, err := e.r.Alloc(4, 0, arena.KindMid, 1)
	require.NoError(t, err)
	assert.True(t, zero)
	assert.Contains(t, []uintptr{runs[2].Start(), runs[4].Start()}, run.Start(), "an exact fit")
}

// With no call at all, the timer releases what was freed.
func TestPurgeTimerNoCall(t *testing.T) {
	e := purgeRegion(t, 5*time.Millisecond, nil)
	keep := e.alloc(t, 1)
	var runs []*arena.Run
	for range 64 {
		run := e.alloc(t, 16)
		clear(e.bytes(run))
		runs = append(runs, run)
	}
	top := e.alloc(t, 1)
	var vec []byte
	before := e.r.Resident(&vec)
	for _, run := range runs {
		e.free(t, run)
	}
	require.Eventually(t, func() bool { return e.r.Counters().DirtyBytes == 0 }, 2*time.Second, time.Millisecond)
	assert.LessOrEqual(t, e.r.Resident(&vec), before-64*16*page, "the freed pages left RAM")
	e.free(t, top)
	require.Eventually(t, func() bool { return e.r.Counters().ArenaBytes <= keep.Pages()*page+64<<10 }, 2*time.Second, time.Millisecond,
		"the break moved down once the top was free")
	checkConsistent(t, e.r)
}

// PurgeDelay 0 releases in the free itself.
func TestPurgeImmediately(t *testing.T) {
	e := purgeRegion(t, 0, nil)
	a, b := e.alloc(t, 8), e.alloc(t, 1)
	clear(e.bytes(a))
	e.free(t, a)
	c := e.r.Counters()
	assert.Zero(t, c.DirtyBytes)
	assert.Equal(t, 8*page, c.PurgedBytes)
	e.free(t, b)
	assert.Zero(t, e.r.Counters().DirtyBytes)
	checkConsistent(t, e.r)
}

// blocker is an OS.Fail hook that holds a call made after arm — the
// skip+1st of op (a madvise unless set) — until release, then refuses it
// if fail is set: a release in flight without the region's lock, for as
// long as a test needs.
type blocker struct {
	op      sys.Op
	skip    int
	armed   atomic.Bool
	fail    atomic.Bool
	started chan struct{}
	release chan struct{}
}

func newBlocker(e env) *blocker {
	b := &blocker{op: sys.OpMadvise, started: make(chan struct{}), release: make(chan struct{})}
	var mu sync.Mutex
	e.os.Fail = func(op sys.Op, _ uint64) error {
		if op != b.op || !b.armed.Load() {
			return nil
		}
		mu.Lock()
		if b.skip > 0 {
			b.skip--
			mu.Unlock()
			return nil
		}
		mu.Unlock()
		if !b.armed.CompareAndSwap(true, false) {
			return nil
		}
		close(b.started)
		<-b.release
		if b.fail.Load() {
			return errors.New("injected failure")
		}
		return nil
	}
	return b
}

// done runs fn in a goroutine and returns a channel closed when it returns.
func done(fn func()) chan struct{} {
	c := make(chan struct{})
	go func() { defer close(c); fn() }()
	return c
}

func returned(c chan struct{}, within time.Duration) bool {
	select {
	case <-c:
		return true
	case <-time.After(within):
		return false
	}
}

// requireExact checks the counters' breakdown of the region: every page
// below the break is in use or free, the budget holds exactly the region,
// and the pages in flight are part of the free ones.
func requireExact(t require.TestingT, c arena.Counters) {
	require.Equal(t, c.ArenaBytes, c.SlabBytes+c.MidBytes+c.ScratchBytes+c.FreeBytes, "in use + free = arena")
	require.Equal(t, uint64(c.ArenaBytes), c.BudgetUsed, "the budget holds the region")
	require.LessOrEqual(t, c.DirtyBytes, c.FreeBytes)
	require.LessOrEqual(t, c.PurgingBytes, c.FreeBytes)
}

// While the purge releases a big run, the region's lock is free: runs are
// allocated and freed meanwhile, none over the pages in flight, and the
// counters stay exact.
func TestPurgeReleasesWithoutTheLock(t *testing.T) {
	for _, fail := range []bool{false, true} {
		name := map[bool]string{false: "released", true: "madvise refused"}[fail]
		t.Run(name, func(t *testing.T) {
			e := purgeRegion(t, 0, nil)
			const big = 16 << 20
			low := e.alloc(t, 1)
			run := e.alloc(t, big/page)
			above := e.alloc(t, 1) // run is below a live one: released with madvise, not trimmed
			pad := e.alloc(t, 64)  // the rest of the region, kept live
			clear(e.bytes(run))
			b := newBlocker(e)
			b.fail.Store(fail)
			b.armed.Store(true)
			freed := done(func() { e.free(t, run) })
			<-b.started
			c := e.r.Counters()
			requireExact(t, c)
			assert.Equal(t, uintptr(big), c.PurgingBytes)
			assert.GreaterOrEqual(t, c.DirtyBytes, uintptr(big), "in flight, the pages count as dirty until released")

			// the lock is free: allocate, write, free; nothing lands in the run in flight
			lo, hi := run.Start(), run.Start()+big
			var got []*arena.Run
			work := done(func() {
				for i := range 64 {
					r, _, err := e.r.Alloc(uintptr(1+i%8), 0, arena.KindMid, 1)
					if !assert.NoError(t, err) {
						return
					}
					got = append(got, r)
				}
			})
			require.True(t, returned(work, 5*time.Second), "Alloc waited for the release")
			for i, r := range got {
				assert.False(t, r.Start() < hi && lo < r.Start()+r.Pages()*page, "run %d at %#x lies in the range in flight", i, r.Start())
				fill(e.bytes(r), byte(i))
			}
			// a neighbour freed meanwhile stays a run of its own
			runs := e.r.Counters().FreeRuns
			require.True(t, returned(done(func() { e.free(t, above) }), 5*time.Second), "Free waited for the release")
			assert.Equal(t, runs+1, e.r.Counters().FreeRuns, "the neighbour did not merge into the run in flight")
			requireExact(t, e.r.Counters())

			close(b.release)
			<-freed
			c = e.r.Counters()
			requireExact(t, c)
			assert.Zero(t, c.PurgingBytes)
			if fail {
				assert.GreaterOrEqual(t, c.DirtyBytes, uintptr(big), "the refused run came back dirty")
				assert.Less(t, c.PurgedBytes, uintptr(big), "and is not counted purged")
			} else {
				assert.Less(t, c.DirtyBytes, uintptr(big), "the run came back released")
				assert.GreaterOrEqual(t, c.PurgedBytes, uintptr(big))
			}
			for i, r := range got {
				requireFilled(t, e.bytes(r), byte(i))
				e.free(t, r)
			}
			e.free(t, low)
			e.free(t, pad)
			checkConsistent(t, e.r)
		})
	}
}

// While the purge releases the top with madvise, the break may still
// move up: an Alloc that must grow the region goes ahead, above the range
// in flight, which comes back as a released free run below the new top.
func TestPurgeTopMadviseWithoutTheLock(t *testing.T) {
	e := purgeRegion(t, 0, nil)
	low := e.alloc(t, 4)
	keep := e.alloc(t, 1)
	run := e.alloc(t, (16<<20)/page)
	clear(e.bytes(run))
	pad := e.r.Counters().TopFreeBytes // above run: it merges with it
	b := newBlocker(e)
	b.skip = 1 // the first is the pad the top keeps (TopPad), the second the range above it
	b.armed.Store(true)
	freed := done(func() { e.free(t, run) })
	<-b.started
	c := e.r.Counters()
	requireExact(t, c)
	assert.Equal(t, 16<<20+pad-64<<10, c.PurgingBytes, "the range above the pad is in flight")
	var grown *arena.Run
	require.True(t, returned(done(func() { grown = e.alloc(t, 64) }), 5*time.Second), "an Alloc that grows the region waited")
	assert.GreaterOrEqual(t, grown.Start(), run.Start()+16<<20, "it grew above the range in flight")
	close(b.release)
	<-freed
	c = e.r.Counters()
	requireExact(t, c)
	assert.Zero(t, c.DirtyBytes, "the range came back released, the pad too")
	assert.Equal(t, 16<<20+pad, c.FreeBytes-c.TopFreeBytes, "one free run below the live top: the pad and the range")
	for _, r := range []*arena.Run{low, keep, grown} {
		e.free(t, r)
	}
	checkConsistent(t, e.r)
}

// Once the top is released, the break moves down with mprotect: while that
// call is in flight the break is frozen. An Alloc that fits a free run
// goes ahead; one that must grow the region waits for the call, then
// grows from the new break.
func TestPurgeTopCutWithoutTheLock(t *testing.T) {
	e := purgeRegion(t, 0, nil)
	low := e.alloc(t, 4)
	hole := e.alloc(t, 4)
	keep := e.alloc(t, 1)
	run := e.alloc(t, (16<<20)/page)
	clear(e.bytes(run))
	e.free(t, hole) // a free run below, to allocate from while the top is in flight
	b := newBlocker(e)
	b.op = sys.OpMprotect
	b.armed.Store(true)
	freed := done(func() { e.free(t, run) })
	<-b.started
	requireExact(t, e.r.Counters())
	var small, grown *arena.Run
	require.True(t, returned(done(func() { small = e.alloc(t, 2) }), 5*time.Second), "an Alloc that fits waited")
	assert.Less(t, small.Start(), keep.Start(), "it took the free run below")
	growing := done(func() { grown = e.alloc(t, 64) })
	assert.False(t, returned(growing, 20*time.Millisecond), "an Alloc that grows the region waits for the top")
	close(b.release)
	<-freed
	require.True(t, returned(growing, 5*time.Second))
	c := e.r.Counters()
	requireExact(t, c)
	assert.Equal(t, keep.Start()+page, grown.Start(), "it grew from the new break")
	assert.Equal(t, grown.Start()+64*page, c.Break-c.TopFreeBytes)
	for _, r := range []*arena.Run{low, small, keep, grown} {
		e.free(t, r)
	}
	checkConsistent(t, e.r)
}

// Close waits for a release in flight: no system call touches the
// reservation after it is unmapped, and nothing leaks.
func TestCloseWaitsForPurge(t *testing.T) {
	for _, c := range []struct {
		name string
		top  bool
		op   sys.Op
	}{{"run", false, sys.OpMadvise}, {"top-madvise", true, sys.OpMadvise}, {"top-mprotect", true, sys.OpMprotect}} {
		t.Run(c.name, func(t *testing.T) {
			e := purgeRegion(t, 0, nil)
			run := e.alloc(t, (8<<20)/page)
			if !c.top {
				e.alloc(t, 1)
			}
			clear(e.bytes(run))
			b := newBlocker(e)
			b.op = c.op
			if c.top && c.op == sys.OpMadvise {
				b.skip = 1 // past the pad's
			}
			b.armed.Store(true)
			freed := done(func() { assert.NoError(t, e.r.Free(run)) })
			<-b.started
			closed := done(func() { assert.NoError(t, e.r.Close()) })
			assert.False(t, returned(closed, 20*time.Millisecond), "Close returned with a release in flight")
			_, _, err := e.r.Alloc(1, 0, arena.KindMid, 1)
			assert.ErrorIs(t, err, errs.ErrClosed, "the region is closed for new work meanwhile")
			close(b.release)
			require.True(t, returned(closed, 5*time.Second))
			<-freed
			assert.Zero(t, e.b.Used(), "the budget got everything back")
			assert.Zero(t, e.r.Purge())
			assert.Zero(t, e.r.Trim())
		})
	}
}

// Trim waits for the releases in flight, then releases everything.
func TestTrimWaitsForPurge(t *testing.T) {
	e := purgeRegion(t, 0, nil)
	run := e.alloc(t, (8<<20)/page)
	live := e.alloc(t, 1)
	clear(e.bytes(run))
	b := newBlocker(e)
	b.armed.Store(true)
	freed := done(func() { e.free(t, run) })
	<-b.started
	trimmed := done(func() { e.r.Trim() })
	assert.False(t, returned(trimmed, 20*time.Millisecond), "Trim returned with a release in flight")
	close(b.release)
	require.True(t, returned(trimmed, 5*time.Second))
	<-freed
	c := e.r.Counters()
	assert.Zero(t, c.DirtyBytes)
	assert.Equal(t, live.Start()+page, c.Break, "the break is down to the last live run")
	checkConsistent(t, e.r)
}

// The stress: one goroutine frees big touched runs, the purge releasing
// each at once (or after a short delay), while others allocate runs of 1
// to 40 pages, fill each with its own pattern and check it before they
// free it, and one reads the counters. A run handed out over pages being
// released would lose its pattern; a run said to be zero must be.
func TestPurgeConcurrentContent(t *testing.T) {
	for _, delay := range []time.Duration{0, 200 * time.Microsecond} {
		t.Run(delay.String(), func(t *testing.T) {
			e := purgeRegion(t, delay, nil)
			const big = 8 << 20
			rounds := 12
			if raceEnabled {
				rounds = 4
			}
			var stop atomic.Bool
			var wg sync.WaitGroup
			for w := range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 9))
					var held []*arena.Run
					for i := 0; !stop.Load(); i++ {
						n := uintptr(1 + rng.IntN(8))
						if rng.IntN(8) == 0 {
							n = uintptr(9 + rng.IntN(32))
						}
						r, zero, err := e.r.Alloc(n, 0, arena.KindMid, 1)
						if !assert.NoError(t, err) {
							return
						}
						bs := e.bytes(r)
						if zero && !assert.True(t, isZero(bs), "a run said zero at %#x is not", r.Start()) {
							return
						}
						fill(bs, byte(r.Start()>>12))
						held = append(held, r)
						if len(held) > 32 || rng.IntN(3) == 0 {
							k := rng.IntN(len(held))
							h := held[k]
							if !assert.True(t, filled(e.bytes(h), byte(h.Start()>>12)), "the run at %#x lost its pattern", h.Start()) {
								return
							}
							assert.NoError(t, e.r.Free(h))
							held = slices.Delete(held, k, k+1)
						}
					}
					for _, h := range held {
						assert.True(t, filled(e.bytes(h), byte(h.Start()>>12)), "the run at %#x lost its pattern", h.Start())
						assert.NoError(t, e.r.Free(h))
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					requireExact(t, e.r.Counters())
					time.Sleep(50 * time.Microsecond)
				}
			}()
			for range rounds {
				run := e.alloc(t, big/page)
				fill(e.bytes(run), 0xA5)
				e.free(t, run)
				time.Sleep(time.Millisecond)
			}
			stop.Store(true)
			wg.Wait()
			// every free run released, none in flight: no pass is left to
			// run (one still waiting its delay once the runs in flight are
			// back would take a run out of the spans while they are read)
			require.Eventually(t, func() bool {
				c := e.r.Counters()
				return c.PurgingBytes == 0 && c.DirtyBytes == 0
			}, 5*time.Second, time.Millisecond)
			requireExact(t, e.r.Counters())
			checkConsistent(t, e.r)
			assert.NotZero(t, e.r.Counters().PurgedBytes)
		})
	}
}

func fill(b []byte, v byte) {
	for i := 0; i < len(b); i += 512 {
		b[i] = v
	}
	b[len(b)-1] = v
}

func filled(b []byte, v byte) bool {
	for i := 0; i < len(b); i += 512 {
		if b[i] != v {
			return false
		}
	}
	return b[len(b)-1] == v
}

func requireFilled(t *testing.T, b []byte, v byte) {
	t.Helper()
	require.True(t, filled(b, v), "a run lost its pattern")
}

// isZero probes b where fill writes, as filled does.
func isZero(b []byte) bool { return filled(b, 0) }
