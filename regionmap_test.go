package alloc

import (
	"testing"

	"github.com/brkmap/alloc/stats"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The region map shows the pinned top: after freeing everything below one
// live block, the freed pages are trapped (resident, free); Trim turns
// them into released pages, and the live block stays live.
func TestRegionMapPinnedTop(t *testing.T) {
	a, err := New(Config{Policy: PolicyBrk})
	require.NoError(t, err)
	defer a.Close()

	const n = 4 << 20
	big, err := a.Malloc(n) // a mid-size run of the region under PolicyBrk
	require.NoError(t, err)
	for i := range big {
		big[i] = 1
	}
	pin, err := a.Malloc(64)
	require.NoError(t, err)
	pin[0] = 1

	m := a.RegionMap()
	assert.Equal(t, a.Stats().ArenaBytes, m.Break, "the map covers base to break")
	assert.GreaterOrEqual(t, m.Bytes(stats.PageLive), uint64(n))
	assert.Zero(t, m.Trapped())

	require.NoError(t, a.Free(big))
	m = a.RegionMap()
	assert.GreaterOrEqual(t, m.Trapped(), uint64(n), "freed pages below the pin stay resident")
	var sum uint64
	for i, e := range m.Extents {
		assert.Equal(t, sum, e.Offset, "extents are contiguous")
		sum += e.Len
		if i > 0 {
			assert.NotEqual(t, m.Extents[i-1].State, e.State, "adjacent extents are merged")
		}
	}
	assert.Equal(t, m.Break, sum)

	a.Trim()
	m = a.RegionMap()
	assert.Zero(t, m.Trapped(), "Trim releases the trapped pages")
	assert.GreaterOrEqual(t, m.Bytes(stats.PageReleased), uint64(n))
	assert.Positive(t, m.Bytes(stats.PageLive), "the pin is still live")
	require.NoError(t, a.Free(pin))
}
