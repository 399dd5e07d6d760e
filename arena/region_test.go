package arena_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"unsafe"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/budget"
	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/sys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var page = sys.PageSize

type env struct {
	r  *arena.Region
	os *sys.OS
	b  *budget.Budget
}

type cfg struct {
	reserve, topPad, trim uintptr
	limit                 uint64
}

func newRegion(t *testing.T, c cfg) env {
	t.Helper()
	if c.reserve == 0 {
		c.reserve = 1 << 30
	}
	if c.trim == 0 {
		c.trim = 128 << 10
	}
	e := env{os: &sys.OS{}, b: budget.New(c.limit)}
	r, err := arena.New(arena.Config{Reserve: c.reserve, TopPad: c.topPad, TrimThreshold: c.trim, OS: e.os, Budget: e.b})
	require.NoError(t, err)
	e.r = r
	t.Cleanup(func() { _ = r.Close() })
	return e
}

// alloc takes n pages (page-aligned, a mid-size block) or fails the test.
func (e env) alloc(t *testing.T, n uintptr) *arena.Run {
	t.Helper()
	run, _, err := e.r.Alloc(n, 0, arena.KindMid, n*page)
	require.NoError(t, err)
	return run
}

func (e env) free(t *testing.T, run *arena.Run) {
	t.Helper()
	require.NoError(t, e.r.Free(run))
}

func (e env) bytes(run *arena.Run) []byte {
	return unsafe.Slice((*byte)(e.r.Ptr(run.Start())), run.Pages()*page)
}

func live(r *arena.Region, run *arena.Run) bool {
	_, _, l := r.Used(run)
	return l
}

// spans returns the region's spans, checking that they tile [base, break)
// in order with no gaps, and that no two free spans touch (they would have
// been coalesced).
func spans(t *testing.T, r *arena.Region) []arena.Span {
	t.Helper()
	c := r.Counters()
	var out []arena.Span
	r.Spans(func(s arena.Span) { out = append(out, s) })
	next := c.Base
	for i, s := range out {
		require.Equal(t, next, s.Start, "span %d starts after a gap or overlaps", i)
		require.NotZero(t, s.Len)
		require.Zero(t, s.Len%page)
		if i > 0 {
			assert.False(t, s.Kind == arena.KindFree && out[i-1].Kind == arena.KindFree,
				"free spans at %#x and %#x were not coalesced", out[i-1].Start, s.Start)
		}
		next = s.Start + s.Len
	}
	require.Equal(t, c.Break, next, "spans do not reach the break")
	return out
}

// checkConsistent holds the counters against the spans and the page map.
func checkConsistent(t *testing.T, r *arena.Region) {
	t.Helper()
	c := r.Counters()
	var free, dirty, runs, slab, block, top uintptr
	ss := spans(t, r)
	for i, s := range ss {
		switch s.Kind {
		case arena.KindFree:
			free += s.Len
			runs++
			if !s.Released {
				dirty += s.Len
			}
			if i == len(ss)-1 {
				top = s.Len
			}
			for a := s.Start; a < s.Start+s.Len; a += page {
				if got := r.Lookup(a); got != nil && got.Kind() != arena.KindFree {
					assert.False(t, live(r, got), "Lookup(%#x), a free page, returned a live run at %#x", a, got.Start())
				}
			}
		case arena.KindSlab, arena.KindMid:
			if s.Kind == arena.KindSlab {
				slab += s.Len
			} else {
				block += s.Len
			}
			run := r.Lookup(s.Start)
			require.NotNil(t, run)
			for a := s.Start; a < s.Start+s.Len; a += page {
				assert.Same(t, run, r.Lookup(a), "page %#x of the run at %#x", a, s.Start)
			}
			assert.Equal(t, s.Start, run.Start())
			assert.Equal(t, s.Len, run.Pages()*page)
			assert.True(t, live(r, run))
		}
	}
	assert.Equal(t, c.FreeBytes, free, "FreeBytes")
	assert.Equal(t, c.DirtyBytes, dirty, "DirtyBytes")
	assert.Equal(t, c.FreeRuns, runs, "FreeRuns")
	assert.Equal(t, c.SlabBytes, slab, "SlabBytes")
	assert.Equal(t, c.MidBytes, block, "MidBytes")
	assert.Equal(t, c.TopFreeBytes, top, "TopFreeBytes")
	assert.Equal(t, c.ArenaBytes, c.Break-c.Base)
}

func TestNewReservesOnly(t *testing.T) {
	e := newRegion(t, cfg{topPad: 128 << 10})
	c := e.r.Counters()
	assert.Equal(t, c.Base, c.Break)
	assert.Zero(t, c.ArenaBytes)
	assert.Equal(t, uint64(1), e.os.Calls(sys.OpMmap))
	assert.Zero(t, e.os.Calls(sys.OpMprotect))
	assert.Zero(t, e.b.Used())
	assert.True(t, e.r.Contains(c.Base))
	assert.True(t, e.r.Contains(c.Base+1<<30-1))
	assert.False(t, e.r.Contains(c.Base+1<<30))
	assert.False(t, e.r.Contains(c.Base-1))

	_, err := arena.New(arena.Config{Reserve: 0, OS: &sys.OS{}, Budget: budget.New(0)})
	assert.Error(t, err)
}

func TestGrowMovesTheBreakByWhatIsMissingPlusTopPad(t *testing.T) {
	const pad = 32 // pages
	e := newRegion(t, cfg{topPad: pad * page})
	base := e.r.Counters().Base

	// First request: the break moves by the request plus the pad.
	a := e.alloc(t, 1)
	c := e.r.Counters()
	assert.Equal(t, base, a.Start())
	assert.Equal(t, (1+pad)*page, c.ArenaBytes)
	assert.Equal(t, pad*page, c.TopFreeBytes)
	assert.Equal(t, uint64(1), e.os.Calls(sys.OpMprotect))
	assert.Equal(t, uint64(c.ArenaBytes), e.b.Used(), "the budget is charged for the break")

	// A request that fits the pad does not move the break.
	b := e.alloc(t, 10)
	assert.Equal(t, a.Start()+page, b.Start())
	assert.Equal(t, c.ArenaBytes, e.r.Counters().ArenaBytes)
	assert.Equal(t, uint64(1), e.os.Calls(sys.OpMprotect))

	// A request larger than the free top: the break moves by what is
	// missing (the top run is used first) plus the pad.
	left := uintptr(pad - 10)
	d := e.alloc(t, left+5)
	c = e.r.Counters()
	assert.Equal(t, b.Start()+10*page, d.Start(), "the free top run is extended, not skipped")
	assert.Equal(t, (1+10+left+5+pad)*page, c.ArenaBytes)
	assert.Equal(t, pad*page, c.TopFreeBytes)
	assert.Equal(t, uint64(2), e.os.Calls(sys.OpMprotect))
	assert.Equal(t, uint64(c.ArenaBytes), e.b.Used())

	// The memory is really there: write every byte of every run.
	for _, run := range []*arena.Run{a, b, d} {
		p := e.bytes(run)
		for i := range p {
			p[i] = 0xA5
		}
	}
	checkConsistent(t, e.r)
}

func TestFreshRunsAreZero(t *testing.T) {
	e := newRegion(t, cfg{topPad: 4 * page})
	run, zero, err := e.r.Alloc(4, 0, arena.KindMid, 4*page)
	require.NoError(t, err)
	assert.True(t, zero, "pages fresh from the kernel are zero")
	for i, b := range e.bytes(run) {
		require.Zero(t, b, "byte %d", i)
	}
	e.bytes(run)[0] = 1
	guard := e.alloc(t, 1)
	_ = guard
	e.free(t, run)
	again, zero, err := e.r.Alloc(4, 0, arena.KindMid, 4*page)
	require.NoError(t, err)
	assert.Equal(t, run.Start(), again.Start())
	assert.False(t, zero, "a reused run that was written is not known to be zero")
}

func TestFreeCoalescesWithBothNeighbours(t *testing.T) {
	e := newRegion(t, cfg{topPad: 0})
	a := e.alloc(t, 2)
	b := e.alloc(t, 3)
	c := e.alloc(t, 4)
	guard := e.alloc(t, 1) // keeps the freed runs off the top
	before := e.r.Counters()
	require.Zero(t, before.FreeRuns)

	e.free(t, a)
	e.free(t, c)
	mid := e.r.Counters()
	assert.Equal(t, uintptr(2), mid.FreeRuns)
	assert.Equal(t, 6*page, mid.FreeBytes)
	assert.Equal(t, 6*page, mid.DirtyBytes)
	checkConsistent(t, e.r)

	e.free(t, b) // joins a (left) and c (right)
	after := e.r.Counters()
	assert.Equal(t, uintptr(1), after.FreeRuns)
	assert.Equal(t, 9*page, after.FreeBytes)
	ss := spans(t, e.r)
	require.Len(t, ss, 2)
	assert.Equal(t, arena.Span{Start: a.Start(), Len: 9 * page, Kind: arena.KindFree}, ss[0])
	assert.Equal(t, guard.Start(), ss[1].Start)
	checkConsistent(t, e.r)

	// The merged run serves a request that none of the three could alone.
	big := e.alloc(t, 9)
	assert.Equal(t, a.Start(), big.Start())
	assert.Zero(t, e.r.Counters().FreeRuns)
	checkConsistent(t, e.r)
}

func TestBestFitAndReuse(t *testing.T) {
	tests := []struct {
		name  string
		holes []uintptr // free runs, in address order, each followed by a live page
		want  uintptr   // request
		pick  []int     // the holes it may come from
	}{
		{"exact bucket", []uintptr{3, 2, 5}, 2, []int{1}},
		{"smallest that fits", []uintptr{7, 4, 9}, 3, []int{1}},
		{"either of equals", []uintptr{4, 4}, 4, []int{0, 1}},
		{"big bucket best fit", []uintptr{300, 150, 200}, 140, []int{1}},
		{"big bucket exact", []uintptr{200, 130, 129}, 129, []int{2}},
		{"big bucket lowest on ties", []uintptr{160, 400, 160}, 150, []int{0}},
		{"small request, only big holes", []uintptr{200, 129}, 1, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newRegion(t, cfg{topPad: 0})
			var holes []*arena.Run
			for _, n := range tt.holes {
				holes = append(holes, e.alloc(t, n))
				e.alloc(t, 1)
			}
			for _, h := range holes {
				e.free(t, h)
			}
			brk := e.r.Counters().Break
			mprotects := e.os.Calls(sys.OpMprotect)
			got := e.alloc(t, tt.want)
			var want []uintptr
			for _, i := range tt.pick {
				want = append(want, holes[i].Start())
			}
			assert.Contains(t, want, got.Start(), "served from the wrong free run")
			assert.Equal(t, brk, e.r.Counters().Break, "the break moved although a free run fits")
			assert.Equal(t, mprotects, e.os.Calls(sys.OpMprotect))
			checkConsistent(t, e.r)
		})
	}
}

func TestTopTrimsItselfKeepingTopPad(t *testing.T) {
	const pad = 32
	e := newRegion(t, cfg{topPad: pad * page, trim: 128 << 10})
	low := e.alloc(t, 1)
	x := e.alloc(t, 64) // 256 KiB, ends below the pad
	c := e.r.Counters()
	require.Equal(t, (1+64+pad)*page, c.ArenaBytes)
	madv, mprot := e.os.Calls(sys.OpMadvise), e.os.Calls(sys.OpMprotect)

	e.free(t, x) // top free run: 64+32 pages >= 128 KiB
	c = e.r.Counters()
	assert.Equal(t, (1+pad)*page, c.ArenaBytes, "the break moves down, keeping TopPad")
	assert.Equal(t, low.Start()+(1+pad)*page, c.Break)
	assert.Equal(t, pad*page, c.TopFreeBytes)
	assert.Equal(t, uint64(c.ArenaBytes), e.b.Used(), "the budget gets the trimmed bytes back")
	assert.Equal(t, madv+1, e.os.Calls(sys.OpMadvise), "one madvise(DONTNEED)")
	assert.Equal(t, mprot+1, e.os.Calls(sys.OpMprotect), "one mprotect(PROT_NONE)")
	checkConsistent(t, e.r)

	// Below the threshold the top stays.
	y := e.alloc(t, 2)
	brk := e.r.Counters().Break
	e.free(t, y)
	assert.Equal(t, brk, e.r.Counters().Break)
	checkConsistent(t, e.r)
}

func TestSetTrimThreshold(t *testing.T) {
	e := newRegion(t, cfg{topPad: 0, trim: 1 << 20})
	e.alloc(t, 1)
	x := e.alloc(t, 64)
	e.free(t, x)
	assert.Equal(t, 65*page, e.r.Counters().ArenaBytes, "256 KiB free at the top is below 1 MiB")
	e.r.SetTrimThreshold(64 << 10)
	y := e.alloc(t, 64)
	e.free(t, y)
	assert.Equal(t, page, e.r.Counters().ArenaBytes, "the lowered threshold trims the top")
}

func TestTrimReleasesEveryDirtyFreeRun(t *testing.T) {
	e := newRegion(t, cfg{topPad: 16 * page, trim: 1 << 30}) // never trims by itself
	var runs []*arena.Run
	for i := range 12 {
		runs = append(runs, e.alloc(t, uintptr(1+i%5)))
	}
	for _, run := range runs {
		p := e.bytes(run)
		for i := range p {
			p[i] = 1
		}
	}
	// free every other run, and the two runs at the end: trapped runs and a top
	for i, run := range runs {
		if i%2 == 0 || i >= 10 {
			e.free(t, run)
		}
	}
	lastLive := runs[9]
	checkConsistent(t, e.r)
	var dirtyRuns uint64
	for _, s := range spans(t, e.r) {
		if s.Kind == arena.KindFree && !s.Released {
			dirtyRuns++
		}
	}
	require.Greater(t, dirtyRuns, uint64(3))
	before := e.r.Counters()
	require.NotZero(t, before.DirtyBytes)
	var vec []byte
	resBefore := e.r.Resident(&vec)
	madv := e.os.Calls(sys.OpMadvise)

	released := e.r.Trim()
	after := e.r.Counters()
	assert.Zero(t, after.DirtyBytes)
	assert.Equal(t, dirtyRuns, e.os.Calls(sys.OpMadvise)-madv, "one madvise per dirty free run")
	assert.Equal(t, lastLive.Start()+lastLive.Pages()*page, after.Break, "the break moves down to the last live run")
	assert.Zero(t, after.TopFreeBytes)
	assert.Equal(t, before.DirtyBytes, released, "Trim returns the dirty bytes it released")
	assert.Equal(t, uint64(after.ArenaBytes), e.b.Used())
	assert.Less(t, e.r.Resident(&vec), resBefore)
	for _, s := range spans(t, e.r) {
		assert.True(t, s.Kind != arena.KindFree || s.Released)
	}
	checkConsistent(t, e.r)

	// A second Trim has nothing to do and makes no call.
	madv = e.os.Calls(sys.OpMadvise)
	assert.Zero(t, e.r.Trim())
	assert.Equal(t, madv, e.os.Calls(sys.OpMadvise))

	// Released runs are handed out again as zero.
	run, zero, err := e.r.Alloc(1, 0, arena.KindMid, 1)
	require.NoError(t, err)
	assert.True(t, zero)
	assert.Equal(t, runs[0].Start(), run.Start())
	for _, b := range e.bytes(run) {
		require.Zero(t, b)
	}
}

func TestAlignedAlloc(t *testing.T) {
	aligns := []uintptr{0, 16, page, 2 * page, 16 * page, 64 << 10, 1 << 20, 2 << 20, 4 << 20}
	for _, align := range aligns {
		for _, n := range []uintptr{1, 3, 300} {
			e := newRegion(t, cfg{topPad: 8 * page})
			e.alloc(t, 1) // make the base unaligned for the next run
			run, _, err := e.r.Alloc(n, align, arena.KindMid, n*page)
			require.NoError(t, err, "align %d, %d pages", align, n)
			a := max(align, page)
			assert.Zero(t, run.Start()%a, "align %d: run at %#x", align, run.Start())
			assert.Equal(t, n, run.Pages())
			p := e.bytes(run)
			p[0], p[len(p)-1] = 1, 1
			checkConsistent(t, e.r)
			// the head and tail cut for alignment are free runs: nothing is lost
			e.free(t, run)
			c := e.r.Counters()
			assert.Equal(t, c.ArenaBytes-page, c.FreeBytes)
			checkConsistent(t, e.r)
		}
	}
}

func TestResize(t *testing.T) {
	t.Run("grow into the following free run", func(t *testing.T) {
		e := newRegion(t, cfg{topPad: 0})
		a := e.alloc(t, 2)
		b := e.alloc(t, 3)
		guard := e.alloc(t, 1)
		e.free(t, b)
		brk := e.r.Counters().Break

		ok := e.r.Resize(a, 4)
		require.True(t, ok)
		assert.Equal(t, uintptr(4), a.Pages())
		c := e.r.Counters()
		assert.Equal(t, page, c.FreeBytes, "one page of b is left free")
		assert.Equal(t, brk, c.Break)
		checkConsistent(t, e.r)

		ok = e.r.Resize(a, 5) // takes the rest
		require.True(t, ok)
		assert.Zero(t, e.r.Counters().FreeRuns)
		checkConsistent(t, e.r)

		ok = e.r.Resize(a, 6) // the next run is live
		assert.False(t, ok)
		assert.Equal(t, uintptr(5), a.Pages())
		assert.Equal(t, guard.Start(), a.Start()+5*page)
		checkConsistent(t, e.r)
	})
	t.Run("refused when the next run is live", func(t *testing.T) {
		e := newRegion(t, cfg{topPad: 0})
		a := e.alloc(t, 2)
		e.alloc(t, 1)
		before := e.r.Counters()
		ok := e.r.Resize(a, 3)
		assert.False(t, ok)
		assert.Equal(t, before, e.r.Counters())
	})
	t.Run("refused when the free run after it is too small and not at the top", func(t *testing.T) {
		e := newRegion(t, cfg{topPad: 0})
		a := e.alloc(t, 2)
		b := e.alloc(t, 1)
		e.alloc(t, 1)
		e.free(t, b)
		before := e.r.Counters()
		ok := e.r.Resize(a, 4)
		assert.False(t, ok)
		assert.Equal(t, before, e.r.Counters())
	})
	t.Run("grow at the top moves the break", func(t *testing.T) {
		e := newRegion(t, cfg{topPad: 0})
		e.alloc(t, 1)
		a := e.alloc(t, 2)
		brk := e.r.Counters().Break
		require.Equal(t, a.Start()+2*page, brk)
		mprot := e.os.Calls(sys.OpMprotect)
		ok := e.r.Resize(a, 10)
		require.True(t, ok)
		assert.Equal(t, -1, slices.IndexFunc(e.bytes(a)[2*page:], func(b byte) bool { return b != 0 }),
			"the new tail is fresh from the kernel")
		assert.Equal(t, brk+8*page, e.r.Counters().Break)
		assert.Equal(t, mprot+1, e.os.Calls(sys.OpMprotect))
		p := e.bytes(a)
		p[len(p)-1] = 1
		checkConsistent(t, e.r)
	})
	t.Run("grow through a free top run and past it", func(t *testing.T) {
		e := newRegion(t, cfg{topPad: 4 * page})
		a := e.alloc(t, 2) // 4 free pages above it, up to the break
		ok := e.r.Resize(a, 20)
		require.True(t, ok)
		c := e.r.Counters()
		assert.Equal(t, a.Start()+20*page+4*page, c.Break, "missing pages plus the pad")
		checkConsistent(t, e.r)
	})
	t.Run("shrink frees the tail", func(t *testing.T) {
		e := newRegion(t, cfg{topPad: 0})
		a := e.alloc(t, 8)
		e.alloc(t, 1)
		ok := e.r.Resize(a, 3)
		require.True(t, ok)
		assert.Equal(t, uintptr(3), a.Pages())
		c := e.r.Counters()
		assert.Equal(t, 5*page, c.FreeBytes)
		assert.Equal(t, (3+1)*page, c.MidBytes, "a and the guard")
		for addr := a.Start() + 3*page; addr < a.Start()+8*page; addr += page {
			got := e.r.Lookup(addr)
			assert.False(t, got != nil && got.Kind() != arena.KindFree && live(e.r, got),
				"Lookup(%#x) in the freed tail returned a live run", addr)
		}
		checkConsistent(t, e.r)
		// the tail serves the next request
		b := e.alloc(t, 5)
		assert.Equal(t, a.Start()+3*page, b.Start())
		checkConsistent(t, e.r)
	})
	t.Run("same size, freed run, zero pages", func(t *testing.T) {
		e := newRegion(t, cfg{topPad: 0})
		a := e.alloc(t, 2)
		e.alloc(t, 1)
		ok := e.r.Resize(a, 2)
		assert.True(t, ok)
		ok = e.r.Resize(a, 0)
		assert.False(t, ok)
		e.free(t, a)
		ok = e.r.Resize(a, 1)
		assert.False(t, ok, "a freed run cannot be resized")
	})
}

func TestLookup(t *testing.T) {
	e := newRegion(t, cfg{topPad: 8 * page})
	var runs []*arena.Run
	for i := range 20 {
		run, _, err := e.r.Alloc(uintptr(1+i%7), 0, arena.Kind(1+i%2), 0)
		require.NoError(t, err)
		runs = append(runs, run)
	}
	for i, run := range runs {
		for addr := run.Start(); addr < run.Start()+run.Pages()*page; addr += 512 {
			got := e.r.Lookup(addr)
			require.Same(t, run, got, "address %#x", addr)
			assert.Equal(t, arena.Kind(1+i%2), got.Kind())
		}
	}
	for i, run := range runs {
		if i%3 != 1 {
			e.free(t, run)
		}
	}
	checkConsistent(t, e.r)
	for i, run := range runs {
		if i%3 != 1 {
			continue
		}
		for addr := run.Start(); addr < run.Start()+run.Pages()*page; addr += page {
			assert.Same(t, run, e.r.Lookup(addr))
		}
	}
	e.r.Trim()
	checkConsistent(t, e.r)
}

func TestDoubleFreeChangesNothing(t *testing.T) {
	e := newRegion(t, cfg{topPad: 0})
	a := e.alloc(t, 3)
	e.alloc(t, 1)
	e.free(t, a)
	c := e.r.Counters()
	calls := [3]uint64{e.os.Calls(sys.OpMadvise), e.os.Calls(sys.OpMprotect), e.b.Used()}
	s1 := spans(t, e.r)

	err := e.r.Free(a)
	assert.ErrorIs(t, err, arena.ErrNotLive)
	assert.Equal(t, c, e.r.Counters())
	assert.Equal(t, calls, [3]uint64{e.os.Calls(sys.OpMadvise), e.os.Calls(sys.OpMprotect), e.b.Used()})
	assert.Equal(t, s1, spans(t, e.r))

	// Even after the pages were handed out again, the old run stays dead.
	b := e.alloc(t, 3)
	require.Equal(t, a.Start(), b.Start())
	assert.ErrorIs(t, e.r.Free(a), arena.ErrNotLive)
	assert.True(t, live(e.r, b))
	checkConsistent(t, e.r)
}

func TestBudgetAndReservation(t *testing.T) {
	t.Run("budget", func(t *testing.T) {
		const pad = 32
		e := newRegion(t, cfg{topPad: pad * page, limit: 256 << 10})
		e.alloc(t, 16) // takes 16+32 pages = 192 KiB
		require.Equal(t, uint64(192<<10), e.b.Used())
		e.alloc(t, 32) // the pad
		e.alloc(t, 16) // 64 KiB left: the pad is dropped, the request still fits
		require.Equal(t, uint64(256<<10), e.b.Used())
		before := e.r.Counters()
		mprot := e.os.Calls(sys.OpMprotect)

		_, _, err := e.r.Alloc(1, 0, arena.KindMid, 1)
		require.Error(t, err)
		assert.ErrorIs(t, err, errs.ErrNoMemory)
		assert.Equal(t, before, e.r.Counters())
		assert.Equal(t, mprot, e.os.Calls(sys.OpMprotect), "no call is made past the limit")
		assert.Equal(t, uint64(256<<10), e.b.Used())
		checkConsistent(t, e.r)
	})
	t.Run("budget shared with someone else", func(t *testing.T) {
		e := newRegion(t, cfg{topPad: 0, limit: 64 << 10})
		require.True(t, e.b.Take(60<<10)) // another layer's mapping
		_, _, err := e.r.Alloc(2, 0, arena.KindMid, 1)
		assert.ErrorIs(t, err, errs.ErrNoMemory)
		e.b.Give(60 << 10)
		e.alloc(t, 2)
	})
	t.Run("reservation", func(t *testing.T) {
		e := newRegion(t, cfg{reserve: 1 << 20, topPad: 16 * page})
		n := (1 << 20) / page
		_, _, err := e.r.Alloc(n+1, 0, arena.KindMid, 1)
		assert.ErrorIs(t, err, errs.ErrNoMemory, "more pages than the reservation")

		e.alloc(t, n-40) // the pad is cut to what is left
		before := e.r.Counters()
		_, _, err = e.r.Alloc(50, 0, arena.KindMid, 1)
		assert.ErrorIs(t, err, errs.ErrNoMemory, "growth past the reservation")
		assert.Equal(t, before, e.r.Counters())
		e.alloc(t, 40) // what is left still fits exactly
		assert.Equal(t, uintptr(1<<20), e.r.Counters().ArenaBytes)
		checkConsistent(t, e.r)
	})
	t.Run("the kernel refuses", func(t *testing.T) {
		e := newRegion(t, cfg{topPad: 0})
		e.alloc(t, 1)
		e.os.Fail = func(op sys.Op, _ uint64) error {
			if op == sys.OpMprotect {
				return errors.New("injected ENOMEM")
			}
			return nil
		}
		before := e.r.Counters()
		used := e.b.Used()
		_, _, err := e.r.Alloc(5, 0, arena.KindMid, 1)
		assert.ErrorIs(t, err, errs.ErrNoMemory)
		assert.Equal(t, before, e.r.Counters())
		assert.Equal(t, used, e.b.Used(), "the budget is given back")
		e.os.Fail = nil
		e.alloc(t, 5)
		checkConsistent(t, e.r)
	})
}

func TestResident(t *testing.T) {
	e := newRegion(t, cfg{topPad: 16 * page, trim: 1 << 30})
	var vec []byte
	assert.Zero(t, e.r.Resident(&vec), "nothing committed")
	a := e.alloc(t, 32)
	guard := e.alloc(t, 1)
	assert.Zero(t, e.r.Resident(&vec), "committed but never touched")
	p := e.bytes(a)
	for i := 0; i < 20; i++ {
		p[uintptr(i)*page] = 1
	}
	assert.Equal(t, 20*page, e.r.Resident(&vec))
	e.bytes(guard)[0] = 1
	assert.Equal(t, 21*page, e.r.Resident(&vec))

	e.free(t, a)
	assert.Equal(t, 21*page, e.r.Resident(&vec), "a free run below a live run stays resident")
	e.r.Trim()
	assert.Equal(t, page, e.r.Resident(&vec), "Trim releases it")
}

func TestClose(t *testing.T) {
	e := newRegion(t, cfg{topPad: 0})
	a := e.alloc(t, 2)
	b := e.alloc(t, 2)
	e.free(t, b)
	munmap := e.os.Calls(sys.OpMunmap)
	require.NoError(t, e.r.Close())
	assert.Equal(t, munmap+1, e.os.Calls(sys.OpMunmap))
	assert.Zero(t, e.b.Used())

	_, _, err := e.r.Alloc(1, 0, arena.KindMid, 1)
	assert.Error(t, err)
	assert.Error(t, e.r.Free(a))
	ok := e.r.Resize(a, 3)
	assert.False(t, ok)
	assert.Zero(t, e.r.Trim())
	var vec []byte
	assert.Zero(t, e.r.Resident(&vec))
	assert.Zero(t, e.r.Counters().ArenaBytes)
	n := 0
	e.r.Spans(func(arena.Span) { n++ })
	assert.Zero(t, n)
	assert.Nil(t, e.r.Lookup(a.Start()))
	assert.NoError(t, e.r.Close(), "closing twice is not an error")
	assert.Equal(t, munmap+1, e.os.Calls(sys.OpMunmap))
}

// TestRandomOperations holds the counters, spans and page map consistent
// through a random sequence of Alloc, Free, Resize and Trim.
func TestRandomOperations(t *testing.T) {
	for seed := range uint64(4) {
		e := newRegion(t, cfg{topPad: uintptr(seed%3) * 8 * page, trim: 64 << 10})
		rng := rand.New(rand.NewPCG(seed, 7))
		var lives []*arena.Run
		for i := range 600 {
			switch op := rng.IntN(10); {
			case op < 5 || len(lives) == 0:
				n := uintptr(1 + rng.IntN(12))
				if rng.IntN(20) == 0 {
					n = uintptr(100 + rng.IntN(200))
				}
				align := uintptr(0)
				if rng.IntN(8) == 0 {
					align = page << rng.IntN(6)
				}
				run, _, err := e.r.Alloc(n, align, arena.KindMid, n)
				require.NoError(t, err)
				lives = append(lives, run)
			case op < 8:
				k := rng.IntN(len(lives))
				e.free(t, lives[k])
				lives = append(lives[:k], lives[k+1:]...)
			case op < 9:
				k := rng.IntN(len(lives))
				_ = e.r.Resize(lives[k], uintptr(1+rng.IntN(16)))
			default:
				e.r.Trim()
			}
			if i%25 == 0 {
				checkConsistent(t, e.r)
			}
		}
		checkConsistent(t, e.r)
	}
}

// TestConcurrentLookup runs lock-free Lookups of live runs while other
// goroutines allocate and free (for -race).
func TestConcurrentLookup(t *testing.T) {
	e := newRegion(t, cfg{topPad: 16 * page})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			var mine []*arena.Run
			for range 500 {
				if len(mine) < 8 || rng.IntN(2) == 0 {
					run, _, err := e.r.Alloc(uintptr(1+rng.IntN(6)), 0, arena.KindMid, 1)
					if !assert.NoError(t, err) {
						return
					}
					mine = append(mine, run)
				} else {
					k := rng.IntN(len(mine))
					assert.NoError(t, e.r.Free(mine[k]))
					mine = append(mine[:k], mine[k+1:]...)
				}
				for _, run := range mine {
					if got := e.r.Lookup(run.Start() + run.Pages()*page - 1); got != run {
						t.Errorf("Lookup of a live run at %#x returned %p, want %p", run.Start(), got, run)
						return
					}
				}
			}
			for _, run := range mine {
				assert.NoError(t, e.r.Free(run))
			}
		}()
	}
	wg.Wait()
	checkConsistent(t, e.r)
	assert.Zero(t, e.r.Counters().MidBytes)
}
