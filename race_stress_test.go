package alloc_test

import (
	"errors"
	"runtime"
	"sync"
	"testing"

	"github.com/brkmap/alloc"
	"github.com/stretchr/testify/require"
)

// TestConcurrentFreeAndReallocClaimOnce: goroutines free one block and
// resize it in place at once (a caller's bug, which the race build
// promises to catch). Exactly one claim on the block may win: a Free that
// wins makes every other Free fail and the in-place Realloc fail, so the
// block is never both in a P's cache and live again — which handed it out
// twice and gave it back to its slab twice, a free list that decoded to
// itself (issue 11, items 4 and 15). After each race one more Free must
// find the block free, and no later Malloc may return a block that is
// still live.
func TestConcurrentFreeAndReallocClaimOnce(t *testing.T) {
	if !raceBuild {
		t.Skip("racing frees of one block are a data race in the caller; the race build catches them")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8)) // more Ps than cores: sections interleave
	a := newAlloc(t, alloc.Config{})
	for i := range 300 {
		b, err := a.Malloc(48)
		require.NoError(t, err)
		keep, err := a.Malloc(48) // keeps the slab alive
		require.NoError(t, err)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for g := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if g%2 == 0 {
					errs[g] = a.Free(b)
					return
				}
				for k := range 50 { // in place: same class; until the block is found free
					if _, errs[g] = a.Realloc(b, 40+k%8); errs[g] != nil {
						return
					}
				}
			}()
		}
		wg.Wait()
		frees := 0
		for g, err := range errs {
			switch {
			case err == nil && g%2 == 0:
				frees++
			case err != nil:
				require.ErrorIs(t, err, alloc.ErrDoubleFree, "round %d, goroutine %d", i, g)
			}
		}
		require.Equal(t, 1, frees, "round %d: exactly one of the racing frees wins", i)
		require.True(t, errors.Is(a.Free(b), alloc.ErrDoubleFree), "round %d: the block is free after the race", i)
		// the block is handed out at most once
		seen := map[uintptr]bool{}
		var got [][]byte
		for range 64 {
			c, err := a.Malloc(48)
			require.NoError(t, err)
			require.False(t, seen[addr(c)], "round %d: %#x handed out twice", i, addr(c))
			seen[addr(c)] = true
			got = append(got, c)
		}
		for _, c := range got {
			require.NoError(t, a.Free(c))
		}
		require.NoError(t, a.Free(keep))
	}
	require.Zero(t, a.Stats().LiveBlocks)
}
