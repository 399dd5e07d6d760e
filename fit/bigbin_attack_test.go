package fit

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Attacks on the sorted bin (bigChunk): writes after free into a free
// chunk of exactLimit bytes or more.

// bigFreeBetween returns a heap whose OnCorruption appends to *got, with a
// free chunk of the sorted bin made of block a (n bytes) freed between two
// blocks in use, and those two.
func bigFreeBetween(t *testing.T, got *[]uintptr, n uintptr) (h *Heap, a block, live []block) {
	h = reportsTo(t, got)
	bs := allocFilled(t, h, 3, n)
	freeBlock(t, h, bs[1])
	walk(t, h)
	return h, bs[1], []block{bs[0], bs[2]}
}

// TestBigForgedReleasedFlag: a write after free that sets or clears the
// released flag in the header of a free chunk of the sorted bin leaves its
// size, flags in use and links as the heap wrote them. The heap's count of
// the pages released inside free chunks must not follow the forged flag:
// taking the chunk out of its bin would subtract pages never released
// (Released wraps below zero), or a released chunk would be released and
// counted twice and never uncounted. The damage is reported, and the chunk
// is not used again; the counts stay true.
func TestBigForgedReleasedFlag(t *testing.T) {
	const n = 200 << 10
	for _, set := range []bool{true, false} {
		var got []uintptr
		h, a, live := bigFreeBetween(t, &got, n)
		hdw := wordAt(h, a.p, ^uintptr(7)) // the header: 8 bytes before the block
		if set {
			*hdw |= flagReleased
		} else {
			require.NotZero(t, h.Trim(), "the free chunk's inside is released")
			require.NotZero(t, *hdw&flagReleased)
			*hdw &^= flagReleased
			h.Trim() // must not release it, and count it, again
		}
		st := h.Stats()
		require.LessOrEqual(t, st.Released, st.FreeBytes, "set %v: released bytes are free bytes", set)
		p, err := h.Alloc(n) // the best fit is the forged chunk, if it is still binned
		require.NoError(t, err)
		st = h.Stats()
		require.LessOrEqual(t, st.Released, st.FreeBytes, "set %v: released bytes are free bytes", set)
		require.Contains(t, got, a.p, "set %v: the forged header is reported", set)
		require.NotEqual(t, a.p, uintptr(p), "set %v: the damaged chunk is not handed out", set)
		for _, b := range live {
			require.True(t, intact(h, b))
		}
	}
}
