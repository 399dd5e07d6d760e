package soak

import (
	"testing"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSoak runs a short soak under every policy: no corruption, Stats
// exact at every barrier, nothing left mapped, and blocks really freed by
// goroutines other than the one that allocated them.
func TestSoak(t *testing.T) {
	for _, p := range Policies {
		t.Run(p.Name, func(t *testing.T) {
			r, err := Run(p, Params{Ops: 20_000, Goroutines: 8, Check: 5_000, Seed: 7})
			require.NoError(t, err)
			assert.EqualValues(t, 20_000, r.total(), "operations counted")
			assert.Equal(t, 4, r.checks, "a full check at every barrier")
			assert.Zero(t, r.corrupt)
			assert.Positive(t, r.n[sCross], "frees of blocks handed over by another goroutine")
			if alloctest.Checks {
				assert.Positive(t, r.n[sBadFree], "interior-pointer frees refused")
			}
			for _, k := range []int{sMalloc, sCalloc, sAligned, sRealloc, sFree} {
				assert.Positive(t, r.n[k], "operation kind %d", k)
			}
		})
	}
}

// The barrier's check sees a block damaged while it is in transit from one
// worker to the next.
func TestSoakCatchesDamage(t *testing.T) {
	a, err := alloc.New(alloc.Config{})
	require.NoError(t, err)
	defer a.Close()
	ws := newWorkers(a, Params{Goroutines: 2, Seed: 1})
	require.NoError(t, ws[0].apply(sMalloc, alloctest.Op{Kind: alloctest.OpMalloc, Size: 100}))
	l, err := ws[0].m.Hand(0)
	require.NoError(t, err)
	ws[1].inbox <- l
	require.NoError(t, checkSoak(ws))
	assert.True(t, l.Handed, "adopted at the barrier")
	l.B[50] ^= 1
	assert.ErrorContains(t, checkSoak(ws), "damaged at offset 50")
	l.B[50] ^= 1
	require.NoError(t, ws[1].free(0))
	assert.EqualValues(t, 1, ws[1].n[sCross], "a handed-over block's free counts as cross")
	require.NoError(t, alloctest.Empty(a))
}
