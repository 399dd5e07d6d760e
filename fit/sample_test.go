package fit

import (
	"testing"

	"github.com/brkmap/alloc/internal/errs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHeapSampleMarked: AllocSampled counts down under the heap's lock.
// At rate 1 every block is the sample, marked so before the lock is let
// go — a chunk popped from a fast bin as one carved — so a front refuses
// it and its Free goes through the lock, to OnFree; with no rate none is,
// and no Free calls OnFree.
// After Close both calls refuse with ErrClosed, and no front is made.
func TestHeapSampleMarked(t *testing.T) {
	var freed []uintptr
	h, r := newHeapWith(t, Options{ProfileRate: 1, OnFree: func(p uintptr) { freed = append(freed, p) }})
	makeFronts(h)
	for range 2 { // the second round pops the chunks the first one's frees put in the fast bins
		for _, n := range []uintptr{1500, 3000, 40000} {
			p, sampled, err := h.AllocSampled(n, 0)
			require.NoError(t, err)
			require.True(t, sampled, "rate 1: every block")
			h.mu.Lock()
			hd := h.header(uintptr(p) - 2*overhead)
			h.mu.Unlock()
			require.NotZero(t, hd&flagSampled, "marked under the lock")
			ar := r.Lookup(uintptr(p))
			assert.False(t, h.FreeFast(ar, uintptr(p)), "a sample into a front")
			_, err = h.Free(ar, uintptr(p))
			require.NoError(t, err)
			require.Equal(t, uintptr(p), freed[len(freed)-1], "freed through the lock, to OnFree")
		}
	}
	walk(t, h)

	calls := 0
	off, offr := newHeapWith(t, Options{OnFree: func(uintptr) { calls++ }})
	for range 100 {
		p, sampled, err := off.AllocSampled(3000, 0)
		require.NoError(t, err)
		require.False(t, sampled, "no rate: no sample")
		_, err = off.Free(offr.Lookup(uintptr(p)), uintptr(p))
		require.NoError(t, err)
	}
	require.Zero(t, calls, "OnFree for a block not sampled")

	h.Close()
	_, _, err := h.AllocSampled(1500, 0)
	require.ErrorIs(t, err, errs.ErrClosed)
	for i := range h.fronts {
		require.Nil(t, h.fronts[i].Load(), "a front made by a call after Close")
	}
}
