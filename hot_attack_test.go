package alloc_test

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/alloctest"
)

// TestHotBreakdown: under every config, with medium classes turned hot
// (blocks of their class in the heap and in their slabs, live at once,
// some through a Local), resized and freed, the Stats breakdown sums to
// Committed exactly and the live blocks are counted exactly, through
// Trim and after everything is freed.
func TestHotBreakdown(t *testing.T) {
	for _, v := range alloctest.Variants {
		t.Run(v.Name, func(t *testing.T) {
			a := newAlloc(t, alloc.ConfigOf(v))
			alloc.SetHotAt(a, 16)
			l := a.NewLocal()
			rng := rand.New(rand.NewPCG(7, uint64(len(v.Name))))
			var live [][]byte
			malloc := func(n int) {
				m := a.Malloc
				if rng.IntN(3) == 0 {
					m = l.Malloc
				}
				b, err := m(n)
				require.NoError(t, err)
				clear(b)
				live = append(live, b)
			}
			check := func(when string) {
				t.Helper()
				s := a.Stats()
				requireBreakdown(t, s, when)
				require.EqualValues(t, len(live), s.LiveBlocks, "%s: live blocks", when)
			}
			for n := 1025; n <= 2048; n += 64 { // every medium class up to 2 KiB, past 16 of its blocks
				for range 24 {
					malloc(n + rng.IntN(64))
				}
			}
			hot := 0
			for n := 1100; n <= 2000; n += 128 {
				if alloc.IsHot(a, n) {
					hot++
				}
			}
			if !v.Debug && v.Policy != "mmap" {
				require.Positive(t, hot, "classes turned hot")
			}
			check("hot")
			for round := range 3 {
				for range 1500 {
					switch k := rng.IntN(10); {
					case k < 5 || len(live) == 0:
						malloc(1025 + rng.IntN(1100))
					case k < 7:
						i := rng.IntN(len(live))
						b, err := a.Realloc(live[i], 900+rng.IntN(1300))
						require.NoError(t, err)
						live[i] = b
					default:
						i := rng.IntN(len(live))
						require.NoError(t, a.Free(live[i]))
						live[i] = live[len(live)-1]
						live = live[:len(live)-1]
					}
				}
				check("round")
				if round == 1 {
					a.Trim()
					check("trimmed")
				}
			}
			for _, b := range live {
				require.NoError(t, a.Free(b))
			}
			live = nil
			check("all freed")
			require.NoError(t, l.Close())
			a.Trim()
			check("all freed, trimmed")
			assert.Zero(t, a.Stats().LiveBytes)
		})
	}
}

// TestHotAtAThousand: with no block ever freed (no front holds a chunk), a
// medium class turns hot as the heap hands out its 1024th chunk of the
// class's sizes, not one before; held blocks of a size the class shares
// with none other (its chunk's range) count, those of the class above do
// not.
func TestHotAtAThousand(t *testing.T) {
	a := newAlloc(t, alloc.Config{})
	var held [][]byte
	for range 2000 { // the class above: 1537–1792
		b, err := a.Malloc(1600)
		require.NoError(t, err)
		held = append(held, b)
		if alloc.IsHot(a, 1600) {
			break
		}
	}
	require.True(t, alloc.IsHot(a, 1600))
	require.Len(t, held, 1024, "1600 bytes: hot at its 1024th chunk")
	require.False(t, alloc.IsHot(a, 1500), "the class below")
	require.Equal(t, 1496+16, a.BlockSize(1500), "the heap's block: its chunk less the header")
	for i := range 1023 {
		b, err := a.Malloc(1410 + i%126)
		require.NoError(t, err)
		held = append(held, b)
		require.False(t, alloc.IsHot(a, 1500), "hot after %d blocks", i+1)
	}
	b, err := a.Malloc(1500)
	require.NoError(t, err)
	held = append(held, b)
	require.True(t, alloc.IsHot(a, 1500), "hot at its 1024th chunk")
	require.Equal(t, 1536, a.BlockSize(1500))
	for _, b := range held {
		require.NoError(t, a.Free(b))
	}
}
