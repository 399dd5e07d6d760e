package fit

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/budget"
	"github.com/brkmap/alloc/internal/sys"
)

// TestSideRunGivenBack: a run's bitmap is the window of the region's side
// at its place, and the run leaves it clear when it goes back to the
// region, for the next run there.
func TestSideRunGivenBack(t *testing.T) {
	h, r := newHeap(t)
	high := spareAndHeld(t, h, r, 1500)
	hr := runOf(r.Lookup(high[0].p))
	require.True(t, hr.sided)
	w, err := r.Side().Words(hr.start, 1)
	require.NoError(t, err)
	require.Equal(t, unsafe.Pointer(&w[0]), unsafe.Pointer(&hr.live[0]), "the side's words at the run's place")
	var set int
	for _, x := range hr.live {
		if x != 0 {
			set++
		}
	}
	require.NotZero(t, set, "the blocks in use are in the side")

	for _, b := range high {
		freeBlock(t, h, b)
	}
	h.mu.Lock()
	h.consolidate() // the held chunks merge: the run empties and goes back (the spare is lower)
	h.mu.Unlock()
	require.True(t, hr.gone)
	for i, x := range hr.live[:len(hr.live)-1] {
		require.Zero(t, x, "word %d of a run given back", i)
	}

	// a run there again, blocks in use in it, all sound
	more := allocFilled(t, h, 40, 1500)
	walk(t, h)
	for _, b := range more {
		require.True(t, intact(h, b))
		freeBlock(t, h, b)
	}
	walk(t, h)
}

// TestSideDropBitsClears: a run given back with bits still set (blocks
// lost to damage are left in use) leaves its window clear, all but the
// word to spare, which is the next run's: the whole pages inside given
// back to the kernel (read as zero), the words around them cleared; and
// all cleared by hand when the madvise is refused.
func TestSideDropBitsClears(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		os := &sys.OS{}
		if refuse {
			os.Fail = func(op sys.Op, _ uint64) error {
				if op == sys.OpMadvise {
					return errors.New("injected")
				}
				return nil
			}
		}
		r := sidedRegion(t, os)
		h := New(r, Options{})
		small, err := r.Side().Words(r.Base()+64<<20, 5) // (no run there)
		require.NoError(t, err)
		for i := range small {
			small[i] = 1 << i
		}
		big, err := r.Side().Words(r.Base()+128<<20+3<<10, 1500) // over 2 pages of the side, not on a page
		require.NoError(t, err)
		for _, i := range []int{0, 1, 100, 600, 1100, 1498, 1499} {
			big[i] = 0xff
		}
		madvise := os.Calls(sys.OpMadvise)
		h.mu.Lock()
		for _, w := range [][]uint64{small, big} {
			x := &run{start: r.Base(), live: w, sided: true}
			h.metaBytes += uintptr(cap(w)) * 8
			h.dropBits(x)
		}
		h.mu.Unlock()
		require.Equal(t, []uint64{0, 0, 0, 0, 1 << 4}, small)
		for i, x := range big[:1499] {
			require.Zero(t, x, "word %d", i)
		}
		require.Equal(t, uint64(0xff), big[1499], "the word to spare")
		require.Equal(t, madvise+1, os.Calls(sys.OpMadvise), "one madvise, for the big window's whole pages")
		h.Close()
		require.NoError(t, r.Close())
	}
}

// TestSideRefused: when the side's commit is refused, the run's bitmap
// is a Go slice, and the heap works as well; the next run tries the side
// again.
func TestSideRefused(t *testing.T) {
	os := &sys.OS{}
	r := sidedRegion(t, os)
	defer r.Close()
	h := New(r, Options{})
	defer h.Close()

	// the region's break grows first (its own mprotect), then the side's
	// commit is asked for: refused
	n := os.Calls(sys.OpMprotect)
	os.Fail = func(op sys.Op, k uint64) error {
		if op == sys.OpMprotect && k == n+2 {
			return errors.New("injected")
		}
		return nil
	}
	first := allocFilled(t, h, 100, 3000)
	fr := runOf(r.Lookup(first[0].p))
	require.False(t, fr.sided, "the commit was refused: a Go slice")
	require.Zero(t, r.Side().Committed())

	mid, _, err := r.Alloc(1, 0, arena.KindMid, 4096) // above the first run: the next cannot be it grown
	require.NoError(t, err)
	defer r.Free(mid)
	var second []block
	for len(second) == 0 {
		b := allocFilled(t, h, 1, 3000)[0]
		if runOf(r.Lookup(b.p)) == fr {
			first = append(first, b)
		} else {
			second = append(second, b)
		}
	}
	sr := runOf(r.Lookup(second[0].p))
	require.True(t, sr.sided, "the next run: the side")
	walk(t, h)
	for _, b := range append(first, second...) {
		require.True(t, intact(h, b))
		freeBlock(t, h, b)
	}
	walk(t, h)
}

// TestSideFreeLeavesWindowReleased: the Free that empties a run which
// goes back to the region (the spare is lower) writes nothing into the
// run's window after dropBits gave its pages back: the page of the side
// that held the freed block's bit stays given back (not resident), as
// the run's other pages are, not faulted in again by a write of a bit
// already clear.
func TestSideFreeLeavesWindowReleased(t *testing.T) {
	h, r := newHeap(t)
	const n = 3000 // above the fast bins' sizes: the last free gives the run back at once
	high := spareAndHeld(t, h, r, n)
	hr := runOf(r.Lookup(high[0].p))
	require.True(t, hr.sided)
	for hr.end-hr.start < 1<<20 || high[len(high)-1].p < hr.start+900<<10 {
		b := allocFilled(t, h, 1, n)[0]
		require.Equal(t, hr, runOf(r.Lookup(b.p)), "the top run's blocks")
		high = append(high, b)
	}
	last := high[len(high)-1]
	for _, b := range high[:len(high)-1] {
		freeBlock(t, h, b)
	}
	require.False(t, hr.gone)
	w, _ := hr.bit(last.p)
	at := uintptr(unsafe.Pointer(&hr.live[w]))
	page := at &^ (sys.PageSize - 1)
	require.Greater(t, page, uintptr(unsafe.Pointer(&hr.live[0])), "the bit's page lies wholly inside the window")
	require.Less(t, page+sys.PageSize, uintptr(unsafe.Pointer(&hr.live[len(hr.live)-1])))

	freeBlock(t, h, last)
	require.True(t, hr.gone, "the run went back to the region")
	var vec []byte
	v, err := (&sys.OS{}).ResidentPages(unsafe.Add(unsafe.Pointer(&hr.live[w]), -int(at-page)), sys.PageSize, &vec)
	require.NoError(t, err)
	require.Zero(t, v[0]&1, "the side's page holding the freed block's bit, given back by dropBits, is resident again")
	walk(t, h)
}

// TestSideRefusedGrowingInPlace: a run whose bitmap is a window of the
// side and grows in place where the side's commit is refused goes on
// with a Go slice: its blocks intact, its old window left clear (walk),
// and the heap's MetaBytes back where it started once every run went
// back, with and without the refusal (no count lost or left behind as
// the bitmap moves between the side and the Go heap).
func TestSideRefusedGrowingInPlace(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		var refusing bool
		os := &sys.OS{Fail: func(op sys.Op, _ uint64) error {
			if op == sys.OpMprotect && refusing {
				return errors.New("injected")
			}
			return nil
		}}
		r := sidedRegion(t, os)
		// the heap's run ends a page short of 128 MiB into the region:
		// its window ends inside the side's first MiB, and grown, past it
		below, _, err := r.Alloc((126<<20)/sys.PageSize-1, 0, arena.KindMid, 4096)
		require.NoError(t, err)
		h := New(r, Options{})
		base := h.Stats().MetaBytes
		live := allocFilled(t, h, 1, 3000)
		fr := runOf(r.Lookup(live[0].p))
		require.True(t, fr.sided)
		require.Equal(t, r.Base()+126<<20-sys.PageSize, fr.start)
		require.Equal(t, uintptr(1<<20), r.Side().Committed())
		// room above it, mapped already: the run grows into it with no
		// mprotect of the region's, the side's commit the only one
		above, _, err := r.Alloc(512, 0, arena.KindMid, 4096)
		require.NoError(t, err)
		lid, _, err := r.Alloc(1, 0, arena.KindMid, 4096) // (the break stays above the room)
		require.NoError(t, err)
		require.NoError(t, r.Free(above))
		end := fr.end
		refusing = refuse
		for fr.end == end {
			b := allocFilled(t, h, 1, 3000)[0]
			require.Equal(t, fr, runOf(r.Lookup(b.p)), "grown in place")
			live = append(live, b)
		}
		refusing = false
		require.Equal(t, !refuse, fr.sided, "a window of the side unless its commit was refused")
		if refuse {
			require.Equal(t, uintptr(1<<20), r.Side().Committed())
		} else {
			require.Greater(t, r.Side().Committed(), uintptr(1<<20))
		}
		require.Equal(t, base+uintptr(cap(fr.live))*8+unsafe.Sizeof(run{})+uintptr(cap(h.big))*unsafe.Sizeof(bigChunk{}), h.Stats().MetaBytes)
		walk(t, h)
		for _, b := range live {
			freeIntact(t, h, b)
		}
		walk(t, h)
		h.Trim() // the run, the spare, goes back
		require.True(t, fr.gone)
		require.Equal(t, base, h.Stats().MetaBytes, "every run went back")
		// a run there again: the side's (its commit granted now)
		again := allocFilled(t, h, 1, 3000)
		ar := runOf(r.Lookup(again[0].p))
		require.True(t, ar.sided)
		walk(t, h)
		freeIntact(t, h, again[0])
		h.Trim()
		require.Equal(t, base, h.Stats().MetaBytes, "every run went back")
		walk(t, h)
		h.Close()
		require.NoError(t, r.Free(below))
		require.NoError(t, r.Free(lid))
		require.NoError(t, r.Close())
	}
}

// TestSideRunsComeAndGoConcurrently: runs made and given back over and
// over at the same addresses, concurrently: in each round, workers
// allocate batches (pages of the region's taken between them, so that
// the heap's top run stops growing in place and new runs are made) and
// free them whole, through the fronts, the fast bins and the lock, with
// Trim and Idle, while the purge's timer runs; at each round's end every
// run goes back, and the next round's are made in their places. walk
// checks, as it goes, that no bit of the side is set outside the runs'
// windows (a write into a run given back would be a bit of the next run
// there), and every block stays intact.
func TestSideRunsComeAndGoConcurrently(t *testing.T) {
	h, r := newHeapWith(t, Options{Purge: true, PurgeDelay: time.Millisecond})
	base := h.Stats().MetaBytes
	const workers = 4
	rounds, batch := 6, uintptr(3<<20)
	if testing.Short() || raceEnabled {
		rounds, batch = 3, 3<<19 // (each walk under the race detector takes milliseconds)
	}
	// each call of a worker's holds gate as a reader, walk as the writer:
	// walk's record of the fronts holds only with no front call in flight
	var gate sync.RWMutex
	var stop atomic.Bool
	call := func(fn func() bool) bool {
		gate.RLock()
		defer gate.RUnlock()
		return !stop.Load() && fn()
	}
	check := func() {
		gate.Lock()
		defer gate.Unlock()
		defer func() { stop.Store(stop.Load() || t.Failed()) }() // (walk's FailNow: the workers stop)
		walk(t, h)                                               // (the side clear outside the runs: sideClear)
	}
	starts := map[uintptr]int{} // the places of the runs blocks came from, and how many runs there
	walks := 0
	for round := range rounds {
		var mu sync.Mutex
		runs := map[*run]bool{}
		var work sync.WaitGroup
		for w := range workers {
			work.Add(1)
			go func() {
				defer work.Done()
				rng := rand.New(rand.NewPCG(uint64(w), uint64(round)))
				var mine []block
				var pins []*arena.Run
				for sum, pinned := uintptr(0), uintptr(0); sum < batch; {
					if sum >= pinned+256<<10 { // a page of the region's, often right above the heap's top run
						pinned = sum
						m, _, err := r.Alloc(1, 0, arena.KindMid, 4096)
						if !assert.NoError(t, err) {
							return
						}
						pins = append(pins, m)
					}
					var b block
					if !call(func() (ok bool) { b, ok = frontAlloc(t, h, uintptr(1100+rng.IntN(2000)), byte(w*64+round)); return ok }) {
						return
					}
					mine = append(mine, b)
					sum += b.n
					mu.Lock()
					runs[runOf(r.Lookup(b.p))] = true
					mu.Unlock()
				}
				for _, m := range pins {
					assert.NoError(t, r.Free(m))
				}
				rng.Shuffle(len(mine), func(a, b int) { mine[a], mine[b] = mine[b], mine[a] })
				for i, b := range mine {
					if !call(func() bool { return frontFree(t, h, b, rng.IntN(2) == 0) }) {
						return
					}
					if i%500 == 0 {
						call(func() bool { h.Idle(); return true })
					}
				}
				call(func() bool { h.Trim(); return true })
			}()
		}
		finished := make(chan struct{})
		go func() { work.Wait(); close(finished) }()
		for running := true; running; walks++ {
			select {
			case <-finished:
				running = false
			case <-time.After(5 * time.Millisecond):
			}
			check()
		}
		require.False(t, t.Failed())
		for x := range runs {
			starts[x.start]++
		}
		h.Trim()
		require.Zero(t, h.Stats().Runs, "every run went back")
		walk(t, h)
	}
	again := 0 // runs made where one had gone back: its window reused
	for _, n := range starts {
		again += n - 1
	}
	t.Logf("%d walks, %d places of runs, %d runs made where one had gone back", walks, len(starts), again)
	require.Greater(t, len(starts), 1, "runs stopped growing in place")
	require.NotZero(t, again, "no run was made where one had gone back")
	st := h.Stats()
	require.Zero(t, st.LiveChunks)
	require.Equal(t, base, st.MetaBytes, "every run's bitmap gone with it")
}

// sidedRegion makes a region of 1 GiB with a side for the heap's bitmaps,
// its system calls through os (a Fail hook injects refusals).
func sidedRegion(t *testing.T, os *sys.OS) *arena.Region {
	t.Helper()
	r, err := arena.New(arena.Config{Reserve: 1 << 30, TrimThreshold: 128 << 10, OS: os, Budget: budget.New(0), SideShift: SideShift})
	require.NoError(t, err)
	return r
}
