package arena_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/sys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scratchRuns takes n runs of KindScratch, each written, and checks the
// counters.
func scratchRuns(t *testing.T, e env, n int, pages uintptr) []*arena.Run {
	t.Helper()
	var runs []*arena.Run
	for range n {
		run, _, err := e.r.Alloc(pages, 0, arena.KindScratch, 0)
		require.NoError(t, err)
		clear(e.bytes(run))
		runs = append(runs, run)
	}
	c := e.r.Counters()
	require.Equal(t, uintptr(n)*pages*page, c.ScratchBytes)
	require.Equal(t, uintptr(n), c.ScratchRuns)
	require.Zero(t, c.MidBytes)
	return runs
}

// FreeRuns gives back a set of runs in one call; with the purge on, a top
// past the trim threshold waits for the purge instead of being trimmed in
// the call (no system call), and goes after the delay.
func TestFreeRunsLeavesTheTopToThePurge(t *testing.T) {
	var now atomic.Int64
	now.Store(1)
	e := purgeRegion(t, time.Second, now.Load)
	e.r.SetTrimThreshold(128 << 10)
	runs := scratchRuns(t, e, 8, 64)
	calls := e.os.Calls(sys.OpMadvise) + e.os.Calls(sys.OpMprotect)
	brk := e.r.Counters().Break
	require.NoError(t, e.r.FreeRuns(runs))
	c := e.r.Counters()
	assert.Equal(t, calls, e.os.Calls(sys.OpMadvise)+e.os.Calls(sys.OpMprotect), "no system call in FreeRuns")
	assert.Equal(t, brk, c.Break, "the top waits for the purge")
	assert.Zero(t, c.ScratchBytes)
	assert.Zero(t, c.ScratchRuns)
	assert.Equal(t, uintptr(1), c.FreeRuns, "coalesced into one free run")
	assert.GreaterOrEqual(t, c.DirtyBytes, 8*64*page)

	now.Add(int64(2 * time.Second))
	e.r.Purge()
	c = e.r.Counters()
	assert.Less(t, c.Break, brk, "the purge trimmed the top")
	assert.Zero(t, c.DirtyBytes)
}

// With the purge off, FreeRuns trims the top once, as Free would.
func TestFreeRunsTrimsWithoutThePurge(t *testing.T) {
	e := newRegion(t, cfg{topPad: 0, trim: 128 << 10})
	runs := scratchRuns(t, e, 4, 64)
	require.NoError(t, e.r.FreeRuns(runs))
	c := e.r.Counters()
	assert.Zero(t, c.ArenaBytes, "the break moved down to the base")
	assert.Zero(t, e.b.Used())
}

// A set with a run already given back is refused whole.
func TestFreeRunsRefusesAFreedRun(t *testing.T) {
	e := newRegion(t, cfg{})
	runs := scratchRuns(t, e, 3, 2)
	require.NoError(t, e.r.FreeRuns(runs[1:2]))
	assert.ErrorIs(t, e.r.FreeRuns(runs), arena.ErrNotLive)
	c := e.r.Counters()
	assert.Equal(t, 2*2*page, c.ScratchBytes, "nothing changed")
	assert.Equal(t, uintptr(2), c.ScratchRuns)
	require.NoError(t, e.r.FreeRuns([]*arena.Run{runs[0], runs[2]}))
	assert.Zero(t, e.r.Counters().ScratchRuns)
	require.NoError(t, e.r.Close())
	assert.ErrorIs(t, e.r.FreeRuns(nil), errs.ErrClosed)
}
