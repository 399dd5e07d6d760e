package fit

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countsNonNegative checks that no count of chunks in use is below zero,
// and that InUse over every counted size is their sum.
func countsNonNegative(t *testing.T, h *Heap) {
	t.Helper()
	sum := 0
	for i := range h.inUse {
		k := h.inUse[i].Load()
		require.GreaterOrEqual(t, k, int32(0), "chunks in use of %d bytes", (uintptr(i)+minChunk/granule)*granule)
		sum += int(k)
	}
	require.Equal(t, sum, h.InUse(0, chunkSize(CountTo)))
}

// TestInUseRange: InUse counts the chunks of lo to hi bytes, both ends
// included, lo rounded up to a chunk's size; nothing of a range that is
// empty or past the counted sizes; the chunk of a block of CountTo
// bytes is the largest counted (with the blocks of up to 8 bytes more it
// holds), the next is not.
func TestInUseRange(t *testing.T) {
	h, _ := newHeap(t)
	sizes := map[uintptr]int{0: 2, 100: 3, 1500: 4, CountTo - 8: 1, CountTo: 2, CountTo + 8: 5, CountTo + 9: 6, 5000: 1}
	var bs []block
	for n, k := range sizes {
		bs = append(bs, allocFilled(t, h, k, n)...)
	}
	walk(t, h)
	require.Equal(t, 2, h.InUse(minChunk, minChunk), "Alloc(0): the smallest chunk")
	require.Equal(t, 2, h.InUse(0, minChunk))
	require.Equal(t, 3, h.InUse(chunkSize(100), chunkSize(100)))
	require.Equal(t, 3, h.InUse(chunkSize(100)-granule+1, chunkSize(100)), "lo rounded up to the chunk's size")
	require.Zero(t, h.InUse(chunkSize(100)+1, chunkSize(1500)-1), "between them")
	require.Equal(t, 4, h.InUse(chunkSize(1500), chunkSize(1500)))
	require.Equal(t, 7, h.InUse(chunkSize(100), chunkSize(1500)))
	require.Equal(t, 1, h.InUse(chunkSize(CountTo-8), chunkSize(CountTo-8)))
	require.Equal(t, 7, h.InUse(chunkSize(CountTo), chunkSize(CountTo)), "CountTo's chunk, which a block of up to 8 bytes more shares")
	require.Zero(t, h.InUse(chunkSize(CountTo)+1, 1<<20), "past CountTo's chunk: not counted")
	require.Zero(t, h.InUse(chunkSize(1500), chunkSize(100)), "an empty range")
	require.Equal(t, 17, h.InUse(0, 1<<20), "every counted chunk")
	countsNonNegative(t, h)
	for _, b := range bs {
		freeIntact(t, h, b)
	}
	walk(t, h)
	require.Zero(t, h.InUse(0, 1<<20))
}

// TestInUseModel: random allocations through the fronts and the lock,
// with room for more (least), frees into the fronts and through the lock,
// resizes in place (grown, shrunk, with least), a front's larger chunk
// (frontLook), Trim and Idle: the counts stay exact (walk) and never go
// below zero, and all is zero once every block is freed and the fronts
// are drained.
func TestInUseModel(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		h := frontHeap(t)
		rng := rand.New(rand.NewPCG(seed, 99))
		var live []block
		size := func() uintptr {
			if rng.IntN(5) == 0 {
				return uintptr(rng.IntN(4000))
			}
			return 1025 + uintptr(rng.IntN(1100)) // around CountTo
		}
		for i := range 4000 {
			switch op := rng.IntN(12); {
			case op < 4 || len(live) == 0:
				b, ok := frontAlloc(t, h, size(), byte(i))
				require.True(t, ok)
				live = append(live, b)
			case op < 5:
				n := size()
				least := n + uintptr(rng.IntN(200))
				p, _, err := h.AllocSampled(n, least)
				require.NoError(t, err)
				b := block{p: uintptr(p), n: least, tag: byte(i)}
				fill(h, b)
				live = append(live, b)
			case op < 9:
				k := rng.IntN(len(live))
				require.True(t, frontFree(t, h, live[k], rng.IntN(4) != 0))
				live[k] = live[len(live)-1]
				live = live[:len(live)-1]
			case op < 11:
				k := rng.IntN(len(live))
				b := live[k]
				n, least := size(), uintptr(0)
				if rng.IntN(3) == 0 {
					least = n + 48
				}
				ok, err := h.Resize(h.region.Lookup(b.p), b.p, n, least)
				require.NoError(t, err)
				if ok {
					require.True(t, intact(h, block{p: b.p, n: min(n, b.n), tag: b.tag}))
					b.n = max(n, least)
					fill(h, b)
					live[k] = b
				}
			default:
				if rng.IntN(2) == 0 {
					h.Trim()
				} else {
					h.Idle()
				}
			}
			if i%200 == 0 {
				walk(t, h)
				countsNonNegative(t, h)
			}
		}
		walk(t, h)
		for _, b := range live {
			require.True(t, frontFree(t, h, b, true))
		}
		countsNonNegative(t, h)
		h.Trim() // the fronts' chunks, counted in use, back to the heap
		walk(t, h)
		assert.Zero(t, h.InUse(0, 1<<20), "seed %d: every block freed", seed)
	}
}
