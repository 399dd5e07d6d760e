package alloc_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/alloctest"
)

// A free that leaves a heap run's top past the trim threshold leaves it
// to the purge's timer while the purge waits. A program that goes on
// allocating and freeing a block at the top's low end (a 4000-byte
// buffer a request, every millisecond) rewrites the top's header at
// each pair, so the purge never finds it unchanged between two passes:
// the top's megabytes must still go back within a few delays, as the
// free that made it would have trimmed them (glibc's way, and the
// allocator's before the lazy trim).
func TestFitBusyTopTrimsLater(t *testing.T) {
	a := newAlloc(t, alloc.Config{})
	keep, err := a.Malloc(3000)
	require.NoError(t, err)
	var bs [][]byte
	for range 1000 {
		b, err := a.Malloc(3000)
		require.NoError(t, err)
		alloctest.Fill(b, 1)
		bs = append(bs, b)
	}
	before := a.Stats()
	for i := len(bs) - 1; i >= 0; i-- {
		require.NoError(t, a.Free(bs[i]))
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		b, err := a.Malloc(4000) // carved off the top, merged back into it
		require.NoError(t, err)
		b[0] = 1
		require.NoError(t, a.Free(b))
		time.Sleep(time.Millisecond)
	}
	after := a.Stats()
	t.Logf("resident %d before the frees, %d after 300 ms of pairs at the top", before.Resident, after.Resident)
	assert.Less(t, after.Resident+(2<<20), before.Resident, "the top's pages went back")
	requireBreakdown(t, after, "after the pairs")
	require.NoError(t, a.Free(keep))
}

// A run's top of TrimThreshold bytes or more goes back within two
// PurgeDelays (README), also one below the purge's 64 KiB (a
// TrimThreshold of 16 KiB, no TopPad): the top of a run the heap has
// filled and left for a new one, its last 13 blocks freed.
func TestFitSmallTopTrimsLater(t *testing.T) {
	a := newAlloc(t, alloc.Config{TrimThreshold: 16 << 10, TopPad: -1})
	var bs [][]byte
	var mids [][]byte  // page runs of the region after the heap's run: it cannot grow in place past them
	const chunk = 3008 // a 3000-byte block's chunk: the blocks of a run are that far apart
	for {
		b, err := a.Malloc(3000)
		require.NoError(t, err)
		alloctest.Fill(b, 1)
		if n := len(bs); n > 0 && addr(b) != addr(bs[n-1])+chunk {
			require.NoError(t, a.Free(b)) // the first of a new run: the first run is full
			break
		}
		bs = append(bs, b)
		require.Less(t, len(bs), 10000)
		if len(bs)%64 == 0 {
			m, err := a.Malloc(64 << 10)
			require.NoError(t, err)
			mids = append(mids, m)
		}
	}
	newer, err := a.Malloc(3000) // keeps the new run
	require.NoError(t, err)
	before := a.Stats()
	for i := len(bs) - 1; i >= len(bs)-13; i-- {
		require.NoError(t, a.Free(bs[i]))
	}
	require.Eventually(t, func() bool {
		return a.Stats().Resident+(32<<10) <= before.Resident
	}, 200*time.Millisecond, 5*time.Millisecond, "the first run's 39 KiB top goes back")
	requireBreakdown(t, a.Stats(), "after the trim")
	for _, b := range bs[:len(bs)-13] {
		require.NoError(t, a.Free(b))
	}
	require.NoError(t, a.Free(newer))
	for _, m := range mids {
		require.NoError(t, a.Free(m))
	}
}
