package fit

import (
	"errors"
	"math/bits"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/budget"
	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/sys"
)

func newHeap(t testing.TB) (*Heap, *arena.Region) { return newHeapWith(t, Options{}) }

func newHeapWith(t testing.TB, opts Options) (*Heap, *arena.Region) {
	r, err := arena.New(arena.Config{Reserve: 4 << 30, TopPad: 128 << 10, TrimThreshold: 128 << 10,
		OS: &sys.OS{}, Budget: budget.New(0), SideShift: SideShift})
	require.NoError(t, err)
	h := New(r, opts)
	t.Cleanup(func() {
		h.Close()
		_ = r.Close()
	})
	return h, r
}

type block struct {
	p   uintptr
	n   uintptr
	tag byte
}

func bytesOf(h *Heap, p, n uintptr) []byte { return unsafe.Slice((*byte)(h.region.Ptr(p)), n) }

// sideClear checks that no bit of the region's side is set outside the
// heap's runs' windows: a run given back left its window clear, and
// nothing wrote into it since (under the lock, from walk).
func sideClear(t testing.TB, h *Heap) {
	t.Helper()
	side := h.region.Side()
	if side == nil {
		return
	}
	c := h.region.Counters()
	words := min(int((c.Break-c.Base)/(8<<SideShift))+1, int(side.Committed()/8))
	if words == 0 {
		return
	}
	all, err := side.Words(c.Base, words)
	require.NoError(t, err)
	owned := make([]bool, words)
	for r := range h.liveRuns {
		if !r.sided {
			continue
		}
		from := int((r.start - c.Base) / (8 << SideShift))
		for i := range len(r.live) - 1 { // (the word to spare is the next run's)
			if from+i < words {
				owned[from+i] = true
			}
		}
	}
	for i, w := range all {
		require.True(t, owned[i] || w == 0, "side word %d (the region's %#x) is %#x, outside every run", i, c.Base+uintptr(i)*(8<<SideShift), w)
	}
}

func fill(h *Heap, b block) {
	s := bytesOf(h, b.p, b.n)
	for i := range s {
		s[i] = b.tag
	}
}

func intact(h *Heap, b block) bool {
	for _, c := range bytesOf(h, b.p, b.n) {
		if c != b.tag {
			return false
		}
	}
	return true
}

// walk checks the heap's invariants over every run: the chunks tile it,
// no two free chunks are neighbours, each free chunk is binned and its
// boundary tag matches, flags agree with the bitmap, and the counters sum.
func walk(t testing.TB, h *Heap) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	binned := map[uintptr]uintptr{}
	fast := map[uintptr]uintptr{} // held in a fast bin: its size
	var fastBytes uintptr
	for i := range h.fast {
		s, k := (uintptr(i)+fastFirst)*granule, h.fastN[i]
		require.LessOrEqual(t, k, uint8(fastCount), "fast bin %d's count", i)
		for _, e := range h.fast[i][:k] {
			require.Equal(t, h.heldOK(e.c, s), e.r, "fast bin %d: chunk %#x, and its run", i, e.c)
			require.NotContains(t, fast, e.c, "chunk %#x held twice", e.c)
			fast[e.c] = s
			fastBytes += s
		}
	}
	require.Equal(t, h.fastBytes, fastBytes, "the fast bins' bytes")
	require.LessOrEqual(t, fastBytes, h.fastCap)
	fronted := map[uintptr]uintptr{} // held by a front: its size
	h.eachFront(func(f *front) {
		var bytes, req uintptr
		for i := range f.n {
			s := (uintptr(i) + fastFirst) * granule
			for _, e := range f.e[i][:f.n[i]] {
				_, dup := fronted[e.c]
				require.False(t, dup, "chunk %#x held twice by fronts", e.c)
				fronted[e.c] = s
				bytes += s
				req += e.req
			}
		}
		require.Equal(t, f.bytes, bytes, "a front's bytes")
		require.Equal(t, f.req, req, "a front's requested bytes")
		require.LessOrEqual(t, bytes, uintptr(frontCap))
	})
	for i, e := range h.big {
		require.GreaterOrEqual(t, e.s, uintptr(exactLimit), "sorted bin: chunk %#x", e.c)
		if i > 0 {
			p := h.big[i-1]
			require.True(t, p.s < e.s || p.s == e.s && p.c < e.c, "sorted bin: %d-byte %#x before %d-byte %#x", p.s, p.c, e.s, e.c)
		}
	}
	var released uintptr
	h.eachFree(func(c, s uintptr) {
		require.NotContains(t, binned, c, "chunk %#x binned twice", c)
		binned[c] = s
		if h.header(c)&flagReleased != 0 {
			released += h.inside(c, s)
		}
	})
	require.Equal(t, h.released, released, "released bytes: the flagged chunks' insides")
	var live, chunk, free uintptr
	var inUse [numCounted]int32 // the chunks in use of each size counted
	marks := map[uintptr]bool{} // chunks whose start and end bits the record may hold
	ends := map[uintptr]bool{}  // and where they end
	seen := map[*run]bool{}
	for c := range binned {
		seen[runOf(h.region.Lookup(c))] = true
	}
	for c := range fast {
		seen[runOf(h.region.Lookup(c))] = true
	}
	for r := range h.liveRuns {
		seen[r] = true
	}
	sideClear(t, h)
	for r := range seen {
		require.False(t, r.gone)
		c, prevFree := r.start, false
		for c < r.end-fenceSize {
			hd := h.headerIn(r, c)
			s := sizeOf(hd)
			require.GreaterOrEqual(t, s, uintptr(minChunk), "chunk %#x", c)
			require.LessOrEqual(t, c+s, r.end-fenceSize, "chunk %#x overruns its run", c)
			require.Equal(t, !prevFree, hd&flagPrevInUse != 0, "chunk %#x: previous in use", c)
			w, m := r.bit(c + 16)
			switch {
			case hd&flagInUse != 0 && held(r, c):
				require.Zero(t, r.live[w]&m, "chunk %#x held in a fast bin and in use", c)
				require.Equal(t, s, fast[c], "held chunk %#x not in its fast bin", c)
				free += s
				prevFree = false
			case hd&flagInUse != 0:
				require.NotZero(t, r.live[w]&m, "chunk %#x in use, not in the bitmap", c)
				if fs, ok := fronted[c]; ok {
					require.Equal(t, s, fs, "chunk %#x held by a front with another size", c)
					require.False(t, r.frontLive(c, s), "chunk %#x held by a front, recorded in use", c)
				} else if h.fronted(r, c, s) {
					require.True(t, r.frontLive(c, s), "chunk %#x in use, not recorded for the fronts", c)
				}
				if h.fronted(r, c, s) {
					g0, g1 := r.granules(c, s)
					seg, i0 := r.segAt(g0)
					require.True(t, g1/flSegGranules != g0/flSegGranules || seg.endsAt(i0, i0+g1-g0), "chunk %#x: its end bit", c)
					marks[c], ends[c+s] = true, true
				}
				live++
				chunk += s
				if i := countIndex(s); i >= 0 {
					inUse[i]++
				}
				prevFree = false
			default:
				require.Zero(t, r.live[w]&m, "chunk %#x free, in the bitmap", c)
				require.False(t, held(r, c), "chunk %#x free, held in a fast bin", c)
				require.False(t, prevFree, "two free chunks side by side at %#x", c)
				require.Equal(t, s, binned[c], "free chunk %#x not binned with its size", c)
				require.Equal(t, uint64(s), *h.slot(r, c+s), "boundary tag of %#x", c)
				free += s
				prevFree = true
			}
			c += s
		}
		require.Equal(t, r.end-fenceSize, c)
		require.Equal(t, !prevFree, h.headerIn(r, c)&flagPrevInUse != 0, "fence")
		// the record holds the bits of fronted chunks in use, and no other
		for k := range r.fl {
			seg := r.fl[k].Load()
			if seg == nil {
				continue
			}
			for w := range uintptr(flSegWords) {
				for m := *seg.start(w); m != 0; m &= m - 1 {
					g := uintptr(k)*flSegGranules + uintptr(w)*64 + uintptr(bits.TrailingZeros64(m))
					c := r.start + g*granule
					require.True(t, marks[c], "a start bit at %#x, no chunk in use there", c)
					require.NotContains(t, fronted, c, "a start bit at %#x, held by a front", c)
				}
				for m := *seg.end(w); m != 0; m &= m - 1 {
					g := uintptr(k)*flSegGranules + uintptr(w)*64 + uintptr(bits.TrailingZeros64(m))
					end := r.start + (g+1)*granule
					require.True(t, ends[end], "an end bit before %#x, no chunk in use ends there", end)
				}
			}
		}
	}
	require.Equal(t, h.liveChunks, live)
	for i := range inUse {
		require.Equal(t, inUse[i], h.inUse[i].Load(), "chunks in use of %d bytes", (uintptr(i)+minChunk/granule)*granule)
	}
	require.Equal(t, h.chunkBytes, chunk)
	require.Equal(t, h.freeBytes, free)
	// the top's last free chunk, out of the bins, ends at the top's fence,
	// and the chunk the heap knows is before it ends where it starts
	if h.wild != 0 {
		require.NotNil(t, h.top)
		require.Equal(t, h.top.end-fenceSize, h.wild+h.wildS, "the top's last free chunk")
		require.Equal(t, h.wildS, binned[h.wild], "the top's last free chunk, with its size")
		if h.wildPrev != 0 {
			require.Equal(t, h.wild, h.wildPrev+sizeOf(h.header(h.wildPrev)), "the chunk before the top's last free chunk")
		}
	} else if top := h.top; top != nil {
		require.NotZero(t, top.fence[1]&flagPrevInUse, "the top's last chunk is free, not the top's free chunk")
	}
}

// freeBlock frees block b, which must succeed.
func freeBlock(t testing.TB, h *Heap, b block) {
	t.Helper()
	_, err := h.Free(h.region.Lookup(b.p), b.p)
	require.NoError(t, err)
}

// resizeFilled resizes block b to n bytes if the heap can in place, and
// then fills it: the block as it ends.
func resizeFilled(h *Heap, b block, n uintptr) (block, error) {
	ok, err := h.Resize(h.region.Lookup(b.p), b.p, n, 0)
	if err == nil && ok {
		b.n = n
		fill(h, b)
	}
	return b, err
}

// freeIntact checks that b's contents are intact, and frees it.
func freeIntact(t testing.TB, h *Heap, b block) {
	t.Helper()
	require.True(t, intact(h, b))
	freeBlock(t, h, b)
}

// allocFilled allocates count blocks of n bytes, each filled with its own
// tag (1, 2, …).
func allocFilled(t testing.TB, h *Heap, count int, n uintptr) []block {
	t.Helper()
	bs := make([]block, 0, count)
	for i := range count {
		p, err := h.Alloc(n)
		require.NoError(t, err)
		b := block{p: uintptr(p), n: n, tag: byte(i + 1)}
		fill(h, b)
		bs = append(bs, b)
	}
	return bs
}

// TestModel runs random allocations, frees and resizes against a model,
// checking contents (no two live blocks overlap) and the invariants.
func TestModel(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		opts := Options{}
		if seed%2 == 0 {
			opts = Options{Purge: true} // at once: every free chunk of 64 KiB gives its pages back as it is made
		}
		h, _ := newHeapWith(t, opts)
		rng := rand.New(rand.NewPCG(seed, seed))
		var live []block
		for i := 0; i < 2000; i++ {
			switch op := rng.IntN(10); {
			case op < 5 || len(live) == 0:
				n := uintptr(rng.IntN(40000))
				if rng.IntN(4) == 0 {
					n = uintptr(rng.IntN(1100))
				}
				p, err := h.Alloc(n)
				require.NoError(t, err)
				b := block{p: uintptr(p), n: n, tag: byte(rng.Uint32())}
				require.Zero(t, b.p%16)
				fill(h, b)
				live = append(live, b)
			case op < 8:
				k := rng.IntN(len(live))
				b := live[k]
				require.True(t, intact(h, b), "block %#x changed", b.p)
				ar := h.region.Lookup(b.p)
				size, req, err := h.Usable(ar, b.p)
				require.NoError(t, err)
				require.Equal(t, b.n, req)
				require.GreaterOrEqual(t, size, b.n)
				n, err := h.Free(ar, b.p)
				require.NoError(t, err)
				require.Equal(t, b.n, n)
				live[k] = live[len(live)-1]
				live = live[:len(live)-1]
				_, err = h.Free(ar, b.p)
				require.Error(t, err, "a second free")
			default:
				k := rng.IntN(len(live))
				b := live[k]
				n := uintptr(rng.IntN(40000))
				ok, err := h.Resize(h.region.Lookup(b.p), b.p, n, 0)
				require.NoError(t, err)
				if ok {
					keep := min(n, b.n)
					for _, c := range bytesOf(h, b.p, keep) {
						require.Equal(t, b.tag, c)
					}
					b.n = n
					fill(h, b)
					live[k] = b
				}
			}
			if i%250 == 0 {
				walk(t, h)
			}
		}
		walk(t, h)
		for _, b := range live {
			freeIntact(t, h, b)
		}
		walk(t, h)
		st := h.Stats()
		require.Zero(t, st.LiveChunks)
		require.LessOrEqual(t, st.Runs, uintptr(1), "every empty run but the spare goes back")
	}
}

// TestBadFrees: interior pointers, misaligned ones, double frees are
// refused and change nothing.
func TestBadFrees(t *testing.T) {
	h, _ := newHeap(t)
	p, err := h.Alloc(5000)
	require.NoError(t, err)
	q, err := h.Alloc(3000)
	require.NoError(t, err)
	b := block{p: uintptr(q), n: 3000, tag: 7}
	fill(h, b)
	a := uintptr(p)
	ar := h.region.Lookup(a)
	for _, bad := range []uintptr{a + 1, a + 16, a + 4096, a - 16, a + 8} {
		_, err := h.Free(ar, bad)
		require.ErrorIs(t, err, errs.ErrInvalidFree, "%#x", bad)
	}
	// a forged header inside a live block changes nothing
	s := bytesOf(h, a, 5000)
	*(*uint64)(unsafe.Pointer(&s[1024-8])) = 64 | flagInUse | flagPrevInUse
	_, err = h.Free(ar, a+1024)
	require.ErrorIs(t, err, errs.ErrInvalidFree)
	_, err = h.Free(ar, a)
	require.NoError(t, err)
	_, err = h.Free(ar, a)
	require.True(t, errors.Is(err, errs.ErrDoubleFree) || errors.Is(err, errs.ErrInvalidFree), "%v", err)
	require.True(t, intact(h, b))
	walk(t, h)
}

// TestConcurrent: goroutines allocating, resizing and freeing, handing
// blocks to each other, with contents checked.
func TestConcurrent(t *testing.T) {
	h, _ := newHeap(t)
	const workers = 8
	ch := make(chan block, 64)
	done := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func(seed uint64) {
			rng := rand.New(rand.NewPCG(seed, 9))
			var mine []block
			var err error
			for i := 0; i < 4000 && err == nil; i++ {
				switch op := rng.IntN(10); {
				case op < 5 || len(mine) == 0:
					n := uintptr(rng.IntN(20000))
					p, e := h.Alloc(n)
					if e != nil {
						err = e
						break
					}
					b := block{p: uintptr(p), n: n, tag: byte(rng.Uint32())}
					fill(h, b)
					select {
					case ch <- b:
					default:
						mine = append(mine, b)
					}
				case op < 8:
					var b block
					select {
					case b = <-ch:
					default:
						k := rng.IntN(len(mine))
						b = mine[k]
						mine[k] = mine[len(mine)-1]
						mine = mine[:len(mine)-1]
					}
					if !intact(h, b) {
						err = errors.New("a block changed")
						break
					}
					_, err = h.Free(h.region.Lookup(b.p), b.p)
				default:
					k := rng.IntN(len(mine))
					mine[k], err = resizeFilled(h, mine[k], uintptr(rng.IntN(20000)))
				}
			}
			for _, b := range mine {
				if err == nil {
					_, err = h.Free(h.region.Lookup(b.p), b.p)
				}
			}
			done <- err
		}(uint64(w))
	}
	for w := 0; w < workers; w++ {
		require.NoError(t, <-done)
	}
	close(ch)
	for b := range ch {
		freeIntact(t, h, b)
	}
	walk(t, h)
}

// TestIdleAndTrimRelease: the free chunks of an idle heap go back to the
// kernel (their inside pages read as zero after), once; live blocks are
// untouched; Trim gives back the spare run.
func TestIdleAndTrimRelease(t *testing.T) {
	h, _ := newHeap(t)
	bs := allocFilled(t, h, 40, 8000)
	for i, b := range bs {
		if i%4 != 0 {
			freeBlock(t, h, b)
		}
	}
	require.Zero(t, h.Idle(), "the first pass sees the frees: not idle yet")
	released := h.Idle()
	require.Greater(t, released, uintptr(30*4096), "three free blocks in four, merged: most of their pages")
	require.Zero(t, h.Idle(), "released chunks are not released again")
	require.Zero(t, h.Trim(), "nothing left to release")
	for i, b := range bs {
		if i%4 == 0 {
			require.True(t, intact(h, b))
		}
	}
	walk(t, h)
	// the released pages are usable again
	p, err := h.Alloc(20000)
	require.NoError(t, err)
	fill(h, block{p: uintptr(p), n: 20000, tag: 9})
	walk(t, h)
}

// TestPurgeAfterDelay: a free chunk of 64 KiB and more gives the pages
// inside back by itself once it has stayed free a delay; smaller ones and
// live blocks are left alone; Close stops the timer.
func TestPurgeAfterDelay(t *testing.T) {
	h, r := newHeapWith(t, Options{Purge: true, PurgeDelay: 5 * time.Millisecond})
	bs := allocFilled(t, h, 40, 8000)
	for _, b := range bs[1:13] { // 96 KB of neighbours: one free chunk
		freeBlock(t, h, b)
	}
	_, err := h.Free(r.Lookup(bs[20].p), bs[20].p) // 8 KB alone: kept
	require.NoError(t, err)
	require.Zero(t, h.Stats().Released, "not before the delay")
	require.Eventually(t, func() bool { // the fast bin of their size holds 8 of them: merged at a pass that saw no operation
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.header(bs[1].p-16)&flagReleased != 0
	}, 5*time.Second, time.Millisecond)
	require.GreaterOrEqual(t, h.Stats().Released, uintptr(80<<10))
	require.Zero(t, h.header(bs[20].p-16)&flagReleased, "a chunk of 8 KB is left alone")
	for i, b := range bs {
		if i == 0 || i >= 13 && i != 20 {
			require.True(t, intact(h, b), "block %d", i)
		}
	}
	walk(t, h)
	// the released chunk is reused, its pages fault back in as zero
	before := h.Stats().Released
	p, err := h.Alloc(90000)
	require.NoError(t, err)
	fill(h, block{p: uintptr(p), n: 90000, tag: 3})
	require.Less(t, h.Stats().Released, before, "the chunk it came from is no longer counted released")
	walk(t, h)
	q, err := h.Alloc(90000)
	require.NoError(t, err)
	_, err = h.Free(r.Lookup(uintptr(p)), uintptr(p)) // arms the purge
	require.NoError(t, err)
	h.Close()
	before = h.Stats().Released
	_, err = h.Free(r.Lookup(uintptr(q)), uintptr(q))
	require.Equal(t, errs.ErrClosed, err, "the lock orders a call with Close: refused once closed, with the sentinel itself (the allocator compares it so)")
	_, err = h.Alloc(2000)
	require.Equal(t, errs.ErrClosed, err)
	time.Sleep(20 * time.Millisecond)
	require.LessOrEqual(t, h.Stats().Released, before, "no purge after Close")
}

// TestUnderLimit: with a budget smaller than a run, a medium block still
// gets the pages it needs.
func TestUnderLimit(t *testing.T) {
	r, err := arena.New(arena.Config{Reserve: 1 << 30, TopPad: 0, TrimThreshold: 128 << 10,
		OS: &sys.OS{}, Budget: budget.New(64 << 10)})
	require.NoError(t, err)
	defer r.Close()
	h := New(r, Options{})
	defer h.Close()
	p, err := h.Alloc(5000)
	require.NoError(t, err)
	fill(h, block{p: uintptr(p), n: 5000, tag: 1})
	_, err = h.Alloc(100 << 10)
	require.ErrorIs(t, err, errs.ErrNoMemory, "past the budget")
	walk(t, h)
}

// TestTrimTop: a free that leaves a run's last free chunk TrimThreshold
// bytes or more gives back its touched pages past TopPad at once, as
// glibc's free trims the top chunk; the blocks below are untouched, and
// the pages come back zero when a block reaches them again.
func TestTrimTop(t *testing.T) {
	h, r := newHeapWith(t, Options{TrimThreshold: 128 << 10, TopPad: 64 << 10})
	bs := allocFilled(t, h, 80, 8000)
	run := runOf(r.Lookup(bs[0].p))
	os := &sys.OS{}
	var vec []byte
	resident := func(lo, hi uintptr) uintptr {
		lo &^= h.page - 1
		n, err := os.Resident(r.Ptr(lo), hi-lo, &vec)
		require.NoError(t, err)
		return n
	}
	top := bs[79].p + 8000
	require.Greater(t, resident(bs[40].p, top), uintptr(300<<10))
	for i := 79; i >= 40; i-- { // the top 320 KB, from the top down
		_, err := h.Free(r.Lookup(bs[i].p), bs[i].p)
		require.NoError(t, err)
	}
	require.Less(t, run.clean, top, "the top was trimmed")
	lo := alignUp(bs[40].p-16+minChunk+64<<10, h.page)
	require.Equal(t, lo, run.clean, "the pad is kept, the rest known clean")
	require.Zero(t, resident(lo, top&^(h.page-1)), "past the pad, nothing resident")
	for _, b := range bs[:40] {
		require.True(t, intact(h, b))
	}
	walk(t, h)
	p, err := h.Alloc(200 << 10)
	require.NoError(t, err)
	for _, c := range bytesOf(h, uintptr(p)+80<<10, 100<<10) {
		require.Zero(t, c, "a trimmed page comes back zero")
	}
	fill(h, block{p: uintptr(p), n: 200 << 10, tag: 5})
	require.GreaterOrEqual(t, run.clean, uintptr(p)+200<<10)
	walk(t, h)
}

// BenchmarkReplace keeps 1000 medium blocks live and replaces a random
// one each step: Free and Alloc with their checks (bins, neighbours).
func BenchmarkReplace(b *testing.B) {
	h, r := newHeap(b)
	rng := rand.New(rand.NewPCG(1, 2))
	live := make([]uintptr, 1000)
	for i := range live {
		p, err := h.Alloc(uintptr(1025 + rng.IntN(31<<10)))
		require.NoError(b, err)
		live[i] = uintptr(p)
	}
	b.ResetTimer()
	for range b.N {
		k := rng.IntN(len(live))
		if _, err := h.Free(r.Lookup(live[k]), live[k]); err != nil {
			b.Fatal(err)
		}
		p, err := h.Alloc(uintptr(1025 + rng.IntN(31<<10)))
		if err != nil {
			b.Fatal(err)
		}
		live[k] = uintptr(p)
	}
}

// TestFastBins: a freed medium block is held on its fast bin and handed
// back to the next request of its size; a second free of it is a double
// free that changes nothing; growing a block in place into a held chunk
// first consolidates, and the block's header then says the chunk before
// it is free (the held chunk before it merged with a free one).
func TestFastBins(t *testing.T) {
	h, r := newHeap(t)
	// in address order: live blocks, a free chunk, A held, B live, C held, D live
	bs := allocFilled(t, h, 5, 1500)
	big, err := h.Alloc(40000) // not held when freed: above the fast bins' sizes
	require.NoError(t, err)
	a, b, c, d := allocFilled(t, h, 1, 1500)[0], allocFilled(t, h, 1, 2000)[0], allocFilled(t, h, 1, 1500)[0], allocFilled(t, h, 1, 1500)[0]
	freeBlock(t, h, block{p: uintptr(big)})
	freeBlock(t, h, a)
	freeBlock(t, h, c)
	walk(t, h)
	require.Equal(t, uintptr(2*chunkSize(1500)), h.fastBytes, "A and C are held")
	_, err = h.Free(r.Lookup(a.p), a.p)
	require.ErrorIs(t, err, errs.ErrDoubleFree)
	walk(t, h)

	ok, err := h.Resize(r.Lookup(b.p), b.p, 3000, 0) // into C's chunk
	require.NoError(t, err)
	require.True(t, ok)
	b.n = 3000
	fill(h, b)
	require.Zero(t, h.fastBytes, "consolidated")
	require.Zero(t, h.header(b.p-16)&flagPrevInUse, "A merged with the free chunk before it")
	require.True(t, intact(h, d))
	walk(t, h)

	// a held chunk comes back to the next request of its size
	freeBlock(t, h, d)
	p, err := h.Alloc(1500)
	require.NoError(t, err)
	require.Equal(t, d.p, uintptr(p))
	walk(t, h)
	for _, x := range bs {
		require.True(t, intact(h, x))
	}
}
