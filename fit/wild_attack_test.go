package fit

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/internal/errs"
)

// TestWildBadFrees: bad frees around the top's last free chunk (wild) and
// the block carved last off it (wildPrev), which a Free trusts without the
// bitmap only when its header is its own: a pointer into the wild chunk (its
// first block's place, just past the block carved last, and deeper), a
// pointer inside the block carved last, a double free of it, and its
// header's size overwritten (grown past the wild chunk's start, shrunk) are
// refused with ErrInvalidFree (or ErrDoubleFree), the blocks left intact and
// the heap sound; the block then frees.
func TestWildBadFrees(t *testing.T) {
	for _, n := range []uintptr{24, 40, 3000, 40000} {
		var got []uintptr
		h := reportsTo(t, &got)
		bs := allocFilled(t, h, 2, n)
		a, b := bs[0], bs[1]
		require.Equal(t, b.p-2*overhead, h.wildPrev, "n %d: the block carved last", n)
		w := h.wild
		require.NotZero(t, w)
		ar := h.region.Lookup(b.p)
		for _, p := range []uintptr{w + 2*overhead, w + 2*overhead + granule, w + 2*overhead + 4096, b.p + granule, b.p + 2*granule, b.p - granule} {
			_, err := h.Free(ar, p)
			require.True(t, errorIsBadFree(err), "n %d: free of %#x (wild %#x, block %#x): %v", n, p, w, b.p, err)
		}
		walk(t, h)
		hdw := wordAt(h, b.p, ^uintptr(7))
		was := *hdw
		for _, d := range []int64{2 * granule, granule, -granule} {
			*hdw = uint64(int64(was) + d) // its size, grown into the wild chunk or shrunk
			_, err := h.Free(ar, b.p)
			require.ErrorIs(t, err, errs.ErrInvalidFree, "n %d: size changed by %d", n, d)
			*hdw = was
			require.True(t, intact(h, a), "n %d", n)
			require.True(t, intact(h, b), "n %d", n)
		}
		walk(t, h)
		freeIntact(t, h, b)
		_, err := h.Free(ar, b.p)
		require.Error(t, err, "n %d: a double free of the block carved last", n)
		require.True(t, errorIsBadFree(err), "n %d: %v", n, err)
		freeIntact(t, h, a)
		walk(t, h)
	}
}

func errorIsBadFree(err error) bool {
	return errors.Is(err, errs.ErrInvalidFree) || errors.Is(err, errs.ErrDoubleFree)
}

// TestWildGrown: a block the top run's last free chunk cannot hold grows
// the run in place: the block is carved off that chunk, grown (the same
// address), the rest the top's chunk again, which then serves the next
// block; freed, everything merges back into one top chunk, the heap sound.
func TestWildGrown(t *testing.T) {
	h, _ := newHeap(t)
	bs := allocFilled(t, h, 1, 3000)
	old, oldS := h.wild, h.wildS
	require.NotZero(t, old)
	big := allocFilled(t, h, 1, oldS+4096) // more than the top's chunk holds
	walk(t, h)
	require.Equal(t, old+2*overhead, big[0].p, "carved off the top's chunk, grown in place")
	require.Equal(t, big[0].p-2*overhead, h.wildPrev, "the block carved last")
	w := h.wild
	p, err := h.Alloc(1000)
	require.NoError(t, err)
	require.Equal(t, w+2*overhead, uintptr(p), "the top's chunk serves the next block")
	c := block{p: uintptr(p), n: 1000, tag: 9}
	fill(h, c)
	walk(t, h)
	freeIntact(t, h, big[0])
	freeIntact(t, h, c)
	freeIntact(t, h, bs[0])
	walk(t, h)
}
