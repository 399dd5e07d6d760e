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
