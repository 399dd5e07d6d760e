package soak

import (
	"testing"

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
			assert.Positive(t, r.n[sBadFree], "interior-pointer frees refused")
			for _, k := range []int{sMalloc, sCalloc, sAligned, sRealloc, sFree} {
				assert.Positive(t, r.n[k], "operation kind %d", k)
			}
		})
	}
}

// The pattern catches a single changed byte anywhere in a block.
func TestSoakPattern(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 100, 4096} {
		b := make([]byte, n)
		soakFill(b, 42)
		require.Equal(t, -1, soakIntact(b, 42), n)
		for i := range b {
			b[i] ^= 0x10
			assert.Equal(t, i, soakIntact(b, 42), "size %d, byte %d", n, i)
			b[i] ^= 0x10
		}
		if n > 0 {
			assert.NotEqual(t, -1, soakIntact(b, 43), "another block's seed")
		}
	}
}
