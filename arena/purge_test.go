package arena_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/budget"
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
