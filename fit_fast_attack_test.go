package alloc_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/stretchr/testify/require"
)

// Attacks on the best-fit heap's fast bins through the Allocator: memory
// they hold goes back by itself, Trim counts it, and they hold up under
// many goroutines.

// mediumFreeAll builds a heap of about total bytes of medium blocks of a
// few sizes (the fast bins' case: the same sizes over and over) with
// workers goroutines, pins it with a block above, frees every block from
// another goroutine than the one that made it.
func mediumFreeAll(t *testing.T, a *alloc.Allocator, total, workers int) {
	t.Helper()
	sizes := []int{1025, 1500, 3000, 4100, 8000, 20000, 32<<10 - 100} // none a class's exact size: all the heap's
	per := total / workers
	blocks := perWorker(workers, func(w int) (bs [][]byte) {
		rng := rand.New(rand.NewPCG(uint64(w), 3))
		for got := 0; got < per; {
			n := sizes[rng.IntN(len(sizes))]
			b, err := a.Malloc(n)
			if err != nil {
				panic(err)
			}
			for i := 0; i < n; i += 512 {
				b[i] = byte(w)
			}
			bs = append(bs, b)
			got += n
		}
		return bs
	})
	pin, err := a.Malloc(200 << 10) // above the heap: its runs cannot go back whole
	require.NoError(t, err)
	pin[0] = 1
	t.Cleanup(func() { _ = a.Free(pin) })
	freeCrosswise(a, blocks)
}

// TestFitFastFreeAll: issue 10's free-all with medium blocks only. With
// the purge (the default, and in the background), the free memory of the
// best-fit heap goes back without a call: what the fast bins held too
// (they hold up to 256 KiB: the heap's free bytes not released must fall
// below that). PurgeNever keeps it until Trim, which gives it back;
// PurgeImmediately holds nothing back.
func TestFitFastFreeAll(t *testing.T) {
	total := 64 << 20
	if testing.Short() || raceBuild {
		total = 16 << 20
	}
	const slack = 128 << 10 // the free chunks' first and last pages: not released (the fast bins may hold 256 KiB)
	for _, c := range []struct {
		name string
		cfg  alloc.Config
	}{
		{"default", alloc.Config{ColdBlocks: alloctest.AllCold}},
		{"background", alloc.Config{ColdBlocks: alloctest.AllCold, PurgeInBackground: true}},
		{"background-never", alloc.Config{ColdBlocks: alloctest.AllCold, PurgeInBackground: true, PurgeDelay: alloc.PurgeNever}},
		{"never", alloc.Config{ColdBlocks: alloctest.AllCold, PurgeDelay: alloc.PurgeNever}},
		{"immediately", alloc.Config{ColdBlocks: alloctest.AllCold, PurgeDelay: alloc.PurgeImmediately}},
	} {
		for _, workers := range []int{1, 8} {
			t.Run(fmt.Sprintf("%s/%d", c.name, workers), func(t *testing.T) {
				a := newAlloc(t, c.cfg)
				mediumFreeAll(t, a, total, workers)
				requireBreakdown(t, a.Stats(), "all freed")
				if c.cfg.PurgeDelay == alloc.PurgeNever && !c.cfg.PurgeInBackground {
					time.Sleep(30 * time.Millisecond)
					s := a.Stats()
					require.Greater(t, s.FitFreeBytes+s.DirtyBytes, uint64(total/2), "kept until Trim")
					a.Trim()
					s = a.Stats()
					requireBreakdown(t, s, "trimmed")
					require.Zero(t, s.FitFreeBytes+s.DirtyBytes, "Trim gives back what the fast bins held too: %v", s.Breakdown())
					return
				}
				start := time.Now()
				var s = a.Stats()
				for s.FitFreeBytes >= slack && time.Since(start) < 5*time.Second {
					time.Sleep(time.Millisecond)
					s = a.Stats()
				}
				t.Logf("the heap's free bytes not released: %d KiB %v after the last free", s.FitFreeBytes>>10, time.Since(start))
				require.Less(t, s.FitFreeBytes, uint64(slack), "the free memory went back by itself: %v", s.Breakdown())
				requireBreakdown(t, s, "purged")
			})
		}
	}
}

// TestFitFastRace: many goroutines allocate, reallocate and free medium
// blocks of a few sizes (the fast bins' case), handing blocks to each
// other to free; Trim, Stats and UsableSize run beside them. Contents are
// checked before every free.
func TestFitFastRace(t *testing.T) {
	a := newAlloc(t, alloc.Config{ColdBlocks: alloctest.AllCold, PurgeDelay: time.Millisecond})
	const workers = 16
	rounds := 3000
	if testing.Short() || raceBuild {
		rounds = 600
	}
	sizes := []int{1025, 1040, 2000, 3000, 3008, 9000, 30000}
	ch := make(chan medium, workers)
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	fail := func(format string, args ...any) {
		select {
		case errc <- fmt.Errorf(format, args...):
		default:
		}
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 5))
			var mine []medium
			for i := range rounds {
				switch op := rng.IntN(12); {
				case op < 5 || len(mine) == 0:
					n := sizes[rng.IntN(len(sizes))]
					b, err := a.Malloc(n)
					if err != nil {
						fail("Malloc(%d): %v", n, err)
						return
					}
					handOff(ch, &mine, filled(b, byte(rng.Uint32()))) // another goroutine frees it
				case op < 8:
					m := takeOne(ch, &mine, rng)
					if !m.intact() {
						fail("a block changed")
						return
					}
					if a.UsableSize(m.b) < len(m.b) {
						fail("UsableSize %d < %d", a.UsableSize(m.b), len(m.b))
					}
					if err := a.Free(m.b); err != nil {
						fail("Free: %v", err)
						return
					}
				case op < 11:
					k := rng.IntN(len(mine))
					m := mine[k]
					n := sizes[rng.IntN(len(sizes))] + rng.IntN(64)
					nb, err := a.Realloc(m.b, n)
					if err != nil {
						fail("Realloc: %v", err)
						return
					}
					for j := range min(n, len(m.b)) {
						if nb[j] != m.tag {
							fail("Realloc lost the contents")
							return
						}
					}
					for j := range nb {
						nb[j] = m.tag
					}
					mine[k] = medium{nb, m.tag}
				default:
					if i%50 == 0 {
						a.Trim()
					}
					_ = a.Stats()
				}
			}
			for _, m := range mine {
				if !m.intact() || a.Free(m.b) != nil {
					fail("the last frees")
					return
				}
			}
		}()
	}
	wg.Wait()
	drainHanded(t, a, ch)
	close(errc)
	for err := range errc {
		require.NoError(t, err)
	}
	s := a.Stats()
	requireBreakdown(t, s, "after the race")
	require.Zero(t, s.LiveBlocks)
}
