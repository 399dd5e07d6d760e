package shm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestClassTable checks the computed size classes and prints them with
// their waste: inside a block (the worst request of the class) and at the
// slab's tail.
func TestClassTable(t *testing.T) {
	prev := uint64(0)
	for c, k := range classes {
		require.Greater(t, k.size, prev, "class %d", c)
		require.Zero(t, k.size%16, "16-byte alignment")
		require.GreaterOrEqual(t, k.nblocks, uint64(1))
		require.LessOrEqual(t, k.dataOff+k.nblocks*k.size, k.pages*PageSize, "class %d fits its slab", c)
		require.GreaterOrEqual(t, k.dataOff*8, k.nblocks, "class %d: a live bit a block", c)
		inside := float64(k.size-prev-1) / float64(k.size) * 100
		tail := float64(k.pages*PageSize-k.nblocks*k.size) / float64(k.pages*PageSize) * 100
		if k.size > 128 {
			assert.LessOrEqual(t, inside, 25.0, "class %d", c)
		}
		assert.LessOrEqual(t, tail, 12.5+0.01, "class %d", c)
		t.Logf("class %2d: %4d B, slab %d pages, %3d blocks, worst waste in a block %4.1f%%, at the slab's tail %4.1f%%",
			c, k.size, k.pages, k.nblocks, inside, tail)
		prev = k.size
	}
	for n := 0; n <= MaxSmall; n++ {
		c := classOf(n)
		require.GreaterOrEqual(t, classes[c].size, uint64(n), "request %d", n)
		if c > 0 {
			require.Less(t, classes[c-1].size, uint64(max(n, 1)), "request %d takes the smallest class", n)
		}
	}
}
