package alloc

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/fit"
	"github.com/brkmap/alloc/slab"
)

// fillTagged writes tag into every byte of b; taggedOK says they all
// still hold it: two live blocks that overlap cannot both pass.
func fillTagged(b []byte, tag byte) {
	for i := range b {
		b[i] = tag
	}
}

func taggedOK(b []byte, tag byte) bool {
	for _, x := range b {
		if x != tag {
			return false
		}
	}
	return true
}

// TestHotClass: a medium class (1–2 KiB) is the best-fit heap's until the
// heap holds hotAt of its chunks in use at once; then its requests, every
// size of the class and none of another, come from its slabs, for the
// Allocator's Malloc, BlockSize and a Local, and blocks of both kinds are
// freed as before. Many requests that come and go never make it hot.
func TestHotClass(t *testing.T) {
	a, err := New(Config{})
	require.NoError(t, err)
	defer func() { require.NoError(t, a.Close()) }()
	const hotAt = 64
	a.hotAt = hotAt
	kind := func(b []byte) arena.Kind {
		blk, err := a.find(addrOf(b))
		require.NoError(t, err)
		return blk.run.Kind()
	}
	const n = 1500 // class 1536, the class below 1408
	heapSize := int(fit.BlockSize(n))
	require.Equal(t, heapSize, a.BlockSize(n))

	// thousands of requests, never more than one live: the heap's
	for i := range 5000 {
		b, err := a.Malloc(n + i%30)
		require.NoError(t, err)
		require.Equal(t, arena.KindFit, kind(b))
		require.NoError(t, a.Free(b))
	}
	require.Equal(t, heapSize, a.BlockSize(n), "requests that come and go leave the class the heap's")

	// held: the heap's until it holds hotAt (a P's front may hold a few
	// more, counted in use), then the slabs'
	var held [][]byte
	heapBlocks := 0
	for a.BlockSize(n) == heapSize {
		require.Less(t, heapBlocks, hotAt+8+1, "the class did not turn hot")
		b, err := a.Malloc(n)
		require.NoError(t, err)
		require.Equal(t, arena.KindFit, kind(b))
		fillTagged(b, byte(len(held)))
		held = append(held, b)
		heapBlocks++
	}
	require.GreaterOrEqual(t, heapBlocks, hotAt-8, "hot before the heap held hotAt of its chunks")
	for _, m := range []int{1409, 1450, 1535, 1536} {
		assert.Equal(t, 1536, a.BlockSize(m), "%d bytes: the hot class's block", m)
		b, err := a.Malloc(m)
		require.NoError(t, err)
		require.Equal(t, arena.KindSlab, kind(b), "%d bytes", m)
		require.Equal(t, 1536, a.UsableSize(b))
		fillTagged(b, byte(len(held)))
		held = append(held, b)
	}
	for _, m := range []int{1408 - 1, 1537, 2000} {
		assert.Equal(t, int(fit.BlockSize(uintptr(m))), a.BlockSize(m), "%d bytes: another class, not hot", m)
	}
	assert.Equal(t, uintptr(fitFrom), a.steps.below.Load(), "the classes below are not hot: the steps are read")
	l := a.NewLocal()
	b, err := l.Malloc(1510)
	require.NoError(t, err)
	require.Equal(t, arena.KindSlab, kind(b), "a Local's bins serve a hot class")
	require.NoError(t, l.Free(b))
	require.NoError(t, l.Close())
	for i, b := range held {
		require.True(t, taggedOK(b, byte(i)), "block %d changed while live", i)
		require.NoError(t, a.Free(b))
	}
	assert.Equal(t, 1536, a.BlockSize(n), "hot for good")
	assert.Zero(t, a.Stats().LiveBlocks)
}

// TestHotClassesAll: once every medium class up to 2 KiB is hot, steps'
// below passes them all (one compare on Malloc's fast path, as a small
// size), and their sizes all come from the slabs.
func TestHotClassesAll(t *testing.T) {
	a, err := New(Config{})
	require.NoError(t, err)
	defer func() { require.NoError(t, a.Close()) }()
	a.hotAt = 16
	var held [][]byte
	for k := slab.SizeClass(fitFrom); slab.ClassSize(k) <= hotTo; k++ {
		c := int(slab.ClassSize(k))
		for a.BlockSize(c-1) != c {
			b, err := a.Malloc(c - 1)
			require.NoError(t, err)
			held = append(held, b)
			require.Less(t, len(held), 2000, "class %d: %d", c, a.fit.InUse(fit.ChunkSize(slab.ClassSize(k-1)+1), fit.ChunkSize(uintptr(c))))
		}
	}
	require.Equal(t, uintptr(hotTo+1), a.steps.below.Load())
	for m := fitFrom; m <= hotTo; m++ {
		require.True(t, slabCached(uint(m), a.smallLimit, &a.steps), "%d bytes", m)
	}
	assert.False(t, slabCached(hotTo+1, a.smallLimit, &a.steps))
	for _, b := range held {
		require.NoError(t, a.Free(b))
	}
}

// TestHotClassRace: goroutines on every P allocate, write, check and free
// blocks of every medium size while their classes turn hot under them;
// every block keeps its bytes while it is live, every free succeeds, and
// nothing stays live.
func TestHotClassRace(t *testing.T) {
	a, err := New(Config{})
	require.NoError(t, err)
	defer func() { require.NoError(t, a.Close()) }()
	a.hotAt = 24
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var live [][]byte
			for i := range 3000 {
				n := fitFrom + (i*37+g*101)%(hotTo-fitFrom+1)
				b, err := a.Malloc(n)
				if err != nil {
					errs <- err
					return
				}
				fillTagged(b, byte(g))
				live = append(live, b)
				if len(live) > 200 || i%3 == 0 { // 200: enough of the larger classes for one goroutine alone to make them hot
					k := (i * 7) % len(live)
					if !taggedOK(live[k], byte(g)) {
						errs <- fmt.Errorf("goroutine %d: a block changed while live", g)
						return
					}
					if err := a.Free(live[k]); err != nil {
						errs <- err
						return
					}
					live = append(live[:k], live[k+1:]...)
				}
			}
			for _, b := range live {
				if !taggedOK(b, byte(g)) {
					errs <- fmt.Errorf("goroutine %d: a block changed while live", g)
					return
				}
				if err := a.Free(b); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	hot := 0
	for k := slab.SizeClass(fitFrom); slab.ClassSize(k) <= hotTo; k++ {
		if a.steps.t[slab.ClassSize(k)/8].Load() == slabAll {
			hot++
		}
	}
	assert.Positive(t, hot, "no class turned hot")
	assert.Zero(t, a.Stats().LiveBlocks)
}
