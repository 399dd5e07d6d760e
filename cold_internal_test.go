package alloc

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/slab"
)

// TestColdCountTop: a class whose blocks die young, with ColdBlocks as
// large as it goes (clamped), turns hot at the last request its count
// (a uint32) can tell, twice ColdBlocks past, instead of its count
// wrapping to a class's first requests and the class staying cold for
// good.
func TestColdCountTop(t *testing.T) {
	a, err := New(Config{ColdBlocks: math.MaxInt})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, a.Close()) })
	c := slab.SizeClass(100)
	top := 2 * uint64(a.coldN)
	require.Less(t, top, uint64(math.MaxUint32), "the count of the request past twice ColdBlocks fits the class's count")
	a.cold[c].Store(uint32(top - 1)) // twice ColdBlocks requests but one made, none held
	require.True(t, a.coldNow(c, 100), "the class is cold up to twice ColdBlocks")
	b, err := a.Malloc(100)
	require.NoError(t, err)
	require.Zero(t, a.Stats().Classes[c].LiveBlocks, "the block is the heap's")
	require.NoError(t, a.Free(b))
	require.False(t, a.coldNow(c, 100), "the next request's route")
	b, err = a.Malloc(100)
	require.NoError(t, err)
	require.True(t, a.hot[c].Load(), "past twice ColdBlocks requests, the class is hot")
	require.EqualValues(t, 1, a.Stats().Classes[c].LiveBlocks, "the block is its slab's")
	require.NoError(t, a.Free(b))
}
