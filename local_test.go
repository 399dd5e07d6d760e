package alloc_test

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// localHeap is an Allocator whose Malloc, Calloc, Realloc and Free go
// through a Local: what the model (alloctest.Model) drives to hold a Local
// to the same contract as the Allocator. The rest (AlignedAlloc,
// UsableSize, Trim, Stats) is the Allocator's.
type localHeap struct {
	*alloc.Allocator
	l *alloc.Local
}

func (h localHeap) Malloc(n int) ([]byte, error)            { return h.l.Malloc(n) }
func (h localHeap) Calloc(n int) ([]byte, error)            { return h.l.Calloc(n) }
func (h localHeap) Realloc(b []byte, n int) ([]byte, error) { return h.l.Realloc(b, n) }
func (h localHeap) Free(b []byte) error                     { return h.l.Free(b) }

// newLocalModels returns an allocator made from v, a Local on it, a model
// driving the Local and a model driving the Allocator itself: blocks
// handed from one model to the other are freed by the other.
func newLocalModels(t require.TestingT, v alloctest.Variant) (*alloc.Allocator, *alloc.Local, *alloctest.Model, *alloctest.Model) {
	a, err := alloc.New(alloc.ConfigOf(v))
	require.NoError(t, err)
	l := a.NewLocal()
	ml := alloctest.NewModel(localHeap{a, l}, alloc.ErrInvalidFree, alloc.ErrDoubleFree)
	ma := alloctest.NewModel(a, alloc.ErrInvalidFree, alloc.ErrDoubleFree)
	ma.SeedFrom(1 << 30)
	return a, l, ml, ma
}

// TestLocalModel: the property test's state machine over a Local, with a
// second model on the Allocator and blocks handed between the two (a
// block a Local allocated freed by the Allocator, and the other way), and
// the Local closed and replaced now and then. After each action both
// models are checked together: patterns intact, no overlap, Stats exact.
func TestLocalModel(t *testing.T) {
	for _, v := range alloctest.Variants {
		if (raceBuild || testing.Short()) && !localModelQuick[v.Name] {
			continue // ten times slower under -race: the variants whose paths differ
		}
		t.Run(v.Name, func(t *testing.T) {
			rapid.Check(t, func(rt *rapid.T) {
				a, l, ml, ma := newLocalModels(rt, v)
				defer a.Close()
				acts := actions(ml)
				acts[""] = func(t *rapid.T) { // both models at once: Stats counts the blocks of both
					if err := alloctest.CheckAll(ml, ma); err != nil {
						t.Fatal(err)
					}
				}
				hand := func(from, to *alloctest.Model) func(*rapid.T) {
					return func(t *rapid.T) {
						blk, err := from.Hand(drawLive(t, from))
						if err != nil {
							t.Fatal(err)
						}
						to.Adopt(blk)
					}
				}
				badFree := acts["BadFree"]
				acts["BadFree"] = func(t *rapid.T) {
					// a stale slice is checked against the model's own live
					// blocks: only while the other model holds none may its
					// memory not be live
					if ma.Live() > 0 {
						t.Skip("the Allocator's model holds blocks")
					}
					badFree(t)
				}
				acts["HandToAllocator"] = hand(ml, ma)
				acts["HandToLocal"] = hand(ma, ml)
				acts["AllocatorMalloc"] = func(t *rapid.T) {
					if err := ma.Apply(alloctest.Op{Kind: alloctest.OpMalloc, Size: drawSize(t)}); err != nil {
						t.Fatal(err)
					}
				}
				acts["AllocatorFree"] = func(t *rapid.T) {
					if err := ma.Apply(alloctest.Op{Kind: alloctest.OpFree, Block: drawLive(t, ma)}); err != nil {
						t.Fatal(err)
					}
				}
				acts["CloseLocal"] = func(t *rapid.T) {
					// a new Local takes over the old one's blocks: they are
					// the Allocator's, whoever frees them
					if err := l.Close(); err != nil {
						t.Fatal(err)
					}
					if _, err := l.Malloc(16); !errors.Is(err, alloc.ErrClosed) {
						t.Fatalf("Malloc on a closed Local: %v, want ErrClosed", err)
					}
					l = a.NewLocal()
					ml.Retarget(localHeap{a, l})
				}
				rt.Repeat(acts)
				for ma.Live() > 0 {
					blk, err := ma.Hand(0)
					if err != nil {
						rt.Fatal(err)
					}
					ml.Adopt(blk)
				}
				if err := ml.FreeAll(); err != nil {
					rt.Fatal(err)
				}
				require.NoError(rt, l.Close())
			})
		})
	}
}

// localModelQuick are the variants TestLocalModel runs in a race build or
// with -short: the Local's bins (default, low-threshold), no bins (Debug),
// no slabs (mmap).
var localModelQuick = map[string]bool{"default": true, "low-threshold": true, "debug": true, "mmap": true}

// TestLocalCrossGoroutineFrees: workers each allocate from their own
// Local and pass blocks to the next worker, which frees half of them with
// its own Local and half with the Allocator's Free; every block keeps its
// pattern until freed, and the counters come back to zero. Run with -race:
// the Locals are used by their owners only, the blocks go everywhere.
func TestLocalCrossGoroutineFrees(t *testing.T) {
	a := newAlloc(t, alloc.Config{})
	const workers = 4
	rounds := 3000
	if testing.Short() {
		rounds = 500
	}
	chans := make([]chan []byte, workers)
	for i := range chans {
		chans[i] = make(chan []byte, 64)
	}
	var wg sync.WaitGroup
	var failed atomic.Bool
	fail := func(format string, args ...any) {
		if failed.CompareAndSwap(false, true) {
			t.Errorf(format, args...)
		}
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := a.NewLocal()
			defer func() {
				if err := l.Close(); err != nil {
					fail("Close: %v", err)
				}
			}()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			in, out := chans[w], chans[(w+1)%workers]
			free := func(b []byte) {
				if alloctest.Intact(b, uint32(len(b))) >= 0 {
					fail("a block lost its pattern before its free")
				}
				var err error
				if rng.IntN(2) == 0 {
					err = l.Free(b)
				} else {
					err = a.Free(b)
				}
				if err != nil {
					fail("Free: %v", err)
				}
			}
			for i := range rounds {
				n := 1 + rng.IntN(3000)
				if i%50 == 0 {
					n = 40<<10 + rng.IntN(100<<10) // a mid-size or mapped block now and then
				}
				b, err := l.Malloc(n)
				if err != nil {
					fail("Malloc: %v", err)
					return
				}
				alloctest.Fill(b, uint32(n))
				select {
				case out <- b:
				default:
					free(b) // the next worker is behind: free it here
				}
				select {
				case x := <-in:
					free(x)
				default:
				}
			}
			// the ring is drained once every worker has stopped sending
		}()
	}
	wg.Wait()
	for _, ch := range chans {
		close(ch)
		for b := range ch {
			assert.Negative(t, alloctest.Intact(b, uint32(len(b))))
			require.NoError(t, a.Free(b))
		}
	}
	s := a.Stats()
	assert.Zero(t, s.LiveBlocks)
	assert.Zero(t, s.LiveBytes)
	requireBreakdown(t, s, "after the workers")
}

// TestLocalClose: a closed Local refuses every call with ErrClosed, its
// blocks stay valid for the Allocator (and any other Local), its cached
// blocks are counted in CachedBytes until its Close gives them back, and
// closing twice is fine.
func TestLocalClose(t *testing.T) {
	alloctest.RequireChecks(t)
	a := newAlloc(t, alloc.Config{PurgeDelay: alloc.PurgeNever})
	l := a.NewLocal()
	live, err := l.Malloc(100)
	require.NoError(t, err)
	freed, err := l.Malloc(100)
	require.NoError(t, err)
	cached0 := a.Stats().CachedBytes
	require.NoError(t, l.Free(freed))
	assert.Greater(t, a.Stats().CachedBytes, cached0, "the freed block waits in the Local's bin")
	assert.ErrorIs(t, l.Free(freed), alloc.ErrDoubleFree)
	assert.ErrorIs(t, a.Free(freed), alloc.ErrDoubleFree, "the Allocator sees the block in the Local's bin as free")

	a.Trim()
	assert.NotZero(t, a.Stats().CachedBytes, "Trim leaves a Local's bins alone: its owner may be using them")
	require.NoError(t, l.Close())
	requireBreakdown(t, a.Stats(), "closed")
	assert.EqualValues(t, 1, a.Stats().LiveBlocks)

	for name, call := range map[string]func() error{
		"Malloc":  func() error { _, err := l.Malloc(10); return err },
		"Calloc":  func() error { _, err := l.Calloc(10); return err },
		"Realloc": func() error { _, err := l.Realloc(nil, 10); return err },
		"Free":    func() error { return l.Free(live) },
	} {
		err := call()
		assert.ErrorIs(t, err, alloc.ErrClosed, name)
		assert.EqualError(t, err, "alloc: use of a closed Local", name)
	}
	assert.NoError(t, l.Close(), "a second Close")
	require.NoError(t, a.Free(live), "the Local's block is still the Allocator's")
	a.Trim()
	s := a.Stats()
	assert.Zero(t, s.LiveBlocks)
	assert.Zero(t, s.CachedBytes)
}

// TestLocalEveryConfig: a Local under each configuration (Debug takes the
// Allocator's paths) hands out blocks of every kind, takes back blocks of
// the Allocator's, refuses bad frees and counts exactly.
func TestLocalEveryConfig(t *testing.T) {
	for _, v := range alloctest.Variants {
		t.Run(v.Name, func(t *testing.T) {
			a := newAlloc(t, alloc.ConfigOf(v))
			l := a.NewLocal()
			var blocks [][]byte
			for _, n := range []int{0, 1, 16, 64, 1000, 4096, 32 << 10, 40 << 10, 200 << 10} {
				b, err := l.Malloc(n)
				require.NoError(t, err)
				c, err := l.Calloc(n)
				require.NoError(t, err)
				assert.Equal(t, make([]byte, n), c, "Calloc zeroes")
				r, err := l.Realloc(nil, n)
				require.NoError(t, err)
				blocks = append(blocks, b, c, r)
			}
			for i := range blocks {
				if len(blocks[i]) > 1 && alloctest.Checks {
					assert.ErrorIs(t, l.Free(blocks[i][1:]), alloc.ErrInvalidFree)
				}
			}
			s := a.Stats()
			assert.EqualValues(t, len(blocks), s.LiveBlocks)
			for i, b := range blocks {
				if i%2 == 0 {
					require.NoError(t, l.Free(b))
				} else {
					require.NoError(t, a.Free(b))
				}
			}
			require.NoError(t, l.Close())
			require.NoError(t, alloctest.Empty(a))
		})
	}
}

// TestLocalOfZeroAllocator: a Local of an Allocator not made by New
// answers ErrNotInitialized, as the Allocator does.
func TestLocalOfZeroAllocator(t *testing.T) {
	l := new(alloc.Allocator).NewLocal()
	_, err := l.Malloc(10)
	assert.ErrorIs(t, err, alloc.ErrNotInitialized)
	assert.ErrorIs(t, l.Free(make([]byte, 10)), alloc.ErrNotInitialized)
	assert.ErrorIs(t, l.Close(), alloc.ErrNotInitialized)
}

// TestLocalRacingAllocatorClose: workers with Locals allocate and free
// (without touching the blocks: Close unmaps them) while the Allocator is
// closed under them. Every call made before Close returned succeeds or
// returns ErrClosed, every call after returns ErrClosed, the Locals'
// Close is safe before, during and after, and nothing hangs.
func TestLocalRacingAllocatorClose(t *testing.T) {
	rounds := 10
	if testing.Short() {
		rounds = 3
	}
	for round := range rounds {
		a, err := alloc.New(alloc.Config{})
		require.NoError(t, err)
		var (
			wg     sync.WaitGroup
			closed atomic.Bool
			bad    atomic.Value
		)
		check := func(op string, after bool, err error) {
			switch {
			case after && !errors.Is(err, alloc.ErrClosed):
				bad.Store(op + " after Close returned: want ErrClosed, got " + errString(err))
			case err != nil && !errors.Is(err, alloc.ErrClosed):
				bad.Store(op + ": want success or ErrClosed, got " + errString(err))
			}
		}
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(round), uint64(w)))
				l := a.NewLocal()
				var mine [][]byte
				for i := 0; ; i++ {
					after := closed.Load()
					switch op := rng.IntN(10); {
					case op < 4:
						b, err := l.Malloc(16 + rng.IntN(4000))
						check("Malloc", after, err)
						if err == nil {
							mine = append(mine, b)
						}
					case op < 8 && len(mine) > 0:
						k := rng.IntN(len(mine))
						var err error
						if op < 6 {
							err = l.Free(mine[k])
						} else {
							err = a.Free(mine[k])
						}
						check("Free", after, err)
						mine[k] = mine[len(mine)-1]
						mine = mine[:len(mine)-1]
					case op == 8:
						check("Close", false, l.Close()) // nil, or ErrClosed from nothing
						l = a.NewLocal()
					default:
						_ = a.Stats()
					}
					if after && i > 0 && rng.IntN(8) == 0 {
						assert.NoError(t, l.Close(), "a Local's Close after the Allocator's")
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		done := make(chan error, 1)
		go func() { done <- a.Close() }()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not return in 10 s with Locals in use")
		}
		closed.Store(true)
		finished := make(chan struct{})
		go func() { wg.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-time.After(10 * time.Second):
			t.Fatal("Locals' calls did not return in 10 s after Close")
		}
		if msg := bad.Load(); msg != nil {
			t.Fatal(msg)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// TestLocalNoGoAllocations: a Local's small paths allocate nothing on the
// Go heap once warm (the README's 0 allocs/op).
func TestLocalNoGoAllocations(t *testing.T) {
	a := newAlloc(t, alloc.Config{})
	l := a.NewLocal()
	for _, n := range []int{16, 1 << 10, 32 << 10} {
		op := func() error {
			b, err := l.Malloc(n)
			if err != nil {
				return err
			}
			b[0] = 1
			if err := l.Free(b); err != nil {
				return err
			}
			if b, err = l.Calloc(n); err != nil {
				return err
			}
			return l.Free(b)
		}
		require.NoError(t, op())
		var err error
		allocs := testing.AllocsPerRun(100, func() {
			if e := op(); e != nil && err == nil {
				err = e
			}
		})
		require.NoError(t, err)
		assert.Zero(t, allocs, "%d bytes", n)
	}
	require.NoError(t, l.Close())
}

// TestLocalDroppedUnclosed: a Local dropped without Close gives its
// cached blocks back once the garbage collector finds it unreachable.
func TestLocalDroppedUnclosed(t *testing.T) {
	a := newAlloc(t, alloc.Config{PurgeDelay: alloc.PurgeNever})
	func() {
		l := a.NewLocal()
		b, err := l.Malloc(100)
		require.NoError(t, err)
		require.NoError(t, l.Free(b)) // its batch and this block wait in its bin
	}()
	a.Trim() // the P caches' blocks: not the Local's
	require.NotZero(t, a.Stats().CachedBytes, "the Local's bin holds blocks")
	deadline := time.Now().Add(10 * time.Second)
	for a.Stats().CachedBytes != 0 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(time.Millisecond)
		a.Trim()
	}
	s := a.Stats()
	assert.Zero(t, s.CachedBytes, "the dropped Local's blocks went back")
	assert.Zero(t, s.LiveBlocks)
	requireBreakdown(t, s, "after the cleanup")
}
