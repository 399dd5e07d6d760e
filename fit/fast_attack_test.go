package fit

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/errs"
)

// Attacks on the fast bins: bad frees that name the inside of a held
// block, and writes after free over a held block's link.

// wordAt returns the 8 bytes at off in the block at p, as a uint64.
func wordAt(h *Heap, p, off uintptr) *uint64 { return (*uint64)(h.region.Ptr(p + off)) }

// reportsTo returns a heap whose OnCorruption appends to *got.
func reportsTo(t *testing.T, got *[]uintptr) *Heap {
	h, _ := newHeapWith(t, Options{OnCorruption: func(addr, size uintptr, detail string) {
		*got = append(*got, addr)
		t.Logf("reported %#x: %s", addr, detail)
	}})
	return h
}

// TestFastHeldInsideFree: a stale pointer 16 or 32 bytes into a block held
// in a fast bin (its own bit clear, the bit after it its held mark) is a
// bad free: refused, nothing reported (nothing is damaged), nothing
// changed. The held mark is the bit a chunk starting 16 bytes into the
// block would have: the bytes the user left in the block (written while
// it was live, not after its free) are then read as that chunk's header.
func TestFastHeldInsideFree(t *testing.T) {
	for _, forged := range []bool{true, false} {
		var got []uintptr
		h := reportsTo(t, &got)
		bs := allocFilled(t, h, 3, 1500)
		a := bs[1]
		if forged {
			// the block's own data, while live: a word that reads as the
			// header of a chunk in use, 16 bytes into its chunk, that ends
			// where the block's chunk does
			*wordAt(h, a.p, 8) = uint64(chunkSize(1500)-16) | flagInUse | flagPrevInUse
		}
		ar := h.region.Lookup(a.p)
		_, err := h.Free(ar, a.p)
		require.NoError(t, err)
		walk(t, h)
		for _, bad := range []uintptr{a.p + 16, a.p + 32} {
			_, err = h.Free(ar, bad)
			require.ErrorIs(t, err, errs.ErrInvalidFree, "forged %v: Free(%#x), 16 or 32 bytes into a held block", forged, bad)
			_, _, err = h.Usable(ar, bad)
			require.ErrorIs(t, err, errs.ErrInvalidFree)
			ok, err := h.Resize(ar, bad, 100, 0)
			require.ErrorIs(t, err, errs.ErrInvalidFree)
			require.False(t, ok)
			walk(t, h)
		}
		require.Empty(t, got, "forged %v: a bad free damages nothing: nothing to report", forged)
		// the held chunk comes back whole, and the others are intact
		p, err := h.Alloc(1500)
		require.NoError(t, err)
		require.Equal(t, a.p, uintptr(p))
		require.True(t, intact(h, bs[0]))
		require.True(t, intact(h, bs[2]))
		walk(t, h)
	}
}

// TestFastBeforeLiveFree: a pointer 16 bytes before a block in use (its
// chunk's header) is not the start of a block, not a freed one: the bit a
// chunk 16 bytes before it would be held by is the block's own.
func TestFastBeforeLiveFree(t *testing.T) {
	h, _ := newHeap(t)
	bs := allocFilled(t, h, 3, 1500)
	ar := h.region.Lookup(bs[1].p)
	_, err := h.Free(ar, bs[1].p-16)
	require.ErrorIs(t, err, errs.ErrInvalidFree)
	require.NotErrorIs(t, err, errs.ErrDoubleFree, "no block was freed there")
	walk(t, h)
}

// TestFastWriteAfterFree: a write after free over the whole of blocks
// held in a fast bin — zeros, ones, or what reads as links and headers
// naming a block in use (a forged chunk 16 bytes before it, whose own bit
// is the held mark such a chunk would have) — changes nothing the heap
// reads: the bin is an array in the heap, not a list through the blocks.
// Nothing is reported, the held chunks come back as they were, no block is
// handed out over a block in use, and the counts stay true.
func TestFastWriteAfterFree(t *testing.T) {
	const n = 1500
	s := chunkSize(n)
	for name, word := range map[string]func(z block) uint64{
		"zeros":  func(block) uint64 { return 0 },
		"ones":   func(block) uint64 { return ^uint64(0) },
		"forged": func(z block) uint64 { return uint64(z.p - 16 - 16) },
		"header": func(block) uint64 { return uint64(s) | flagInUse | flagPrevInUse },
	} {
		t.Run(name, func(t *testing.T) {
			var got []uintptr
			h := reportsTo(t, &got)
			bs := allocFilled(t, h, 8, n) // x0, z0, x1, z1, x2, z2, x3, guard
			var held, live []block
			for i, b := range bs[:7] {
				if i%2 == 0 {
					held = append(held, b)
				} else {
					live = append(live, b)
				}
			}
			for _, x := range held {
				_, err := h.Free(h.region.Lookup(x.p), x.p)
				require.NoError(t, err)
			}
			walk(t, h)
			for i, x := range held { // every word of each freed block
				for off := uintptr(0); off+8 <= n; off += 8 {
					*wordAt(h, x.p, off) = word(live[i%len(live)])
				}
			}
			back := map[uintptr]bool{}
			for range held {
				p, err := h.Alloc(n)
				require.NoError(t, err)
				q := block{p: uintptr(p), n: n, tag: 0xee}
				for _, z := range append(live, bs[7]) {
					require.False(t, q.p < z.p+n && z.p < q.p+n, "%#x handed out over the block in use at %#x", q.p, z.p)
				}
				back[q.p] = true
				fill(h, q)
			}
			for _, x := range held {
				require.True(t, back[x.p], "held block %#x comes back", x.p)
			}
			for _, z := range append(live, bs[7]) {
				require.True(t, intact(h, z))
			}
			require.Empty(t, got, "nothing the heap reads was damaged")
			walk(t, h)
		})
	}
}

// TestFastHeldGoesBack: blocks freed into the fast bins only (no free
// merges 64 KiB, nothing reaches the top) go back by themselves: the
// purge's pass empties the bins once a pass has seen no operation, the
// chunks merge, and the next passes release them; then the timer stops.
// Idle does the same for a heap without the purge's timer.
func TestFastHeldGoesBack(t *testing.T) {
	for _, timer := range []bool{true, false} {
		opts := Options{}
		if timer {
			opts = Options{Purge: true, PurgeDelay: 2 * time.Millisecond}
		}
		h, _ := newHeapWith(t, opts)
		lo := allocFilled(t, h, 1, 5000)
		var bs []block // 8 of each of 8 sizes: what the bins hold, side by side
		for i := range 64 {
			bs = append(bs, allocFilled(t, h, 1, 2000-uintptr(i%8)*16)...)
		}
		hi := allocFilled(t, h, 1, 5000)
		for _, b := range bs {
			freeBlock(t, h, b)
		}
		var held uintptr
		for _, b := range bs {
			held += chunkSize(b.n)
		}
		require.Equal(t, held, h.fastBytes, "all held")
		walk(t, h)
		gone := func() bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.fastBytes == 0 && h.released >= 200<<10 && !h.purgeAt
		}
		if timer {
			require.Eventually(t, gone, 5*time.Second, time.Millisecond, "held, merged, released, and the timer stopped")
		} else {
			require.Zero(t, h.Idle(), "the first Idle sees the operations since the last")
			require.GreaterOrEqual(t, h.Idle(), uintptr(200<<10))
			require.True(t, gone())
		}
		walk(t, h)
		require.True(t, intact(h, lo[0]))
		require.True(t, intact(h, hi[0]))
	}
}

// spareAndHeld sets up a run whose blocks all end up held in the fast
// bins: it fills the first run with blocks of n bytes (the fast bins hold
// them), pins a page above it (it cannot grow in place), allocates
// fastCount blocks in a second run, and frees the first run's blocks and
// consolidates, so the first run is the spare. It returns the second
// run's blocks, still in use, for the caller to free.
func spareAndHeld(t *testing.T, h *Heap, r *arena.Region, n uintptr) []block {
	t.Helper()
	first := allocFilled(t, h, 1, n)[0]
	lowRun := runOf(r.Lookup(first.p))
	mid, _, err := r.Alloc(1, 0, arena.KindMid, 4096) // above the first run: it cannot grow in place
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Free(mid)) })
	low := []block{first}
	var high []block
	for len(high) < fastCount {
		b := allocFilled(t, h, 1, n)[0]
		if runOf(r.Lookup(b.p)) == lowRun {
			low = append(low, b)
		} else {
			high = append(high, b)
		}
	}
	require.Greater(t, len(low), 2*fastCount, "the first run is full")
	for _, b := range low { // merged: the run empties
		freeBlock(t, h, b)
	}
	h.mu.Lock()
	h.consolidate() // the last few were held: the run empties, the spare
	h.mu.Unlock()
	require.Equal(t, lowRun, h.spare)
	return high
}

// TestFastTrimCountsRetiredRun: Trim empties the fast bins first; when
// that empties a run whose blocks were all held, and a lower empty run is
// the spare, the run goes back to the region then, and the region gives
// back its top with it: Trim counts those bytes too.
func TestFastTrimCountsRetiredRun(t *testing.T) {
	h, r := newHeap(t)
	const n = 1500 // the fast bins hold it
	high := spareAndHeld(t, h, r, n)
	for _, b := range high { // held: the run is empty only once they merge
		freeBlock(t, h, b)
	}
	require.Equal(t, uintptr(fastCount*chunkSize(n)), h.fastBytes)
	walk(t, h)
	before := r.Counters()
	got := h.Trim()
	after := r.Counters()
	walk(t, h)
	require.Less(t, after.ArenaBytes, before.ArenaBytes, "the top went back")
	require.GreaterOrEqual(t, got, before.ArenaBytes-after.ArenaBytes, "Trim counts the top given back with the run it emptied")
}

// TestFastMarks: the held mark and the bit of a block in use at every
// place of a word of the bitmap and across words: flip makes a chunk in
// use held and back, window and liveAt read them, and a place 16 or 32
// bytes into a held chunk, or 16 bytes before a chunk in use, is neither.
func TestFastMarks(t *testing.T) {
	const words = 4
	for g := uintptr(0); g < words*64-3; g++ {
		r := &run{live: make([]uint64, words+1)} // and the word to spare
		r.start = 1 << 20
		c := r.start + g*granule
		r.flip(c, bitsLive)
		require.Equal(t, uint64(bitsLive), r.window(c), "g %d", g)
		require.True(t, r.liveAt(c+16), "g %d", g)
		require.False(t, r.liveAt(c+32), "g %d", g)
		if g > 0 {
			require.False(t, r.liveAt(c), "g %d: 16 bytes before a chunk in use", g)
			require.False(t, held(r, c-granule), "g %d", g)
		}
		if g > 1 {
			require.Equal(t, uint64(4), r.window(c-2*granule)&4, "g %d", g)
		}
		r.flip(c, bitsLive|bitsHeld)
		require.True(t, held(r, c), "g %d", g)
		require.Equal(t, uint64(bitsHeld), r.window(c))
		require.False(t, r.liveAt(c+16), "g %d", g)
		require.False(t, r.liveAt(c+32), "g %d: 16 bytes into a held block", g)
		require.False(t, r.liveAt(c+48), "g %d: 32 bytes into a held block", g)
		require.False(t, held(r, c+granule), "g %d", g)
		r.flip(c, bitsLive|bitsHeld)
		require.Equal(t, uint64(bitsLive), r.window(c))
		r.flip(c, bitsLive|bitsHeld)
		r.flip(c, bitsHeld)
		for w, v := range r.live {
			require.Zero(t, v, "g %d: word %d", g, w)
		}
	}
}

// TestFastDamagedHeldHeader: a write past the end of a block over the
// header of the held chunk after it (its size, its in-use flag) is
// reported once when the chunk is next taken or consolidated, and the
// chunk is never handed out: no block overlaps another, the blocks around
// are intact, and Trim does not follow it. (Its slack, which handOut
// rewrites, and its previous-in-use flag, which the block's Free checks
// against the chunk before, are not looked at here.)
func TestFastDamagedHeldHeader(t *testing.T) {
	const n = 1500
	s := chunkSize(n)
	for name, damage := range map[string]func(uint64) uint64{
		"size": func(hd uint64) uint64 { return hd + 4*granule },
		"free": func(hd uint64) uint64 { return hd &^ flagInUse },
		"zero": func(uint64) uint64 { return 0 },
		"huge": func(hd uint64) uint64 { return hd | 1<<34 },
		"ones": func(uint64) uint64 { return ^uint64(0) },
	} {
		t.Run(name, func(t *testing.T) {
			var got []uintptr
			h := reportsTo(t, &got)
			bs := allocFilled(t, h, 5, n) // a, b (to be held), c, d, guard
			a, b := bs[0], bs[1]
			ar := h.region.Lookup(b.p)
			_, err := h.Free(ar, b.p)
			require.NoError(t, err)
			hdr := wordAt(h, a.p, s-overhead) // b's header: the word past a's block
			*hdr = damage(*hdr)
			var more []block
			for i := range 4 {
				p, err := h.Alloc(n)
				require.NoError(t, err)
				q := block{p: uintptr(p), n: n, tag: byte(100 + i)}
				for _, x := range bs {
					require.False(t, q.p < x.p+n && x.p < q.p+n || q.p == b.p, "%#x handed out over %#x", q.p, x.p)
				}
				fill(h, q)
				more = append(more, q)
			}
			h.Trim()
			require.Len(t, got, 1, "reported once")
			for _, x := range []block{bs[2], bs[3], bs[4]} {
				require.True(t, intact(h, x))
			}
			for _, x := range more {
				require.True(t, intact(h, x))
				_, err := h.Free(h.region.Lookup(x.p), x.p)
				require.NoError(t, err)
			}
			h.Trim()
		})
	}
}

// TestPurgePassHoldsMoves: the purge's timer takes Options.Moves before it
// consolidates the fast bins, which may give an emptied run back to the
// region, so an owner holding Moves while it reads the heap's counters and
// then the region's never sees the run in both or in neither. The run's
// blocks are all held in the fast bins, a lower empty run is the spare:
// while the test holds Moves the run stays the heap's, and once it lets
// go the timer's pass gives it back.
func TestPurgePassHoldsMoves(t *testing.T) {
	var moves sync.Mutex
	h, r := newHeapWith(t, Options{Purge: true, PurgeDelay: time.Millisecond, Moves: &moves})
	high := spareAndHeld(t, h, r, 1500)
	highRun := runOf(r.Lookup(high[0].p))
	holds := func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		_, ok := h.liveRuns[highRun]
		return ok
	}
	moves.Lock()
	for _, b := range high { // held: the run is empty only once they merge
		freeBlock(t, h, b)
	}
	fitBytes := r.Counters().FitBytes
	time.Sleep(30 * time.Millisecond) // many delays: the timer has fired
	require.True(t, holds(), "the pass waits for Moves")
	require.Equal(t, fitBytes, r.Counters().FitBytes)
	moves.Unlock()
	require.Eventually(t, func() bool { return !holds() }, 5*time.Second, time.Millisecond, "the pass merged the held chunks and gave the run back")
	require.Less(t, r.Counters().FitBytes, fitBytes)
	walk(t, h)
}
