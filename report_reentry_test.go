package alloc_test

import (
	"cmp"
	"os"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Corruption reports are delivered with no allocator lock held, once the
// call that found them is done (issue 11, items 5 and 13). These tests
// give OnCorruption handlers that do everything a handler may: panic (as
// net/http recovers a panicking handler), call Stats, Malloc, Free, Close.
// Nothing may hang (within noHang's timeout), fault or leak.

// noHang runs fn and, if it has not returned within 10 s, crashes the test
// binary with a message and every goroutine's stack (a hang is a failure,
// not a timeout of the whole run).
func noHang(t *testing.T, what string, fn func()) {
	t.Helper()
	watchdog := time.AfterFunc(10*time.Second, func() {
		panic(what + ": still running after 10 s (a lock left held?)")
	})
	defer watchdog.Stop()
	fn()
}

// damageFreeList leaves blocks of 64 bytes on their slab's free list with
// every link damaged (xor damage), so the next refill of the class finds
// them, and returns the live blocks that keep them mapped, and their
// release. Of 42 blocks, those freed are the ones at an even index of
// their slab whose neighbour below is one of the 42 and stays live: each
// freed block's slab keeps a live block (Trim cannot give its pages
// back, nor move the break down over them), and a damaged link that
// decodes to a neighbour of the block it should name (damage 1) names a
// live block, which the check refuses, whatever order the caches handed
// the blocks out in. The first slabs of the 64-byte class are one page.
func damageFreeList(t *testing.T, a *alloc.Allocator, damage uint32) (kept [][]byte, release func()) {
	t.Helper()
	page := uintptr(os.Getpagesize())
	var blocks [][]byte
	ours := map[uintptr]bool{}
	for range 42 {
		b, err := a.Malloc(64)
		require.NoError(t, err)
		blocks = append(blocks, b)
		ours[addr(b)] = true
	}
	var freed [][]byte
	for _, b := range blocks {
		p := addr(b)
		if idx := p % page / 64; idx > 0 && idx%2 == 0 && ours[p-64] {
			freed = append(freed, b)
		} else {
			kept = append(kept, b)
		}
	}
	require.GreaterOrEqual(t, len(freed), 8, "enough blocks of the 42 have a neighbour below among them")
	// Trim first: with no cache on this P (only a refill makes one), each
	// Free goes straight to its slab's free list, and every link is
	// written in the blocks.
	a.Trim()
	slices.SortFunc(freed, func(x, y []byte) int { return cmp.Compare(addr(x), addr(y)) })
	for _, b := range freed {
		require.NoError(t, a.Free(b))
	}
	a.Trim()
	for _, b := range freed {
		*(*uint32)(unsafe.Pointer(&b[0])) ^= damage // a write after free
	}
	return kept, func() {
		for _, b := range kept {
			require.NoError(t, a.Free(b))
		}
	}
}

// callRecovered calls fn and returns what it panicked with, or nil.
func callRecovered(fn func()) (r any) {
	defer func() { r = recover() }()
	fn()
	return nil
}

func TestCorruptionHandlerPanicsAllocatorStaysUsable(t *testing.T) {
	for _, debug := range []bool{false, true} {
		t.Run(map[bool]string{false: "free-list", true: "debug"}[debug], func(t *testing.T) {
			if !debug {
				alloctest.RequireChecks(t) // the free-list check is what reports
			}
			var a *alloc.Allocator
			reports := 0
			a = newAlloc(t, alloc.Config{Debug: debug, ColdBlocks: -1, OnCorruption: func(c *alloc.Corruption) {
				reports++
				panic(c)
			}})
			var b []byte
			noHang(t, "finding the damage", func() {
				if debug {
					// a write after free, found by the next Malloc of the block
					x, err := a.Malloc(64)
					require.NoError(t, err)
					require.NoError(t, a.Free(x))
					x[40] = 7
					r := callRecovered(func() { b, _ = a.Malloc(64) })
					require.NotNil(t, r, "the handler's panic goes through Malloc")
					assert.Nil(t, b, "the block Malloc was handing out is not the caller's")
				} else {
					_, release := damageFreeList(t, a, 0x12345679)
					for reports == 0 {
						r := callRecovered(func() {
							x, err := a.Malloc(64)
							require.NoError(t, err)
							require.NoError(t, a.Free(x))
						})
						require.True(t, r != nil || reports == 0)
					}
					release()
				}
			})
			require.Equal(t, 1, reports)
			noHang(t, "Malloc and Stats after a handler panicked", func() {
				s := a.Stats()
				assert.Zero(t, s.LiveBlocks, "nothing leaked: the block being handed out was freed")
				for range 100 {
					x, err := a.Malloc(64)
					require.NoError(t, err)
					require.NoError(t, a.Free(x))
				}
				assert.Zero(t, a.Stats().LiveBlocks)
			})
		})
	}
}

func TestCorruptionHandlerCallsBack(t *testing.T) {
	for _, debug := range []bool{false, true} {
		t.Run(map[bool]string{false: "free-list", true: "debug"}[debug], func(t *testing.T) {
			if !debug {
				alloctest.RequireChecks(t) // the free-list check is what reports
			}
			var a *alloc.Allocator
			var inHandler []error
			a = newAlloc(t, alloc.Config{Debug: debug, ColdBlocks: -1, OnCorruption: func(c *alloc.Corruption) {
				s := a.Stats()
				_ = s
				x, err := a.Malloc(64)
				inHandler = append(inHandler, err, a.Free(x))
			}})
			noHang(t, "a handler calling Stats, Malloc and Free", func() {
				if debug {
					x, err := a.Malloc(64)
					require.NoError(t, err)
					past(x, 1)[64] = 1 // overflow, found by Free
					require.NoError(t, a.Free(x))
				} else {
					_, release := damageFreeList(t, a, 0x12345679)
					for len(inHandler) == 0 {
						x, err := a.Malloc(64)
						require.NoError(t, err)
						require.NoError(t, a.Free(x))
					}
					release()
				}
			})
			require.NotEmpty(t, inHandler)
			for _, err := range inHandler {
				assert.NoError(t, err)
			}
			assert.Zero(t, a.Stats().LiveBlocks)
		})
	}
}

// TestCorruptionHandlerCloses: a handler that closes the allocator (a
// service shutting down on memory damage). The call that found the damage
// completes; everything after gets ErrClosed.
func TestCorruptionHandlerCloses(t *testing.T) {
	for _, debug := range []bool{false, true} {
		t.Run(map[bool]string{false: "free-list", true: "debug"}[debug], func(t *testing.T) {
			if !debug {
				alloctest.RequireChecks(t) // the free-list check is what reports
			}
			var a *alloc.Allocator
			var closeErrs []error
			closes := 0
			a = newAlloc(t, alloc.Config{Debug: debug, ColdBlocks: -1, OnCorruption: func(*alloc.Corruption) {
				closes++
				closeErrs = append(closeErrs, a.Close())
			}})
			noHang(t, "a handler calling Close", func() {
				if debug {
					x, err := a.Malloc(64)
					require.NoError(t, err)
					past(x, 1)[64] = 1
					assert.NoError(t, a.Free(x), "the block was freed before the report")
				} else {
					damageFreeList(t, a, 0x12345679)
					for closes == 0 {
						x, err := a.Malloc(64)
						if err != nil {
							require.ErrorIs(t, err, alloc.ErrClosed)
							break
						}
						_ = a.Free(x) // nil, or ErrClosed if the handler ran in Malloc
					}
				}
			})
			// One refill can meet several damaged links: each is reported,
			// and a Close from the second report on is a second Close (nil).
			require.GreaterOrEqual(t, closes, 1)
			if !debug {
				require.LessOrEqual(t, closes, 40, "at most one report a damaged block")
			} else {
				require.Equal(t, 1, closes)
			}
			for _, err := range closeErrs {
				assert.NoError(t, err)
			}
			_, err := a.Malloc(64)
			assert.ErrorIs(t, err, alloc.ErrClosed)
		})
	}
}

// TestDebugReportsLeaveBehind: what each Debug report leaves behind, with
// a handler that calls back in on the reported block.
func TestDebugReportsLeaveBehind(t *testing.T) {
	t.Run("overflow found by Free: the block is freed", func(t *testing.T) {
		var a *alloc.Allocator
		var again error
		var x []byte
		a = newAlloc(t, alloc.Config{Debug: true, OnCorruption: func(c *alloc.Corruption) {
			assert.Equal(t, addr(x), c.Addr)
			again = a.Free(x) // the reported block
		}})
		x, err := a.Malloc(100)
		require.NoError(t, err)
		past(x, 1)[100] = 1
		noHang(t, "Free", func() { require.NoError(t, a.Free(x)) })
		assert.ErrorIs(t, again, alloc.ErrDoubleFree, "the handler's Free finds the block freed: no recursion")
		assert.Zero(t, a.Stats().LiveBlocks)
		assert.ErrorIs(t, a.Free(x), alloc.ErrDoubleFree)
	})
	t.Run("overflow found by Free, the handler panics: the block is freed", func(t *testing.T) {
		a := newAlloc(t, alloc.Config{Debug: true})
		x, err := a.Malloc(100)
		require.NoError(t, err)
		past(x, 1)[100] = 1
		r := callRecovered(func() { _ = a.Free(x) })
		require.IsType(t, &alloc.Corruption{}, r, "no OnCorruption: the default panics")
		assert.Zero(t, a.Stats().LiveBlocks)
		assert.ErrorIs(t, a.Free(x), alloc.ErrDoubleFree, "freeable exactly once")
	})
	t.Run("write after free found by Malloc: the block is handed out", func(t *testing.T) {
		var reports []*alloc.Corruption
		a := newAlloc(t, alloc.Config{Debug: true, OnCorruption: func(c *alloc.Corruption) { reports = append(reports, c) }})
		x, err := a.Malloc(64)
		require.NoError(t, err)
		require.NoError(t, a.Free(x))
		x[10] = 1
		y, err := a.Malloc(64)
		require.NoError(t, err)
		require.Len(t, reports, 1)
		assert.Equal(t, alloc.UseAfterFree, reports[0].Kind)
		assert.Equal(t, addr(x), addr(y), "the damaged block, in free memory, is the caller's now")
		assert.EqualValues(t, 1, a.Stats().LiveBlocks)
		require.NoError(t, a.Free(y))
		assert.Zero(t, a.Stats().LiveBlocks)
	})
}

// TestDebugOverflowCarriesItsOwnStacks: an overflow report names where the
// block was allocated, and no free stack of an earlier block that lived at
// the same address (issue 11, item 13).
func TestDebugOverflowCarriesItsOwnStacks(t *testing.T) {
	var reports []*alloc.Corruption
	a := newAlloc(t, alloc.Config{Debug: true, OnCorruption: func(c *alloc.Corruption) { reports = append(reports, c) }})
	x, err := a.Malloc(64)
	require.NoError(t, err)
	require.NoError(t, a.Free(x)) // an earlier block at the address, freed
	y, err := a.Malloc(64)
	require.NoError(t, err)
	require.Equal(t, addr(x), addr(y))
	past(y, 1)[64] = 1
	require.NoError(t, a.Free(y))
	require.Len(t, reports, 1)
	assert.Equal(t, alloc.Overflow, reports[0].Kind)
	assert.NotEmpty(t, reports[0].AllocStack)
	assert.Empty(t, reports[0].FreeStack, "the free stack of the block that lived there before is not this block's")
	assert.ErrorIs(t, a.Free(y), alloc.ErrDoubleFree)
}

// TestCorruptionFoundByClose: damage Close itself finds — a block's header
// overwritten while a P's front holds the freed block, met when Close
// drains the fronts — is delivered to OnCorruption by Close, once it
// holds no lock: a handler that calls back in gets ErrClosed, one that
// calls Close again gets nil, and no report waits in a queue no call will
// empty.
func TestCorruptionFoundByClose(t *testing.T) {
	alloctest.RequireChecks(t)
	var a *alloc.Allocator
	var reports []*alloc.Corruption
	var again []error
	a = newAlloc(t, alloc.Config{OnCorruption: func(c *alloc.Corruption) {
		reports = append(reports, c)
		_, err := a.Malloc(100)
		again = append(again, err, a.Close())
	}})
	// cold blocks of 100 bytes: the heap's chunks, of a size a front holds;
	// the first free makes this P's front, the next go to it (a goroutine
	// moved to another P frees through the lock: some of the eight do)
	var bs [][]byte
	for range 16 {
		b, err := a.Malloc(100)
		require.NoError(t, err)
		bs = append(bs, b)
	}
	for _, b := range bs[:8] {
		require.NoError(t, a.Free(b))
	}
	for _, b := range bs[1:8] { // the header, 8 bytes before the block: a write past the end of the block before
		*(*uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), -8)) = 0x4141414141414141
	}
	noHang(t, "Close delivering its reports", func() {
		require.NoError(t, a.Close())
	})
	require.NotEmpty(t, reports, "the damage Close found reached the handler")
	for _, c := range reports {
		assert.Equal(t, alloc.FreeList, c.Kind)
	}
	for i := 0; i < len(again); i += 2 {
		assert.ErrorIs(t, again[i], alloc.ErrClosed, "a call from the handler")
		assert.NoError(t, again[i+1], "Close again from the handler")
	}
}
