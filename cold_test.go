package alloc_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// classOf returns the index in Stats().Classes of the class of size bytes.
func classOf(t *testing.T, a *alloc.Allocator, size int) int {
	t.Helper()
	bs := a.BlockSize(size)
	for i, c := range a.Stats().Classes {
		if c.Size == uint64(bs) {
			return i
		}
	}
	t.Fatalf("no class of %d bytes", bs)
	return -1
}

// TestColdClasses: a small class's first ColdBlocks blocks come from the
// best-fit heap, the rest from its slabs once the heap holds half a first
// slab's blocks of it (all are held here), from twice ColdBlocks on at the
// latest; every block has room for its
// class's size (UsableSize, BlockSize), no two overlap, and Stats counts
// each where it is, its breakdown exact.
func TestColdClasses(t *testing.T) {
	for _, tc := range []struct {
		name string
		cold int // Config.ColdBlocks
		heap int // blocks the heap serves
	}{
		{"default", 0, alloc.DefaultColdBlocks},
		{"five", 5, 5},
		{"none", -1, 0},
		{"all", alloctest.AllCold, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAlloc(t, alloc.Config{ColdBlocks: tc.cold})
			for _, size := range []int{1, 24, 100, 700, 1024} { // five classes
				c := classOf(t, a, size)
				heap := tc.heap
				if tc.cold > 0 {
					// all held: past ColdBlocks, hot once half a first slab's
					// blocks are held, at twice ColdBlocks at the latest
					heap = max(tc.cold, min(2*tc.cold, alloc.FirstSlabBlocks(a, size)/2))
				}
				var bs [][]byte
				for i := range 400 {
					b, err := a.Malloc(size)
					require.NoError(t, err)
					require.Equal(t, a.BlockSize(size), a.UsableSize(b), "%d bytes, block %d", size, i)
					b = past(b, a.UsableSize(b)-len(b)) // a class's whole block is the caller's
					alloctest.Fill(b, uint32(i))
					bs = append(bs, b)
					inClass := a.Stats().Classes[c].LiveBlocks
					require.EqualValues(t, max(0, i+1-heap), inClass, "%d bytes, block %d: in its class's slabs", size, i)
				}
				for i, b := range bs {
					require.Equal(t, -1, alloctest.Intact(b, uint32(i)), "%d bytes, block %d overwritten: blocks overlap", size, i)
				}
				s := a.Stats()
				requireBreakdown(t, s, "cold and hot blocks live")
				if heap > 0 {
					assert.NotZero(t, s.FitBytes, "the cold blocks' heap")
				}
				for _, b := range bs {
					require.NoError(t, a.Free(b))
				}
				s = a.Stats()
				assert.Zero(t, s.LiveBlocks)
				requireBreakdown(t, s, "all freed")
			}
		})
	}
}

// TestColdClassDiesYoung: a class whose blocks die young — one held at a
// time, each freed before the next is asked for — holds too few in the
// heap for a slab to be worth its page: it stays cold up to twice
// ColdBlocks, then turns hot, for good; a class asked for as many blocks,
// all held, turns hot at ColdBlocks (TestColdClasses).
func TestColdClassDiesYoung(t *testing.T) {
	const cold = 50
	a := newAlloc(t, alloc.Config{ColdBlocks: cold})
	c := classOf(t, a, 100)
	require.Less(t, 1, alloc.FirstSlabBlocks(a, 100)/2, "one block is less than half a slab")
	for i := range 4 * cold {
		b, err := a.Malloc(100)
		require.NoError(t, err)
		want := uint64(0) // in the heap
		if i >= 2*cold {
			want = 1 // in the class's slab
		}
		require.Equal(t, want, a.Stats().Classes[c].LiveBlocks, "request %d", i+1)
		require.NoError(t, a.Free(b))
	}
	requireBreakdown(t, a.Stats(), "all freed")
}

// TestColdClassesRace: goroutines asking for one cold class at once get
// exactly ColdBlocks blocks from the heap between them, every other from
// the class's slabs, none shared.
func TestColdClassesRace(t *testing.T) {
	const cold, workers, each = 100, 8, 64
	a := newAlloc(t, alloc.Config{ColdBlocks: cold})
	c := classOf(t, a, 200)
	got := make([][][]byte, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				b, err := a.Malloc(200)
				if !assert.NoError(t, err) {
					return
				}
				got[w] = append(got[w], b)
			}
		}()
	}
	wg.Wait()
	all := slices.Concat(got...)
	require.Len(t, all, workers*each)
	assert.EqualValues(t, workers*each-cold, a.Stats().Classes[c].LiveBlocks)
	for i, b := range all {
		alloctest.Fill(past(b, a.UsableSize(b)-len(b)), uint32(i))
	}
	for i, b := range all {
		require.Equal(t, -1, alloctest.Intact(past(b, a.UsableSize(b)-len(b)), uint32(i)), "block %d overwritten", i)
		require.NoError(t, a.Free(b))
	}
	requireBreakdown(t, a.Stats(), "all freed")
}

// TestColdRealloc: a cold class's block resized in place keeps room for
// its new size's class, and its contents; moved to a hot class or to the
// heap's medium sizes, its contents too.
func TestColdRealloc(t *testing.T) {
	a := newAlloc(t, alloc.Config{ColdBlocks: alloctest.AllCold})
	b, err := a.Malloc(100)
	require.NoError(t, err)
	alloctest.Fill(b, 3)
	for _, n := range []int{110, 90, 60, 200, 3000, 500, 20} {
		nb, err := a.Realloc(b, n)
		require.NoError(t, err)
		require.Equal(t, a.BlockSize(n), a.UsableSize(nb), "%d bytes", n)
		require.Equal(t, -1, alloctest.Intact(nb[:min(len(b), n)], 3), "%d bytes", n)
		if n <= len(b) && a.BlockSize(n) == a.BlockSize(len(b)) {
			assert.Equal(t, addr(b), addr(nb), "%d bytes: in place", n)
		}
		b = nb
		alloctest.Fill(b, 3)
	}
	require.NoError(t, a.Free(b))
	requireBreakdown(t, a.Stats(), "all freed")
}

// TestColdBlocksAtLimit: under Config.Limit the cold classes' blocks (a
// few KiB in the best-fit heap) keep little of the cap from the slabs:
// blocks of 64 bytes fill at least 15/16 of a cap of 1, 2 or 4 MiB, as
// they fill all of it with no cold classes (the heap's first run was 512
// KiB, charged to the cap from the start: 64-byte blocks filled 51% of 1
// MiB, 75% of 2 MiB, 88% of 4 MiB); and once they are freed, a second
// fill gets at least as many (a refill at the cap has the heap give its
// empty run back: slab.Options.OnLimit).
func TestColdBlocksAtLimit(t *testing.T) {
	for _, limit := range []int{1 << 20, 2 << 20, 4 << 20} {
		a := newAlloc(t, alloc.Config{Limit: limit, TopPad: -1})
		fill := func() [][]byte {
			var bs [][]byte
			for {
				b, err := a.Malloc(64)
				if err != nil {
					require.ErrorIs(t, err, alloc.ErrOutOfMemory)
					return bs
				}
				bs = append(bs, b)
			}
		}
		first := fill()
		require.GreaterOrEqual(t, len(first)*64, limit/16*15, "a cap of %d: %d blocks of 64 bytes", limit, len(first))
		for _, b := range first {
			require.NoError(t, a.Free(b))
		}
		second := fill()
		assert.GreaterOrEqual(t, len(second), len(first), "a cap of %d", limit)
		for _, b := range second {
			require.NoError(t, a.Free(b))
		}
		require.NoError(t, a.Close())
	}
}

// TestColdLocal: a Local's bins take their blocks from the slabs at once.
func TestColdLocal(t *testing.T) {
	a := newAlloc(t, alloc.Config{})
	l := a.NewLocal()
	defer l.Close()
	c := classOf(t, a, 64)
	b, err := l.Malloc(64)
	require.NoError(t, err)
	assert.EqualValues(t, 1, a.Stats().Classes[c].LiveBlocks)
	require.NoError(t, l.Free(b))
}
