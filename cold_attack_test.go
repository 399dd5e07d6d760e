package alloc_test

import (
	"fmt"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBlockSizeThresholdSlid: a threshold set below the slabs' largest
// class and slid up since (DynamicThreshold) sends a request between the
// two to a class (its slabs, or the best-fit heap while the class is
// cold), past the P caches: BlockSize says the class's size, as
// UsableSize does, not whole pages the block does not have.
func TestBlockSizeThresholdSlid(t *testing.T) {
	a := newAlloc(t, alloc.Config{MmapThreshold: 1000, DynamicThreshold: true})
	big, err := a.Malloc(300000)
	require.NoError(t, err)
	require.NoError(t, a.Free(big))
	require.Greater(t, a.Stats().MmapThreshold, uint64(4096), "the threshold slid")
	for _, n := range []int{1000, 1500, 2000, 2048, 4096} {
		b, err := a.Malloc(n)
		require.NoError(t, err)
		require.Equal(t, a.BlockSize(n), a.UsableSize(b), "%d bytes", n)
		require.NoError(t, a.Free(b))
	}
}

// TestColdEverySize: a block of every small size from the best-fit heap
// (every class cold) has room for its class's size, written whole without
// touching another; resized to every band (a cold size, a class's exact
// size, medium, mid-size, a mapping, 0) it keeps its contents and room
// for the new size; the breakdown is exact throughout.
func TestColdEverySize(t *testing.T) {
	a := newAlloc(t, alloc.Config{ColdBlocks: alloctest.AllCold})
	whole := func(b []byte) []byte { return past(b, a.UsableSize(b)-len(b)) }
	var bs [][]byte
	for n := 0; n <= 2048; n++ {
		b, err := a.Malloc(n)
		require.NoError(t, err)
		require.Equal(t, a.BlockSize(n), a.UsableSize(b), "%d bytes", n)
		bs = append(bs, b)
	}
	fillAll := func() {
		for i, b := range bs {
			alloctest.Fill(whole(b), uint32(i))
		}
	}
	checkAll := func(when string) {
		for i, b := range bs {
			require.Equal(t, -1, alloctest.Intact(whole(b), uint32(i)), "%s: block %d overwritten", when, i)
		}
		requireBreakdown(t, a.Stats(), when)
	}
	fillAll()
	checkAll("allocated")
	bands := []int{0, 4096, 3000, 8192, 40000, 300000}
	for i, b := range bs {
		n := (i*37 + 11) % 2100
		if i%5 == 0 {
			n = bands[i/5%len(bands)]
		}
		nb, err := a.Realloc(b, n)
		require.NoError(t, err)
		require.GreaterOrEqual(t, a.UsableSize(nb), a.BlockSize(n), "%d -> %d bytes", len(b), n)
		require.Equal(t, -1, alloctest.Intact(nb[:min(n, len(b))], uint32(i)), "%d -> %d bytes", len(b), n)
		bs[i] = nb
	}
	fillAll()
	checkAll("resized")
	for _, b := range bs {
		require.NoError(t, a.Free(b))
	}
	s := a.Stats()
	assert.Zero(t, s.LiveBlocks)
	requireBreakdown(t, s, "all freed")
}

// TestColdProfile: with every allocation recorded, blocks of cold classes
// (from the best-fit heap), of classes with no cold blocks, and of both
// are counted exactly in the heap profile, allocated and freed.
func TestColdProfile(t *testing.T) {
	for _, cold := range []int{-1, 0, alloctest.AllCold} {
		for _, size := range []int{1, 100, 1000, 2048} {
			t.Run(fmt.Sprintf("%d/%d", cold, size), func(t *testing.T) {
				a := newAlloc(t, alloc.Config{ColdBlocks: cold, ProfileRate: 1})
				bs := allocateForProfile(a, 10, size)
				for _, b := range bs[:4] {
					require.NoError(t, a.Free(b))
				}
				v, found := site(parseProfile(t, a), ".allocateForProfile")
				require.True(t, found, "no sample names the allocating function")
				require.Equal(t, [4]int64{10, int64(10 * size), 6, int64(6 * size)}, v)
				for _, b := range bs[4:] {
					require.NoError(t, a.Free(b))
				}
				v, _ = site(parseProfile(t, a), ".allocateForProfile")
				require.Equal(t, [4]int64{10, int64(10 * size), 0, 0}, v, "all freed")
			})
		}
	}
}

// TestColdAtLimitConcurrent: goroutines (half through Locals, whose bins
// refill from the slabs at once) keep hitting Config.Limit with small
// blocks, cold and hot, and freeing half of theirs: a refill at the cap
// trims the best-fit heap (slab.Options.OnLimit) from any of them at once
// without deadlock, every error is ErrOutOfMemory, and once all is freed
// the breakdown is exact.
func TestColdAtLimitConcurrent(t *testing.T) {
	for _, cold := range []int{0, alloctest.AllCold} {
		a := newAlloc(t, alloc.Config{Limit: 4 << 20, ColdBlocks: cold})
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				type heap interface {
					Malloc(int) ([]byte, error)
					Free([]byte) error
				}
				var h heap = a
				if g%2 == 1 {
					l := a.NewLocal()
					defer func() { assert.NoError(t, l.Close()) }()
					h = l
				}
				var mine [][]byte
				for i := range 10000 {
					b, err := h.Malloc((i*131 + g*17) % 2049)
					if err != nil {
						if !assert.ErrorIs(t, err, alloc.ErrOutOfMemory) {
							return
						}
						for _, b := range mine[:len(mine)/2] {
							assert.NoError(t, h.Free(b))
						}
						mine = mine[len(mine)/2:]
						continue
					}
					mine = append(mine, b)
				}
				for _, b := range mine {
					assert.NoError(t, h.Free(b))
				}
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			t.Fatal("the goroutines at the cap did not finish: deadlock?")
		}
		s := a.Stats()
		assert.Zero(t, s.LiveBlocks)
		requireBreakdown(t, s, "all freed")
	}
}

// TestColdInteriorFree: a pointer into a cold class's block (from the
// best-fit heap, as every small class's first blocks are by default) is
// not the start of a block: ErrInvalidFree, whatever the block holds — here
// the word before each such pointer reads as the header of a free chunk
// of 64 bytes, as a program's small integers may — and the block is intact
// and frees, once (ErrDoubleFree). (The heap took the words of a block in
// use for a free chunk's header and said ErrDoubleFree.) So for a medium
// block.
func TestColdInteriorFree(t *testing.T) {
	a := newAlloc(t, alloc.Config{})
	for _, n := range []int{40, 200, 3000} {
		b, err := a.Malloc(n)
		require.NoError(t, err)
		words := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b))), n/8)
		for i := range words {
			words[i] = 64 // a chunk of 64 bytes, neither in use nor the one before it
		}
		for off := 16; off < n; off += 16 {
			err := a.Free(b[off:])
			require.ErrorIs(t, err, alloc.ErrInvalidFree, "%d bytes: a pointer %d bytes in", n, off)
			require.NotErrorIs(t, err, alloc.ErrDoubleFree, "%d bytes: a pointer %d bytes in", n, off)
		}
		for i := range words {
			require.EqualValues(t, 64, words[i], "%d bytes: word %d", n, i)
		}
		require.NoError(t, a.Free(b))
		require.ErrorIs(t, a.Free(b), alloc.ErrDoubleFree, "%d bytes: freed twice", n)
	}
}
