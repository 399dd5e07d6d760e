package alloc_test

import (
	"testing"

	"github.com/brkmap/alloc"
	"github.com/stretchr/testify/require"
)

// TestBlockSizeThresholdSlid: a threshold set below the slabs' largest
// class and slid up since (DynamicThreshold) sends a request between the
// two to a class (its slabs, or the best-fit heap while the class is
// cold), past the P caches: BlockSize says the class's size, as
// UsableSize does, not whole pages the block does not have.
func TestBlockSizeThresholdSlid(t *testing.T) {
	a := newAlloc(t, alloc.Config{MmapThreshold: 1000, DynamicThreshold: true})
	big, err := a.Malloc(300000)
	require.NoError(t, err)
	require.NoError(t, a.Free(big))
	require.Greater(t, a.Stats().MmapThreshold, uint64(4096), "the threshold slid")
	for _, n := range []int{1000, 1500, 2000, 2048, 4096} {
		b, err := a.Malloc(n)
		require.NoError(t, err)
		require.Equal(t, a.BlockSize(n), a.UsableSize(b), "%d bytes", n)
		require.NoError(t, a.Free(b))
	}
}

// TestColdBlocksLeaveTheCap: under Config.Limit, a cold class's first
// blocks (a few KiB in the best-fit heap) keep little of the cap from the
// slabs: blocks of 64 bytes fill at least 15/16 of a cap of 1, 2 or 4 MiB,
// as they fill all of it with no cold classes. (The heap's first run was
// 512 KiB, charged to the cap from the start: 64-byte blocks filled 51%
// of 1 MiB, 75% of 2 MiB, 88% of 4 MiB.)
func TestColdBlocksLeaveTheCap(t *testing.T) {
	for _, limit := range []int{1 << 20, 2 << 20, 4 << 20} {
		a := newAlloc(t, alloc.Config{Limit: limit, TopPad: -1})
		n := 0
		for {
			if _, err := a.Malloc(64); err != nil {
				require.ErrorIs(t, err, alloc.ErrOutOfMemory)
				break
			}
			n++
		}
		require.GreaterOrEqual(t, n*64, limit/16*15, "a cap of %d: %d blocks of 64 bytes", limit, n)
		require.NoError(t, a.Close())
	}
}
