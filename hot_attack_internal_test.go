package alloc

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/fit"
	"github.com/brkmap/alloc/slab"
)

// SetHotAt sets how many of a medium class's chunks the best-fit heap
// must hold in use at once for the class to turn hot (hotChunks), for
// the external tests; before the Allocator's first medium block.
func SetHotAt(a *Allocator, n int) { a.hotAt = n }

// IsHot says whether the medium class of n bytes (fitFrom <= n <= hotTo)
// has turned hot.
func IsHot(a *Allocator, n int) bool {
	return a.steps.t[slab.ClassSize(slab.SizeClass(uintptr(n)))/8].Load() == slabAll
}

// heapInUse is the best-fit heap's count of its chunks in use of every
// size it counts.
func heapInUse(a *Allocator) int { return a.fit.InUse(0, fit.CountTo+2*fitHeader) }

// kindOf is the kind of run b's block is in.
func kindOf(t *testing.T, a *Allocator, b []byte) arena.Kind {
	t.Helper()
	blk, err := a.find(addrOf(b))
	require.NoError(t, err)
	require.NotNil(t, blk.run, "a block of the region")
	return blk.run.Kind()
}

// makeHot holds blocks of n bytes until n's class turns hot (BlockSize
// says so); the blocks held, all the heap's, each tagged.
func makeHot(t *testing.T, a *Allocator, n int) [][]byte {
	t.Helper()
	c := int(slab.ClassSize(slab.SizeClass(uintptr(n))))
	var held [][]byte
	for a.BlockSize(n) != c {
		require.Less(t, len(held), a.hotAt+64, "%d bytes: the class did not turn hot", n)
		b, err := a.Malloc(n)
		require.NoError(t, err)
		require.Equal(t, arena.KindFit, kindOf(t, a, b))
		fillTagged(b, byte(len(held)))
		held = append(held, b)
	}
	require.True(t, IsHot(a, n))
	return held
}

func freeTagged(t *testing.T, a *Allocator, held [][]byte) {
	t.Helper()
	for i, b := range held {
		require.True(t, taggedOK(b, byte(i)), "block %d changed while live", i)
		require.NoError(t, a.Free(b))
	}
}

// TestHotAtTheCap: at the cap (Config.Limit), a hot class whose slabs
// have no room and cannot take another is served as it was before it
// turned hot, by the best-fit heap's free chunks, as a cold class at the
// cap is served by its slabs: turning hot does not make a request fail
// that the heap can hold, the Allocator's or a Local's.
func TestHotAtTheCap(t *testing.T) {
	const limit = 4 << 20
	a, err := New(Config{Limit: limit, TopPad: -1})
	require.NoError(t, err)
	defer func() { require.NoError(t, a.Close()) }()
	a.hotAt = 16
	const n = 1450 // class 1536
	held := makeHot(t, a, n)
	// fill to the cap with blocks of a size that never turns hot, then
	// free every other one: holes of the heap that a request of n fits
	var other [][]byte
	for {
		b, err := a.Malloc(hotTo + 52)
		if err != nil {
			require.ErrorIs(t, err, ErrOutOfMemory)
			break
		}
		other = append(other, b)
	}
	require.Greater(t, len(other), 1000)
	for i := 0; i < len(other); i += 2 {
		require.NoError(t, a.Free(other[i]))
		other[i] = nil
	}
	freed := (len(other) + 1) / 2
	l := a.NewLocal() // half the requests through a Local's bins
	defer func() { require.NoError(t, l.Close()) }()
	var hot [][]byte
	for i := range freed {
		malloc := a.Malloc
		if i%2 == 0 {
			malloc = l.Malloc
		}
		b, err := malloc(n)
		if err != nil {
			require.ErrorIs(t, err, ErrOutOfMemory)
			break
		}
		fillTagged(b, 3)
		hot = append(hot, b)
	}
	assert.GreaterOrEqual(t, len(hot), freed*9/10, "%d requests of a hot class at the cap, %d holes of the heap that fit them", len(hot), freed)
	for _, b := range hot {
		require.True(t, taggedOK(b, 3))
		require.NoError(t, a.Free(b))
	}
	for _, b := range other {
		if b != nil {
			require.NoError(t, a.Free(b))
		}
	}
	freeTagged(t, a, held)
}
