package alloc

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/fit"
	"github.com/brkmap/alloc/slab"
)

// TestFitSizeTable: the table Malloc's fast path reads says, for every
// size, what comparing the class's block with the heap's chunk says.
func TestFitSizeTable(t *testing.T) {
	for n := uintptr(fitFrom); n <= slab.MaxSize; n++ {
		require.Equal(t, slab.ClassSize(int(slab.ClassOf(n))) > fit.BlockSize(n), fitSize[(n+7)>>3], "%d bytes", n)
	}
}

// TestMediumRouting: a medium size a few bytes below a class's goes to the
// best-fit heap; a class's exact size to a slab (fitted, route).
func TestMediumRouting(t *testing.T) {
	a, err := New(Config{})
	require.NoError(t, err)
	defer func() { require.NoError(t, a.Close()) }()
	kind := func(b []byte) arena.Kind {
		blk, err := a.find(addrOf(b))
		require.NoError(t, err)
		require.NotNil(t, blk.run)
		return blk.run.Kind()
	}
	var held [][]byte
	hold := func(n int) []byte {
		b, err := a.Malloc(n)
		require.NoError(t, err)
		held = append(held, b)
		return b
	}
	for _, n := range []int{4095, 4089, 8190, 32767} {
		assert.Equal(t, arena.KindFit, kind(hold(n)), "%d bytes", n)
	}
	assert.Equal(t, 4096, a.BlockSize(4096), "a class's exact size: the class's block")
	assert.Equal(t, arena.KindSlab, kind(hold(4096)), "a class's exact size")
	assert.Equal(t, arena.KindFit, kind(hold(4095)), "a size just below a class's")
	for _, b := range held {
		require.NoError(t, a.Free(b))
	}
}
