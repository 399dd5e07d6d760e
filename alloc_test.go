package alloc_test

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/brkmap/alloc/stats"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var policies = []alloc.Policy{alloc.PolicyThreshold, alloc.PolicyBrk, alloc.PolicyMmap}

func newAlloc(t testing.TB, cfg alloc.Config) *alloc.Allocator {
	t.Helper()
	a, err := alloc.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

func TestMallocContract(t *testing.T) {
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			a := newAlloc(t, alloc.Config{Policy: p})
			for _, n := range []int{0, 1, 15, 16, 17, 100, 1024, 1025, 4096, 32 << 10, 32<<10 + 1, 100 << 10, 128<<10 - 1, 128 << 10, 1 << 20, 5<<20 + 3} {
				b, err := a.Malloc(n)
				require.NoError(t, err, n)
				require.NotNil(t, b, n)
				assert.Equal(t, n, len(b))
				assert.Equal(t, n, cap(b))
				assert.Zero(t, addr(b)%16, "16-byte aligned")
				assert.GreaterOrEqual(t, a.UsableSize(b), n)
				alloctest.Fill(b, uint32(n))
				require.Equal(t, -1, alloctest.Intact(b, uint32(n)))
				require.NoError(t, a.Free(b))
			}
			assert.Zero(t, a.Stats().LiveBlocks)
		})
	}
}

func TestZeroSizeIsABlock(t *testing.T) {
	a := newAlloc(t, alloc.Config{})
	b, err := a.Malloc(0)
	require.NoError(t, err)
	require.NotNil(t, b)
	c, err := a.Malloc(0)
	require.NoError(t, err)
	assert.NotEqual(t, addr(b), addr(c), "two empty blocks are distinct")
	assert.EqualValues(t, 2, a.Stats().LiveBlocks)
	require.NoError(t, a.Free(b))
	if alloctest.Checks {
		require.ErrorIs(t, a.Free(b), alloc.ErrDoubleFree)
	}
	require.NoError(t, a.Free(c))
	require.NoError(t, a.Free(nil), "Free(nil) is a no-op")
}

func TestCallocZeroesReusedMemory(t *testing.T) {
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			a := newAlloc(t, alloc.Config{Policy: p})
			for _, n := range []int{24, 3000, 40 << 10, 200 << 10} {
				for range 3 {
					b, err := a.Malloc(n)
					require.NoError(t, err)
					for i := range b {
						b[i] = 0xAB
					}
					require.NoError(t, a.Free(b))
					c, err := a.Calloc(n)
					require.NoError(t, err)
					for i, x := range c {
						if x != 0 {
							t.Fatalf("Calloc(%d): byte %d = %#x", n, i, x)
						}
					}
					require.NoError(t, a.Free(c))
				}
			}
		})
	}
}

func TestAlignedAlloc(t *testing.T) {
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			a := newAlloc(t, alloc.Config{Policy: p})
			for _, align := range []int{1, 8, 16, 32, 64, 512, 4096, 8192, 64 << 10, 1 << 20, 4 << 20} {
				for _, n := range []int{0, 1, 100, 4096, 20000, 300 << 10} {
					b, err := a.AlignedAlloc(align, n)
					require.NoError(t, err, "align %d n %d", align, n)
					assert.Zero(t, addr(b)%uintptr(max(align, 16)), "align %d n %d", align, n)
					assert.Len(t, b, n)
					alloctest.Fill(b, 7)
					require.NoError(t, a.Free(b))
				}
			}
			for _, bad := range []int{0, -1, 3, 24, 1000} {
				_, err := a.AlignedAlloc(bad, 10)
				assert.ErrorIs(t, err, alloc.ErrInvalidSize, "alignment %d", bad)
			}
		})
	}
}

func TestReallocKeepsContents(t *testing.T) {
	sizes := []int{0, 10, 100, 3000, 33 << 10, 60 << 10, 127 << 10, 130 << 10, 700 << 10, 3 << 20, 50, 0}
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			a := newAlloc(t, alloc.Config{Policy: p})
			var b []byte
			for _, n := range sizes {
				nb, err := a.Realloc(b, n)
				require.NoError(t, err, n)
				require.Len(t, nb, n)
				require.Equal(t, -1, alloctest.Intact(nb[:min(len(b), n)], 3), "realloc %d -> %d", len(b), n)
				alloctest.Fill(nb, 3)
				b = nb
			}
			require.NoError(t, a.Free(b))
			s := a.Stats()
			assert.Zero(t, s.LiveBlocks)
			assert.Zero(t, s.LiveBytes)
		})
	}
}

func TestReallocInPlace(t *testing.T) {
	// A mid-size block at the top of the region grows in place.
	a := newAlloc(t, alloc.Config{Policy: alloc.PolicyBrk})
	b, err := a.Malloc(40 << 10)
	require.NoError(t, err)
	alloctest.Fill(b, 9)
	nb, err := a.Realloc(b, 400<<10)
	require.NoError(t, err)
	assert.Equal(t, addr(b), addr(nb), "grown in place at the top")
	assert.Equal(t, -1, alloctest.Intact(nb[:40<<10], 9))
	// A small block shrinking a little stays.
	s, err := a.Malloc(100)
	require.NoError(t, err)
	s2, err := a.Realloc(s, 90)
	require.NoError(t, err)
	assert.Equal(t, addr(s), addr(s2))

	// Past the threshold too, as glibc's realloc grows a heap chunk: a
	// mid-size block at the top grows in place instead of moving to a
	// mapping (the sliding threshold of Config{} and a pinned one alike).
	for _, cfg := range []alloc.Config{{}, {MmapThreshold: 128 << 10}} {
		g := newAlloc(t, cfg)
		b, err := g.Malloc(100 << 10)
		require.NoError(t, err)
		alloctest.Fill(b, 7)
		g.Trim() // the break ends at b
		nb, err := g.Realloc(b, 300<<10)
		require.NoError(t, err)
		assert.Equal(t, addr(b), addr(nb), "grown in place past the threshold")
		assert.Equal(t, -1, alloctest.Intact(nb[:100<<10], 7))
		assert.Zero(t, g.Stats().MmapBytes, "no mapping")
	}

	// A large mapping grows with mremap.
	m := newAlloc(t, alloc.Config{})
	big, err := m.Malloc(1 << 20)
	require.NoError(t, err)
	alloctest.Fill(big, 5)
	big2, err := m.Realloc(big, 8<<20)
	require.NoError(t, err)
	assert.Equal(t, -1, alloctest.Intact(big2[:1<<20], 5))
	assert.EqualValues(t, 1, m.Stats().Mremap)
	assert.EqualValues(t, 8<<20, m.Stats().LiveBytes)
}

// TestBadInput tries every bad input of the contract; each returns its
// error and leaves a live block written before it unchanged.
func TestBadInput(t *testing.T) {
	alloctest.RequireChecks(t)
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			a := newAlloc(t, alloc.Config{Policy: p, Limit: 64 << 20})
			other := newAlloc(t, alloc.Config{Policy: p})
			canary, err := a.Malloc(1000)
			require.NoError(t, err)
			alloctest.Fill(canary, 42)
			before := a.Stats()
			expectIntact := func(what string) {
				t.Helper()
				require.Equal(t, -1, alloctest.Intact(canary, 42), "canary damaged by %s", what)
				s := a.Stats()
				require.Equal(t, before.LiveBlocks, s.LiveBlocks, what)
				require.Equal(t, before.LiveBytes, s.LiveBytes, what)
			}

			_, err = a.Malloc(-1)
			assert.ErrorIs(t, err, alloc.ErrInvalidSize)
			_, err = a.Calloc(-5)
			assert.ErrorIs(t, err, alloc.ErrInvalidSize)
			_, err = a.Realloc(canary, -1)
			assert.ErrorIs(t, err, alloc.ErrInvalidSize)
			expectIntact("negative sizes")

			_, err = a.Malloc(65 << 20)
			assert.ErrorIs(t, err, alloc.ErrOutOfMemory, "past Limit")
			_, err = a.Malloc(1 << 62)
			assert.ErrorIs(t, err, alloc.ErrOutOfMemory, "past the reservation / the kernel")
			_, err = a.AlignedAlloc(3, 10)
			assert.ErrorIs(t, err, alloc.ErrInvalidSize, "alignment not a power of two")
			expectIntact("refused allocations")

			assert.ErrorIs(t, a.Free(make([]byte, 100)), alloc.ErrInvalidFree, "Go heap slice")
			var onStack [64]byte
			assert.ErrorIs(t, a.Free(onStack[:]), alloc.ErrInvalidFree, "Go stack slice")
			assert.ErrorIs(t, a.Free(make([]byte, 0)), alloc.ErrInvalidFree, "Go empty slice")
			ob, err := other.Malloc(1000)
			require.NoError(t, err)
			assert.ErrorIs(t, a.Free(ob), alloc.ErrInvalidFree, "another allocator's block")
			require.NoError(t, other.Free(ob))
			expectIntact("foreign frees")

			for _, n := range []int{64, 20 << 10, 64 << 10, 1 << 20} {
				b, err := a.Malloc(n)
				require.NoError(t, err)
				assert.ErrorIs(t, a.Free(b[16:]), alloc.ErrInvalidFree, "resliced from the front, %d bytes", n)
				assert.ErrorIs(t, a.Free(b[n/2+16:]), alloc.ErrInvalidFree, "interior pointer, %d bytes", n)
				_, err = a.Realloc(b[16:], 10)
				assert.ErrorIs(t, err, alloc.ErrInvalidFree, "Realloc of a resliced block")
				assert.Zero(t, a.UsableSize(b[16:]))
				require.NoError(t, a.Free(b[:1]), "cutting the length keeps the start")
				err = a.Free(b)
				assert.True(t, errors.Is(err, alloc.ErrDoubleFree) || errors.Is(err, alloc.ErrInvalidFree),
					"double free of %d bytes: %v", n, err)
				if p != alloc.PolicyMmap && n < 128<<10 {
					assert.ErrorIs(t, err, alloc.ErrDoubleFree, "double free of %d bytes in the region", n)
				}
				freeErr := err
				_, err = a.Realloc(b, 10)
				for _, sentinel := range []error{alloc.ErrDoubleFree, alloc.ErrInvalidFree} {
					assert.Equal(t, errors.Is(freeErr, sentinel), errors.Is(err, sentinel),
						"Realloc after free says what Free said (%v): %v", freeErr, err)
				}
				assert.Zero(t, a.UsableSize(b))
				expectIntact("bad frees")
			}

			// Stale frees in a slab that still has other live blocks.
			x, err := a.Malloc(1000)
			require.NoError(t, err)
			require.NoError(t, a.Free(x))
			if p == alloc.PolicyMmap {
				assert.ErrorIs(t, a.Free(x), alloc.ErrInvalidFree, "its mapping is gone")
			} else {
				assert.ErrorIs(t, a.Free(x), alloc.ErrDoubleFree)
			}
			expectIntact("a double free next to the canary")

			require.NoError(t, a.Close())
			_, err = a.Malloc(10)
			assert.ErrorIs(t, err, alloc.ErrClosed)
			_, err = a.Calloc(10)
			assert.ErrorIs(t, err, alloc.ErrClosed)
			_, err = a.AlignedAlloc(64, 10)
			assert.ErrorIs(t, err, alloc.ErrClosed)
			_, err = a.Realloc(canary, 10)
			assert.ErrorIs(t, err, alloc.ErrClosed)
			_, err = a.Realloc(nil, 10)
			assert.ErrorIs(t, err, alloc.ErrClosed)
			assert.ErrorIs(t, a.Free(canary), alloc.ErrClosed)
			assert.Zero(t, a.UsableSize(canary))
			assert.Zero(t, a.Trim())
			assert.Zero(t, a.Stats().Resident)
			assert.NoError(t, a.Close(), "closing twice")
		})
	}
}

func TestLimit(t *testing.T) {
	a := newAlloc(t, alloc.Config{Limit: 4 << 20})
	var held [][]byte
	for {
		b, err := a.Malloc(100 << 10)
		if err != nil {
			require.ErrorIs(t, err, alloc.ErrOutOfMemory)
			break
		}
		held = append(held, b)
	}
	s := a.Stats()
	assert.LessOrEqual(t, s.Committed, uint64(4<<20))
	assert.NotEmpty(t, held)
	for _, b := range held {
		require.NoError(t, a.Free(b))
	}
	b, err := a.Malloc(1 << 20)
	require.NoError(t, err, "memory under the limit again after freeing")
	require.NoError(t, a.Free(b))
}

// pinnedTop allocates 20 MB of 512-byte blocks and one block after them,
// frees the small ones, then trims. It returns the snapshots after each
// step, what Trim said, and the live block (intact, still live).
func pinnedTop(t *testing.T, a *alloc.Allocator) (allocated, freed, trimmed stats.Snapshot, released int, pin []byte) {
	t.Helper()
	var small [][]byte
	for n := 0; n < 20<<20; n += 512 {
		b, err := a.Malloc(512)
		require.NoError(t, err)
		alloctest.Fill(b, 1)
		small = append(small, b)
	}
	pin, err := a.Malloc(512)
	require.NoError(t, err)
	alloctest.Fill(pin, 2)
	allocated = a.Stats()
	for _, b := range small {
		require.NoError(t, a.Free(b))
	}
	freed = a.Stats()
	released = a.Trim()
	trimmed = a.Stats()
	require.Equal(t, -1, alloctest.Intact(pin, 2))
	return allocated, freed, trimmed, released, pin
}

// TestPinnedTop is the lesson of glibc's heap: free pages below a live
// block stay resident until Trim; a large mapping leaves at once.
func TestPinnedTop(t *testing.T) {
	a := newAlloc(t, alloc.Config{PurgeDelay: alloc.PurgeNever}) // glibc's behaviour: the purge would release them
	_, afterFree, afterTrim, trimmed, _ := pinnedTop(t, a)
	assert.GreaterOrEqual(t, afterFree.Resident, uint64(20<<20), "pinned below a live block")
	assert.GreaterOrEqual(t, afterFree.Resident-afterTrim.Resident, uint64(15<<20), "Trim releases it")
	assert.GreaterOrEqual(t, trimmed, 15<<20)

	big, err := a.Malloc(8 << 20)
	require.NoError(t, err)
	alloctest.Fill(big, 3)
	withBig := a.Stats().Resident
	require.NoError(t, a.Free(big))
	assert.GreaterOrEqual(t, withBig-a.Stats().Resident, uint64(7<<20), "munmap gives it back at once")
}

func TestTopTrimsItself(t *testing.T) {
	a := newAlloc(t, alloc.Config{Policy: alloc.PolicyBrk})
	b, err := a.Malloc(4 << 20)
	require.NoError(t, err)
	alloctest.Fill(b, 1)
	grown := a.Stats()
	require.NoError(t, a.Free(b))
	s := a.Stats()
	assert.LessOrEqual(t, s.ArenaBytes, uint64(alloc.DefaultTopPad), "break moved down, keeping TopPad")
	assert.Less(t, s.Resident, grown.Resident-(3<<20))
	assert.Greater(t, s.Madvise, grown.Madvise)
}

func TestDynamicThreshold(t *testing.T) {
	a := newAlloc(t, alloc.Config{DynamicThreshold: true})
	b, err := a.Malloc(256 << 10)
	require.NoError(t, err)
	assert.EqualValues(t, 1, a.Stats().MmapCount, "first one is mapped")
	require.NoError(t, a.Free(b))
	s := a.Stats()
	assert.EqualValues(t, 256<<10, s.MmapThreshold, "threshold slid to the freed size")
	assert.EqualValues(t, 512<<10, s.TrimThreshold)
	mmaps := s.Mmap
	for range 10 {
		b, err := a.Malloc(256 << 10)
		require.NoError(t, err)
		alloctest.Fill(b, 1)
		require.NoError(t, a.Free(b))
	}
	assert.Equal(t, mmaps, a.Stats().Mmap, "repeated buffers come from the region")

	huge, err := a.Malloc(64 << 20)
	require.NoError(t, err)
	require.NoError(t, a.Free(huge))
	assert.EqualValues(t, 256<<10, a.Stats().MmapThreshold, "never above 32 MiB")

	// The cap is inclusive, as glibc's (chunk size <= DEFAULT_MMAP_THRESHOLD_MAX):
	// a page past it does not slide, exactly 32 MiB does.
	for _, n := range []int{alloc.MaxDynamicThreshold + 1, alloc.MaxDynamicThreshold} {
		b, err := a.Malloc(n)
		require.NoError(t, err)
		require.NoError(t, a.Free(b))
	}
	s = a.Stats()
	assert.EqualValues(t, alloc.MaxDynamicThreshold, s.MmapThreshold, "a 32 MiB block slides the threshold to the cap")
	assert.EqualValues(t, 2*alloc.MaxDynamicThreshold, s.TrimThreshold)

	for _, cfg := range []alloc.Config{{MmapThreshold: 128 << 10}, {TrimThreshold: 1 << 20}, {TopPad: 64 << 10}} {
		fixed := newAlloc(t, cfg)
		assert.False(t, fixed.Stats().DynamicThreshold, "%+v pins the threshold", cfg)
		b, err = fixed.Malloc(256 << 10)
		require.NoError(t, err)
		require.NoError(t, fixed.Free(b))
		assert.EqualValues(t, 128<<10, fixed.Stats().MmapThreshold, "an explicit knob turns sliding off: %+v", cfg)
	}

	for _, cfg := range []alloc.Config{{}, {DynamicThreshold: true, MmapThreshold: 200 << 10}} {
		sliding := newAlloc(t, cfg)
		assert.True(t, sliding.Stats().DynamicThreshold, "%+v slides", cfg)
		assert.EqualValues(t, orDefault(cfg.MmapThreshold, 128<<10), sliding.Stats().MmapThreshold, "it starts at MmapThreshold")
		b, err = sliding.Malloc(256 << 10)
		require.NoError(t, err)
		assert.EqualValues(t, 1, sliding.Stats().MmapCount)
		require.NoError(t, sliding.Free(b))
		assert.EqualValues(t, 256<<10, sliding.Stats().MmapThreshold, "%+v: the threshold slid", cfg)
	}
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func TestConfigErrors(t *testing.T) {
	// A negative size is ErrInvalidConfig and ErrInvalidSize, wrapped with
	// the field's name.
	for _, tt := range []struct {
		cfg   alloc.Config
		field string
	}{
		{alloc.Config{MmapThreshold: -1}, "Config.MmapThreshold = -1"},
		{alloc.Config{Reserve: -1}, "Config.Reserve = -1"},
		{alloc.Config{Limit: -2}, "Config.Limit = -2"},
	} {
		a, err := alloc.New(tt.cfg)
		assert.Nil(t, a)
		assert.ErrorIs(t, err, alloc.ErrInvalidSize, "%+v", tt.cfg)
		assert.ErrorIs(t, err, alloc.ErrInvalidConfig, "%+v", tt.cfg)
		assert.ErrorContains(t, err, tt.field)
	}
	// An unknown enum value is ErrInvalidConfig, and the message names it.
	a, err := alloc.New(alloc.Config{Policy: 7})
	assert.Nil(t, a)
	assert.ErrorIs(t, err, alloc.ErrInvalidConfig)
	assert.EqualError(t, err, "alloc: invalid Config: unknown Policy 7")
	a = newAlloc(t, alloc.Config{Reserve: 1 << 20, Policy: alloc.PolicyBrk})
	_, err = a.Malloc(2 << 20)
	assert.ErrorIs(t, err, alloc.ErrOutOfMemory, "past the reservation")
}

// TestConcurrent: 16 goroutines allocate and free, half of the blocks freed
// by another goroutine than the one that made them. Run it with -race.
func TestConcurrent(t *testing.T) {
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			a := newAlloc(t, alloc.Config{Policy: p})
			const workers, rounds = 16, 400
			handoff := make(chan alloctest.Block, 64)
			var wg sync.WaitGroup
			var fails sync.Map
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 1))
					var mine []alloctest.Block
					for i := range rounds {
						n := rng.IntN(2048)
						if rng.IntN(20) == 0 {
							n = rng.IntN(300 << 10)
						}
						b, err := a.Malloc(n)
						if err != nil {
							fails.Store(err.Error(), true)
							return
						}
						seed := uint32(w<<16 | i)
						alloctest.Fill(b, seed)
						l := alloctest.Block{B: b, Seed: seed}
						if rng.IntN(2) == 0 {
							select {
							case handoff <- l:
								continue
							default:
							}
						}
						mine = append(mine, l)
						select {
						case o := <-handoff:
							mine = append(mine, o)
						default:
						}
						if len(mine) > 20 {
							k := rng.IntN(len(mine))
							l := mine[k]
							mine[k] = mine[len(mine)-1]
							mine = mine[:len(mine)-1]
							if alloctest.Intact(l.B, l.Seed) >= 0 {
								fails.Store("damaged block", true)
							}
							if err := a.Free(l.B); err != nil {
								fails.Store(err.Error(), true)
							}
						}
					}
					for _, l := range mine {
						if alloctest.Intact(l.B, l.Seed) >= 0 {
							fails.Store("damaged block", true)
						}
						if err := a.Free(l.B); err != nil {
							fails.Store(err.Error(), true)
						}
					}
				}()
			}
			wg.Wait()
			close(handoff)
			for l := range handoff {
				require.Equal(t, -1, alloctest.Intact(l.B, l.Seed))
				require.NoError(t, a.Free(l.B))
			}
			fails.Range(func(k, _ any) bool { t.Error(k); return true })
			s := a.Stats()
			assert.Zero(t, s.LiveBlocks)
			assert.Zero(t, s.LiveBytes)
			assert.Zero(t, s.MmapCount)
		})
	}
}

func TestConcurrentDoubleFreeIsCaughtOnce(t *testing.T) {
	if !raceBuild {
		t.Skip("two goroutines freeing one block at once is a data race in the caller; " +
			"the normal build catches sequential double frees with plain stores, the race build catches this too")
	}
	a := newAlloc(t, alloc.Config{})
	for range 200 {
		b, err := a.Malloc(48)
		require.NoError(t, err)
		keep, err := a.Malloc(48) // keeps the slab alive
		require.NoError(t, err)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = a.Free(b) }()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
			} else {
				require.ErrorIs(t, err, alloc.ErrDoubleFree)
			}
		}
		require.Equal(t, 1, ok, "exactly one of four racing frees wins")
		require.NoError(t, a.Free(keep))
	}
	assert.Zero(t, a.Stats().LiveBlocks)
}

func TestStatsCounters(t *testing.T) {
	a := newAlloc(t, alloc.Config{ColdBlocks: -1}) // the small block in its class
	s0 := a.Stats()
	small, _ := a.Malloc(100)
	mid, _ := a.Malloc(64 << 10)
	big, _ := a.Malloc(1 << 20)
	alloctest.Fill(small, 1)
	alloctest.Fill(mid, 1)
	alloctest.Fill(big, 1)
	s := a.Stats()
	assert.EqualValues(t, 3, s.LiveBlocks)
	assert.EqualValues(t, 100+64<<10+1<<20, s.LiveBytes)
	assert.EqualValues(t, 1, s.MmapCount)
	assert.EqualValues(t, 1<<20, s.MmapBytes)
	assert.Equal(t, s0.Mmap+1, s.Mmap)
	assert.GreaterOrEqual(t, s.Resident, uint64(1<<20+64<<10), "every written page is resident")
	assert.GreaterOrEqual(t, s.ArenaBytes, uint64(64<<10))
	assert.Greater(t, s.Mprotect, uint64(0), "the break moved up")
	assert.EqualValues(t, 100, s.Classes[6].LiveBytes+s.Classes[7].LiveBytes)
	require.NoError(t, a.Free(big))
	assert.Equal(t, s.Munmap+1, a.Stats().Munmap)
	require.NoError(t, a.Free(mid))
	require.NoError(t, a.Free(small))
}

type point struct{ X, Y float64 }
type withPtr struct {
	N int
	P *int
}

func TestTypedHelpers(t *testing.T) {
	a := newAlloc(t, alloc.Config{})
	p, err := alloc.NewObject[point](a)
	require.NoError(t, err)
	assert.Equal(t, point{}, *p)
	p.X, p.Y = 1, 2
	require.NoError(t, alloc.FreeObject(a, p))
	if alloctest.Checks {
		require.ErrorIs(t, alloc.FreeObject(a, p), alloc.ErrDoubleFree)
	}

	s, err := alloc.MakeSlice[uint64](a, 1000)
	require.NoError(t, err)
	assert.Len(t, s, 1000)
	for i := range s {
		require.Zero(t, s[i])
		s[i] = uint64(i)
	}
	require.NoError(t, alloc.FreeSlice(a, s[:10]))
	e, err := alloc.MakeSlice[[3]int32](a, 0)
	require.NoError(t, err)
	require.NotNil(t, e)
	require.NoError(t, alloc.FreeSlice(a, e))

	_, err = alloc.NewObject[withPtr](a)
	assert.ErrorIs(t, err, alloc.ErrPointerType)
	_, err = alloc.MakeSlice[string](a, 3)
	assert.ErrorIs(t, err, alloc.ErrPointerType)
	_, err = alloc.MakeSlice[[]byte](a, 3)
	assert.ErrorIs(t, err, alloc.ErrPointerType)
	_, err = alloc.MakeSlice[int](a, -1)
	assert.ErrorIs(t, err, alloc.ErrInvalidSize)
	_, err = alloc.MakeSlice[[1 << 20]byte](a, 1<<50)
	assert.ErrorIs(t, err, alloc.ErrOutOfMemory)
	assert.Zero(t, a.Stats().LiveBlocks)
}

func TestDefault(t *testing.T) {
	a := alloc.Default()
	require.Same(t, a, alloc.Default())
	b, err := a.Malloc(10)
	require.NoError(t, err)
	require.NoError(t, a.Free(b))
}

// TestPinnedTopPolicies is the lesson under each policy, with its figures
// (go test -run TestPinnedTopPolicies -v): resident after allocating 20 MB
// of small blocks and one more after them, after freeing the small ones,
// and after Trim.
//
// The README's figures are asserted here: one mapping per block costs 8×
// the memory of the region (a page per 512-byte block) and 500× its
// system calls.
func TestPinnedTopPolicies(t *testing.T) {
	type figures struct{ allocated, syscalls uint64 }
	got := map[alloc.Policy]figures{}
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			// PurgeNever: glibc's behaviour, the lesson (the default purge
			// would release the pinned pages by itself: TestFreeAllReturnsWithoutTrim)
			allocated, freed, trimmed, _, _ := pinnedTop(t, newAlloc(t, alloc.Config{Policy: p, PurgeDelay: alloc.PurgeNever}))
			got[p] = figures{allocated.Resident, trimmed.Syscalls()}
			t.Logf("%-9s resident: allocated %6.2f MiB, small blocks freed %6.2f MiB, after Trim %6.2f MiB; system calls %d",
				p, mb(allocated.Resident), mb(freed.Resident), mb(trimmed.Resident), trimmed.Syscalls())
			if p == alloc.PolicyMmap {
				assert.Less(t, freed.Resident, uint64(1<<20), "every free gives its page back at once")
				assert.Greater(t, allocated.Resident, uint64(100<<20), "a page per 512-byte block")
			} else {
				assert.GreaterOrEqual(t, freed.Resident, uint64(19<<20), "pinned below the live block")
				assert.Less(t, trimmed.Resident, uint64(1<<20), "Trim releases it")
			}
		})
	}
	if len(got) != len(policies) {
		return // -run chose some of the policies
	}
	mmap, brk := got[alloc.PolicyMmap], got[alloc.PolicyBrk]
	require.NotZero(t, brk.allocated)
	require.NotZero(t, brk.syscalls)
	memory := float64(mmap.allocated) / float64(brk.allocated)
	assert.InDelta(t, 8, memory, 0.5, "README: one mapping per block costs 8x the memory")
	assert.GreaterOrEqual(t, float64(mmap.syscalls)/float64(brk.syscalls), 500.0, "README: and 500x the system calls")
}

func mb(n uint64) float64 { return float64(n) / (1 << 20) }

// More Ps than when the allocator was made: the new Ps have no cache slot
// and take the locked path; everything still adds up.
func TestGOMAXPROCSGrows(t *testing.T) {
	a := newAlloc(t, alloc.Config{})
	old := runtime.GOMAXPROCS(8)
	defer runtime.GOMAXPROCS(old)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine [][]byte
			for i := range 2000 {
				b, err := a.Malloc(16 + (i*g)%3000)
				if !assert.NoError(t, err) {
					return
				}
				alloctest.Fill(b, uint32(g<<16|i))
				mine = append(mine, b)
				if len(mine) > 50 {
					assert.NoError(t, a.Free(mine[0]))
					mine = mine[1:]
				}
			}
			for _, b := range mine {
				assert.NoError(t, a.Free(b))
			}
		}()
	}
	wg.Wait()
	s := a.Stats()
	assert.Zero(t, s.LiveBlocks)
	assert.Zero(t, s.LiveBytes)
	a.Trim()
	assert.Zero(t, a.Stats().SlabBytes, "every cached block went back and every slab with it")
}
