package alloc_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/stretchr/testify/require"
)

// TestBlockSizeAcrossTheTurn: for every class up to the cold exact sizes
// (8 KiB), asked for its exact size and for a size just above the class
// below's, a few ColdBlocks, its blocks held, freed at once or every
// other held: BlockSize, asked before each request, is what UsableSize
// says of the block Malloc (or Calloc, or AlignedAlloc to 16) then
// returns, before, at and past the turn — exactly for a class's block, up
// to 48 bytes less for the heap's chunk of a medium request (which P's
// front a call finds is the scheduler's: under -race one handed out a
// larger chunk).
func TestBlockSizeAcrossTheTurn(t *testing.T) {
	const cold = 3
	for _, keep := range []int{1, 0, 2} { // hold all, free at once, hold every other
		a := newAlloc(t, alloc.Config{ColdBlocks: cold})
		prev := 0
		for _, cs := range a.Stats().Classes {
			size := int(cs.Size)
			if size > 8<<10 {
				break
			}
			for _, n := range []int{prev + 1, size} {
				var held [][]byte
				for i := range 4*cold + 40 {
					want := a.BlockSize(n)
					var b []byte
					var err error
					switch i % 3 { // Calloc and AlignedAlloc to 16 route as Malloc does
					case 0:
						b, err = a.Malloc(n)
					case 1:
						b, err = a.Calloc(n)
						if err == nil {
							require.Equal(t, -1, slices.IndexFunc(b, func(x byte) bool { return x != 0 }), "%d bytes, request %d: Calloc's block is zero", n, i+1)
						}
					case 2:
						b, err = a.AlignedAlloc(16, n)
					}
					require.NoError(t, err)
					if got := a.UsableSize(b); n > 1024 && want != size {
						// the heap's chunk for a medium request: UsableSize
						// may say 16 bytes more (a free chunk with too little
						// to split off) or up to 48 (a P's front's a little
						// larger chunk), as BlockSize's doc says
						require.True(t, got >= want && got <= want+48, "keep %d, %d bytes, request %d: BlockSize %d, UsableSize %d", keep, n, i+1, want, got)
					} else {
						require.Equal(t, want, got, "keep %d, %d bytes, request %d", keep, n, i+1)
					}
					alloctest.Fill(past(b, want-len(b)), uint32(i)) // its whole block, dirty for Calloc's next
					if keep == 1 || keep == 2 && i%2 == 0 {
						held = append(held, b)
					} else {
						require.NoError(t, a.Free(b))
					}
				}
				for _, b := range held {
					require.NoError(t, a.Free(b))
				}
			}
			prev = size
		}
		requireBreakdown(t, a.Stats(), "all freed")
	}
}

// TestBlockSizeColdAtCap: at the cap (Config.Limit), a cold class's exact
// medium size whose heap chunk finds no room is served by the class's
// slab (one an aligned request of the class took): BlockSize, asked just
// before, says what UsableSize says of the block.
func TestBlockSizeColdAtCap(t *testing.T) {
	for _, n := range []int{1280, 2048, 4096, 8192} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { coldAtCap(t, n) })
	}
}

// coldAtCap is TestBlockSizeColdAtCap for n bytes.
func coldAtCap(t *testing.T, n int) {
	a := newAlloc(t, alloc.Config{Limit: 2 << 20, ColdBlocks: 1000})
	al, err := a.AlignedAlloc(64, n) // the class's first slab, past the heap (aligned)
	require.NoError(t, err)
	var fill [][]byte
	for _, size := range []int{64 << 10, 4 << 10, 256, 16} {
		for {
			b, err := a.Malloc(size)
			if err != nil {
				require.ErrorIs(t, err, alloc.ErrOutOfMemory)
				break
			}
			fill = append(fill, b)
		}
	}
	want := a.BlockSize(n)
	b, err := a.Malloc(n)
	if err == nil {
		require.Equal(t, want, a.UsableSize(b), "%d bytes at the cap", n)
		require.NoError(t, a.Free(b))
	} else {
		require.ErrorIs(t, err, alloc.ErrOutOfMemory)
	}
	for _, b := range fill {
		require.NoError(t, a.Free(b))
	}
	require.NoError(t, a.Free(al))
	requireBreakdown(t, a.Stats(), "all freed")
}
