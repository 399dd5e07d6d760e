package alloc_test

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Attacks on the medium path outside the gate (gate.go): a Malloc or Free
// that goes to the best-fit heap's lock without entering the gate, and
// Close.

// frontHeldDamaged leaves a block of 1500 bytes in this P's front (freed
// without the lock), its header overwritten by a write past the end of
// the live block before it, x: the next drain of the front (the heap's
// growth, Trim, Close) reports the chunk, and so does x's Free (its
// chunk's end names no chunk). It returns x, and the other live blocks
// it leaves.
func frontHeldDamaged(t *testing.T, a *alloc.Allocator) (x []byte, others [][]byte) {
	t.Helper()
	for range 1000 {
		x, err := a.Malloc(1500)
		require.NoError(t, err)
		y, err := a.Malloc(1500)
		require.NoError(t, err)
		usable := uintptr(a.UsableSize(x))
		if d := addr(y) - addr(x); addr(y) < addr(x) || d < usable+8 || d > usable+24 {
			// not neighbours: both stay live (a cold class's chunk has 8
			// bytes more than its block's usable size: the class's size
			// plus the header, rounded to 16)
			others = append(others, x, y)
			continue
		}
		before := a.Stats().FitCachedBytes
		require.NoError(t, a.Free(y))
		if a.Stats().FitCachedBytes == before {
			others = append(others, x)
			continue // freed under the lock (another P than the one whose front the first Malloc made)
		}
		hdr := (*uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(y)), -8)) // y's chunk's header
		*hdr = 0
		return x, others
	}
	t.Fatal("no free went into a front in 1000 tries")
	return nil, nil
}

// TestMediumMallocAfterCloseDeliversNothing: Close's drain of the fronts
// finds the chunk a front held damaged, and delivers its report itself:
// with no OnCorruption, Close panics with it, its work done (a second
// Close returns nil). A Malloc of a medium size after Close is refused
// (ErrClosed), as every call after Close, and delivers nothing: it must
// not panic with a report it did not find. (A medium Malloc enters no
// gate: fitMalloc delivered whatever the queue held, even when the heap
// had refused it.)
func TestMediumMallocAfterCloseDeliversNothing(t *testing.T) {
	a, err := alloc.New(alloc.Config{ColdBlocks: alloctest.AllCold, PurgeDelay: alloc.PurgeNever})
	require.NoError(t, err)
	frontHeldDamaged(t, a)
	r := callRecovered(func() { err = a.Close() })
	require.IsType(t, &alloc.Corruption{}, r, "Close panics with the report it found (no OnCorruption)")
	require.Equal(t, alloc.FreeList, r.(*alloc.Corruption).Kind)
	require.NoError(t, a.Close(), "Close's work was done")
	for _, n := range []int{1500, 3000, 20000} {
		var b []byte
		r := callRecovered(func() { b, err = a.Malloc(n) })
		require.Nil(t, r, "Malloc(%d) after Close panicked", n)
		require.ErrorIs(t, err, alloc.ErrClosed, n)
		require.Nil(t, b)
		l := a.NewLocal()
		r = callRecovered(func() { b, err = l.Malloc(n) })
		require.Nil(t, r, "a Local's Malloc(%d) after Close panicked", n)
		require.ErrorIs(t, err, alloc.ErrClosed, n)
	}
}

// TestMediumPathRacesClose: goroutines on the medium path (the
// Allocator's and Locals' Malloc, Free, Realloc, Calloc, UsableSize, with
// Trim, Stats and the heap profile beside them) race Close, in every
// configuration that keeps the best-fit heap or leaves it out (Debug),
// every block sampled for the profile. Every error is ErrClosed to
// errors.Is, nothing panics or hangs, and once Close is done the profile
// counts every sampled block freed (Close frees them all).
func TestMediumPathRacesClose(t *testing.T) {
	configs := map[string]alloc.Config{
		"default":    {},
		"cold-all":   {ColdBlocks: alloctest.AllCold}, // 1500 bytes in the heap and its fronts for good
		"never":      {PurgeDelay: alloc.PurgeNever, ColdBlocks: alloctest.AllCold},
		"immediate":  {PurgeDelay: alloc.PurgeImmediately, ColdBlocks: alloctest.AllCold},
		"background": {PurgeInBackground: true, PurgeDelay: time.Millisecond, ColdBlocks: alloctest.AllCold},
		"brk":        {Policy: alloc.PolicyBrk, ColdBlocks: alloctest.AllCold},
		"huge":       {HugePages: alloc.HugePagesAll, ColdBlocks: alloctest.AllCold},
		"debug":      {Debug: true},
	}
	rounds := 12
	if testing.Short() || raceBuild {
		rounds = 4
	}
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			for round := range rounds {
				cfg.ProfileRate = 1
				cfg.OnCorruption = func(c *alloc.Corruption) { t.Errorf("a report: %v", c) }
				a, err := alloc.New(cfg)
				require.NoError(t, err)
				var wg sync.WaitGroup
				for g := range 4 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						mediumWorker(t, a, uint64(g), uint64(round))
					}()
				}
				time.Sleep(time.Duration(round%5) * time.Millisecond)
				noHang(t, "Close", func() { require.NoError(t, a.Close()) })
				wg.Wait()
				for _, r := range a.HeapProfile().Records {
					require.Equal(t, r.AllocObjects, r.FreeObjects, "round %d: a sampled block still live after Close", round)
					require.Equal(t, r.AllocBytes, r.FreeBytes, "round %d", round)
				}
			}
		})
	}
}

// mediumWorker runs medium operations on a until one is refused
// (ErrClosed), reporting any other error.
func mediumWorker(t *testing.T, a *alloc.Allocator, g, round uint64) {
	rng := rand.New(rand.NewPCG(g, round))
	l := a.NewLocal()
	defer func() { _ = l.Close() }()
	var mine [][]byte
	size := func() int { return 1025 + rng.IntN(31<<10) }
	for {
		var b []byte
		var err error
		switch op := rng.IntN(10); {
		case op < 2 || len(mine) == 0:
			b, err = a.Malloc(size())
		case op == 2:
			b, err = l.Malloc(size())
		case op == 3:
			b, err = a.Calloc(size())
		case op == 4:
			k := rng.IntN(len(mine))
			if nb, rerr := a.Realloc(mine[k], size()); rerr == nil {
				mine[k] = nb
			} else {
				err = rerr
			}
		case op == 5:
			k := rng.IntN(len(mine))
			a.UsableSize(mine[k])
			err = l.Free(mine[k])
			mine = append(mine[:k], mine[k+1:]...)
		case op == 6:
			if rng.IntN(8) == 0 {
				a.Trim()
			}
			_ = a.Counters()
			_ = a.HeapProfile()
		default:
			k := rng.IntN(len(mine))
			err = a.Free(mine[k])
			mine = append(mine[:k], mine[k+1:]...)
		}
		if err != nil {
			if !errors.Is(err, alloc.ErrClosed) {
				t.Errorf("goroutine %d: %v", g, err)
			}
			return
		}
		if b != nil {
			mine = append(mine, b) // not written: Close may have unmapped it
		}
	}
}

// TestMediumMallocReportPanics: a medium Malloc outside the gate that
// finds damage (its P's front drained as the heap grows, a chunk there
// overwritten) delivers the report once it holds no lock; a handler that
// panics gets the panic through Malloc, and the block Malloc was handing
// out is freed: nothing leaks, and the allocator stays usable. A handler
// that closes the allocator there: the call completes, every later one
// gets ErrClosed.
func TestMediumMallocReportPanics(t *testing.T) {
	for _, handler := range []string{"panic", "close"} {
		t.Run(handler, func(t *testing.T) {
			var a *alloc.Allocator
			reports := 0
			a = newAlloc(t, alloc.Config{ColdBlocks: alloctest.AllCold, PurgeDelay: alloc.PurgeNever, OnCorruption: func(c *alloc.Corruption) {
				reports++
				if handler == "close" {
					assert.NoError(t, a.Close())
					return
				}
				panic(c)
			}})
			x, live := frontHeldDamaged(t, a)
			noHang(t, "medium Mallocs until the damage is found", func() {
				for i := 0; reports == 0; i++ {
					require.Less(t, i, 100000, "the damage is found as the heap grows on this P")
					var b []byte
					var err error
					r := callRecovered(func() { b, err = a.Malloc(3000) })
					if r != nil {
						require.IsType(t, &alloc.Corruption{}, r)
						require.Nil(t, b)
						break
					}
					if reports != 0 { // closed by the handler: the block is gone with the memory
						require.NoError(t, err)
						break
					}
					require.NoError(t, err)
					live = append(live, b)
				}
			})
			require.Equal(t, 1, reports)
			if handler == "close" {
				_, err := a.Malloc(3000)
				require.ErrorIs(t, err, alloc.ErrClosed)
				require.ErrorIs(t, a.Free(x), alloc.ErrClosed)
				return
			}
			for _, b := range live {
				require.NoError(t, a.Free(b))
			}
			// x stays: its Free would report its neighbour's damage again
			require.Equal(t, uint64(1), a.Stats().LiveBlocks, "the block the panicking Malloc was handing out was freed")
			for range 100 {
				b, err := a.Malloc(3000)
				require.NoError(t, err)
				require.NoError(t, a.Free(b))
			}
		})
	}
}
