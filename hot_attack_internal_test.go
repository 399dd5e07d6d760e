package alloc

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/fit"
	"github.com/brkmap/alloc/internal/alloctest"
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
func heapInUse(a *Allocator) int { return a.fit.InUse(0, fit.ChunkSize(fit.CountTo)) }

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

// TestHotReallocAcrossTheFlip: blocks of a class made by the heap before
// it turned hot, and by its slabs after, are resized within the class
// (grow and shrink), to another medium class, to a small and a mid size:
// the bytes kept, the usable size at least what was asked, the block of
// the kind the route says; a second free of each kind is ErrDoubleFree
// and an interior pointer ErrInvalidFree; nothing stays live, and the
// heap's count of its chunks in use goes back to what it was.
func TestHotReallocAcrossTheFlip(t *testing.T) {
	alloctest.RequireChecks(t) // it frees interior pointers and blocks twice
	a, err := New(Config{})
	require.NoError(t, err)
	defer func() { require.NoError(t, a.Close()) }()
	a.hotAt = 32
	const n = 1450 // class 1536
	base := heapInUse(a)
	held := makeHot(t, a, n)
	for _, to := range []int{1536, 1409, 1500, 1440, 1600, 2000, 2048, 100, 1024, 5000, 70000} {
		for _, kind := range []arena.Kind{arena.KindFit, arena.KindSlab} {
			name := fmt.Sprintf("a %v block to %d bytes", kind, to)
			var b []byte
			if kind == arena.KindFit {
				b, held = held[len(held)-1], held[:len(held)-1]
				require.True(t, taggedOK(b, byte(len(held))), name)
			} else {
				b, err = a.Malloc(n)
				require.NoError(t, err)
			}
			require.Equal(t, kind, kindOf(t, a, b), name)
			fillTagged(b, 0xa5)
			old := addrOf(b)
			nb, err := a.Realloc(b, to)
			require.NoError(t, err, name)
			require.Len(t, nb, to)
			require.True(t, taggedOK(nb[:min(n, to)], 0xa5), "%s: the bytes kept", name)
			require.GreaterOrEqual(t, a.UsableSize(nb), to, name)
			switch r := a.route(uintptr(to)); {
			case addrOf(nb) == old:
				require.Equal(t, kind, kindOf(t, a, nb), "%s: in place", name)
			case r == toFit:
				require.Equal(t, arena.KindFit, kindOf(t, a, nb), "%s: moved", name)
			case r == toSlab && a.hotSize(uintptr(to)):
				require.Equal(t, arena.KindSlab, kindOf(t, a, nb), "%s: moved to the hot class's slabs", name)
			case r == toSlab && to >= fitFrom && to <= coldExactTo:
				// a class's exact size: its slabs' once past its cold blocks, the heap's before
				require.Equal(t, a.cold[slab.SizeClass(uintptr(to))].Load() > a.coldN, kindOf(t, a, nb) == arena.KindSlab, "%s: moved", name)
			}
			if addrOf(nb) != old {
				require.ErrorIs(t, a.Free(b), ErrDoubleFree, "%s: the old block", name)
			}
			fillTagged(nb, 0x5a)
			if kindOf(t, a, nb) != arena.KindMid {
				require.ErrorIs(t, a.Free(nb[16:]), ErrInvalidFree, "%s: an interior pointer", name)
			}
			require.True(t, taggedOK(nb, 0x5a), name)
			require.NoError(t, a.Free(nb), name)
			require.ErrorIs(t, a.Free(nb), ErrDoubleFree, "%s: freed twice", name)
		}
	}
	freeTagged(t, a, held)
	assert.Zero(t, a.Stats().LiveBlocks)
	a.Trim() // the fronts' chunks back to the heap
	assert.Equal(t, base, heapInUse(a), "the heap's chunks in use")
}

// TestHotFlipUnderCalls: goroutines allocate (Malloc, Calloc), resize
// (within the class and out of it), ask the sizes of (UsableSize,
// BlockSize), check and free blocks of one class while another goroutine
// holds its blocks until it turns hot: Calloc's blocks are zero, every
// block keeps its bytes and has room for them, BlockSize, once it says
// the class's size, says so for good, and every free succeeds.
func TestHotFlipUnderCalls(t *testing.T) {
	a, err := New(Config{})
	require.NoError(t, err)
	defer func() { require.NoError(t, a.Close()) }()
	a.hotAt = 48
	const lo, hi = 1409, 1536 // class 1536
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	var stop atomic.Bool
	fail := func(err error) {
		errs <- err
		stop.Store(true)
	}
	wg.Add(1)
	go func() { // the holder
		defer wg.Done()
		var held [][]byte
		for i := 0; !IsHot(a, lo) && i < 4*a.hotAt+200; i++ {
			b, err := a.Malloc(lo + i%(hi-lo+1))
			if err != nil {
				fail(err)
				return
			}
			fillTagged(b, 0xee)
			held = append(held, b)
		}
		for _, b := range held {
			if !taggedOK(b, 0xee) {
				fail(errors.New("a held block changed"))
				return
			}
			if err := a.Free(b); err != nil {
				fail(err)
				return
			}
		}
	}()
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tag := byte(g + 1)
			hot := false
			for i := 0; i < 3000 && !stop.Load(); i++ {
				n := lo + (i*31+g*7)%(hi-lo+1)
				bs := a.BlockSize(n)
				switch {
				case n == hi: // the class's exact size: its slabs' once hot or past its cold blocks, the heap's chunk of it before
					if bs != hi && (hot || bs != int(fit.BlockSize(uintptr(n)))) {
						fail(fmt.Errorf("BlockSize(%d) = %d", n, bs))
						return
					}
				case bs == hi:
					hot = true
				case hot:
					fail(fmt.Errorf("BlockSize(%d) = %d after %d: the class went cold again", n, bs, hi))
					return
				case bs != int(fit.BlockSize(uintptr(n))):
					fail(fmt.Errorf("BlockSize(%d) = %d", n, bs))
					return
				}
				var b []byte
				var err error
				if i%2 == 0 {
					b, err = a.Calloc(n)
				} else {
					b, err = a.Malloc(n)
				}
				if err != nil {
					fail(err)
					return
				}
				if i%2 == 0 && !taggedOK(b, 0) {
					fail(fmt.Errorf("Calloc(%d): a byte not zero", n))
					return
				}
				fillTagged(b, tag)
				if u := a.UsableSize(b); u < n {
					fail(fmt.Errorf("UsableSize %d of a %d-byte block", u, n))
					return
				}
				to := []int{lo + (i*13)%(hi-lo+1), 1700, 900, hi}[i%4]
				if b, err = a.Realloc(b, to); err != nil {
					fail(err)
					return
				}
				if !taggedOK(b[:min(n, to)], tag) {
					fail(fmt.Errorf("Realloc %d -> %d: the bytes not kept", n, to))
					return
				}
				if u := a.UsableSize(b); u < to {
					fail(fmt.Errorf("UsableSize %d of a block resized to %d", u, to))
					return
				}
				if err := a.Free(b); err != nil {
					fail(err)
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
	require.True(t, IsHot(a, lo), "the class turned hot")
	assert.Zero(t, a.Stats().LiveBlocks)
}

// TestHotBlockSizeContract: BlockSize(n) is what UsableSize reports for
// Malloc(n)'s block (a heap's block up to 48 bytes more: a front's
// larger chunk), before and after the class turns hot, under every
// policy and config that keeps or drops the heap; where there is no heap
// no class turns hot.
func TestHotBlockSizeContract(t *testing.T) {
	configs := map[string]Config{
		"default":        {},
		"brk":            {Policy: PolicyBrk},
		"mmap":           {Policy: PolicyMmap},
		"debug":          {Debug: true},
		"threshold-1500": {Policy: PolicyThreshold, MmapThreshold: 1500},
		"threshold-1100": {Policy: PolicyThreshold, MmapThreshold: 1100},
		"dynamic-1100":   {Policy: PolicyThreshold, MmapThreshold: 1100, DynamicThreshold: true},
		"cold-none":      {ColdBlocks: -1},
		"cold-all":       {ColdBlocks: 1 << 30},
		"huge-all":       {HugePages: HugePagesAll},
		"limit":          {Limit: 64 << 20},
	}
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			a, err := New(cfg)
			require.NoError(t, err)
			defer func() { require.NoError(t, a.Close()) }()
			if a.fit != nil {
				a.hotAt = 16
			}
			var held [][]byte
			check := func(n int) {
				t.Helper()
				want := a.BlockSize(n)
				b, err := a.Malloc(n)
				require.NoError(t, err, "%d bytes", n)
				held = append(held, b)
				got := a.UsableSize(b)
				switch {
				case a.debug:
					require.Equal(t, n, want)
					require.Equal(t, n, got)
				case a.region.Contains(addrOf(b)) && kindOf(t, a, b) == arena.KindFit:
					require.Equal(t, int(fit.BlockSize(uintptr(n))), want, "%d bytes: a heap block", n)
					require.GreaterOrEqual(t, got, want, "%d bytes", n)
					require.LessOrEqual(t, got, want+48, "%d bytes", n)
				default:
					require.Equal(t, want, got, "%d bytes: BlockSize and UsableSize", n)
				}
			}
			for round := range 3 {
				for n := fitFrom; n <= hotTo+8; n += 7 {
					for range 6 {
						check(n)
					}
				}
				for n := fitFrom; n <= hotTo; n++ {
					if round == 2 && IsHot(a, n) && a.route(uintptr(n)) != toMapping {
						require.Equal(t, int(slab.ClassSize(slab.SizeClass(uintptr(n)))), a.BlockSize(n), "%d bytes of a hot class", n)
					}
				}
			}
			hot := 0
			for k := slab.SizeClass(fitFrom); slab.ClassSize(k) <= hotTo; k++ {
				if IsHot(a, int(slab.ClassSize(k))) {
					hot++
				}
			}
			switch {
			case a.fit == nil:
				require.Zero(t, hot, "no heap, no hot class")
				require.Equal(t, uintptr(fitFrom), a.steps.below.Load())
			case a.policy == PolicyThreshold && a.threshold.Load() < 1500:
				require.LessOrEqual(t, hot, 1, "only the class below the threshold")
			default:
				require.Positive(t, hot)
			}
			for _, b := range held {
				require.NoError(t, a.Free(b))
			}
			assert.Zero(t, a.Stats().LiveBlocks)
		})
	}
}

// TestHotLocalAcrossTheFlip: a Local made before its class turned hot
// serves it from its bins after; its blocks and the Allocator's of both
// kinds are freed by either; a Local of a closed Allocator and of a zero
// Allocator refuse without touching a table they lack.
func TestHotLocalAcrossTheFlip(t *testing.T) {
	a, err := New(Config{})
	require.NoError(t, err)
	a.hotAt = 20
	l := a.NewLocal()
	const n = 1300 // class 1408
	before, err := l.Malloc(n)
	require.NoError(t, err)
	require.Equal(t, arena.KindFit, kindOf(t, a, before), "cold: a Local's medium block is the heap's")
	fillTagged(before, 7)
	held := makeHot(t, a, n)
	after, err := l.Malloc(n)
	require.NoError(t, err)
	require.Equal(t, arena.KindSlab, kindOf(t, a, after), "hot: the Local's bins")
	require.Equal(t, 1408, a.UsableSize(after))
	fillTagged(after, 8)
	z, err := l.Calloc(1400)
	require.NoError(t, err)
	require.Equal(t, arena.KindSlab, kindOf(t, a, z))
	require.True(t, taggedOK(z, 0))
	r, err := l.Realloc(before, 1390)
	require.NoError(t, err)
	require.True(t, taggedOK(r[:1300], 7))
	require.NoError(t, a.Free(r))
	require.True(t, taggedOK(after, 8))
	require.NoError(t, a.Free(after))
	require.NoError(t, l.Free(z))
	require.ErrorIs(t, l.Free(z), ErrDoubleFree)
	freeTagged(t, a, held)
	require.NoError(t, l.Close())
	l2 := a.NewLocal()
	require.NoError(t, a.Close())
	_, err = l2.Malloc(n)
	require.ErrorIs(t, err, ErrClosed, "a Local of a closed Allocator")
	_, err = a.NewLocal().Malloc(n)
	require.ErrorIs(t, err, ErrClosed, "a Local made after Close")
	_, err = a.Malloc(n)
	require.ErrorIs(t, err, ErrClosed)
	require.Zero(t, a.BlockSize(-1))

	var zero Allocator
	zl := zero.NewLocal()
	for _, m := range []int{100, n, 1536, 3000} {
		_, err = zl.Malloc(m)
		require.ErrorIs(t, err, ErrNotInitialized, "a zero Allocator's Local, %d bytes", m)
		_, err = zero.Malloc(m)
		require.ErrorIs(t, err, ErrNotInitialized, "a zero Allocator, %d bytes", m)
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
		require.GreaterOrEqual(t, a.UsableSize(b), a.BlockSize(n), "room for what BlockSize says: the class's size")
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
