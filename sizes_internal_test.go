package alloc

import (
	"fmt"
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
// best-fit heap; a class's exact size to a slab (fitted, route) once the
// class has been asked for ColdBlocks blocks, to the heap before (a chunk
// of exactly that size: BlockSize and UsableSize say so), up to
// coldExactTo; with no cold blocks, or above it, to a slab at once.
func TestMediumRouting(t *testing.T) {
	for _, cold := range []int{0, 3, -1} {
		t.Run(fmt.Sprintf("cold=%d", cold), func(t *testing.T) {
			a, err := New(Config{ColdBlocks: cold})
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
			for _, n := range []int{2048, 4096, 8192} {
				for range int(a.coldN) {
					assert.Equal(t, n+8, a.BlockSize(n), "%d bytes, a cold class's exact size: the heap's chunk", n)
					b := hold(n)
					assert.Equal(t, arena.KindFit, kind(b), "%d bytes, a cold class's exact size", n)
					assert.Equal(t, n+8, a.UsableSize(b))
				}
				assert.Equal(t, n, a.BlockSize(n), "%d bytes, a class's exact size: the class's block", n)
				b := hold(n)
				assert.Equal(t, arena.KindSlab, kind(b), "%d bytes, a class's exact size", n)
				assert.Equal(t, n, a.UsableSize(b))
			}
			for _, n := range []int{16384, 32768} {
				assert.Equal(t, n, a.BlockSize(n), "%d bytes, above coldExactTo: the class's block at once", n)
				assert.Equal(t, arena.KindSlab, kind(hold(n)), "%d bytes", n)
			}
			assert.Equal(t, arena.KindFit, kind(hold(4095)), "a size just below a class's")
			for _, b := range held {
				require.NoError(t, a.Free(b))
			}
		})
	}
}
