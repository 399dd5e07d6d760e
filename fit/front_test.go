package fit

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/internal/errs"
)

// frontHeap is a heap whose fronts exist on every P.
func frontHeap(t *testing.T) *Heap {
	h, _ := newHeap(t)
	require.NotNil(t, h.fronts)
	makeFronts(h)
	return h
}

// makeFronts makes every P's front (makeFront makes the caller's on the
// slow paths, and a goroutine may move to another P between two calls).
func makeFronts(h *Heap) {
	for i := range h.fronts {
		h.fronts[i].CompareAndSwap(nil, &front{sample: 1 << 62})
	}
}

// frontAlloc allocates a block of n bytes as the allocator does (this P's
// front, else the heap) and fills it with tag; false if it failed
// (reported).
func frontAlloc(t *testing.T, h *Heap, n uintptr, tag byte) (block, bool) {
	p, _ := h.AllocFast(n, 0)
	if p == nil {
		var err error
		if p, err = h.Alloc(n); !assert.NoError(t, err) {
			return block{}, false
		}
	}
	b := block{p: uintptr(p), n: n, tag: tag}
	fill(h, b)
	return b, true
}

// frontFree checks that b is intact and frees it, into this P's front if
// tryFront and the front takes it, else through the lock; false if either
// failed (reported).
func frontFree(t *testing.T, h *Heap, b block, tryFront bool) bool {
	if !assert.True(t, intact(h, b), "block %#x changed", b.p) {
		return false
	}
	ar := h.region.Lookup(b.p)
	if tryFront && h.FreeFast(ar, b.p) {
		return true
	}
	_, err := h.Free(ar, b.p)
	return assert.NoError(t, err)
}

// freeFast frees b into this P's front, which must take it.
func freeFast(t *testing.T, h *Heap, b block) {
	t.Helper()
	require.True(t, h.FreeFast(h.region.Lookup(b.p), b.p), "block %#x into the front", b.p)
}

// TestFrontRoundTrip: a freed block goes into this P's front, counted
// there and not as in use; the next request of its size takes it back,
// with its new requested size; Trim empties the front into the heap.
func TestFrontRoundTrip(t *testing.T) {
	h := frontHeap(t)
	bs := allocFilled(t, h, 3, 1500)
	freeFast(t, h, bs[1])
	st := h.Stats()
	assert.Equal(t, chunkSize(1500), st.Cached)
	assert.Equal(t, uintptr(2), st.LiveChunks)
	assert.Equal(t, uintptr(3000), st.LiveBytes)
	walk(t, h)
	p, sampled := h.AllocFast(1490, 0) // the same chunk size
	if p == nil {
		t.Skip("the goroutine moved to another P between the calls")
	}
	assert.False(t, sampled)
	assert.Equal(t, bs[1].p, uintptr(p))
	size, req, err := h.Usable(h.region.Lookup(bs[1].p), bs[1].p)
	require.NoError(t, err)
	assert.Equal(t, uintptr(1490), req)
	assert.Equal(t, BlockSize(1500), size)
	st = h.Stats()
	assert.Zero(t, st.Cached)
	assert.Equal(t, uintptr(1500+1490+1500), st.LiveBytes)
	walk(t, h)
	freeFast(t, h, block{p: uintptr(p), n: 1490})
	h.Trim()
	st = h.Stats()
	assert.Zero(t, st.Cached)
	assert.Equal(t, uintptr(3000), st.LiveBytes)
	walk(t, h)
}

// TestFrontDoubleFree: a block a front holds cannot be freed again, with
// or without the lock, on any P: the second Free is ErrDoubleFree and
// changes nothing; nor can it be resized or sized.
func TestFrontDoubleFree(t *testing.T) {
	h := frontHeap(t)
	bs := allocFilled(t, h, 3, 1800)
	b := bs[1]
	ar := h.region.Lookup(b.p)
	freeFast(t, h, b)
	assert.False(t, h.FreeFast(ar, b.p), "a second free without the lock")
	_, err := h.Free(ar, b.p)
	assert.ErrorIs(t, err, errs.ErrDoubleFree)
	var wg sync.WaitGroup
	for range 4 { // on other Ps, if there are
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.False(t, h.FreeFast(ar, b.p))
			_, err := h.Free(ar, b.p)
			assert.ErrorIs(t, err, errs.ErrDoubleFree)
		}()
	}
	wg.Wait()
	_, _, err = h.Usable(ar, b.p)
	assert.ErrorIs(t, err, errs.ErrDoubleFree)
	_, err = h.Resize(ar, b.p, 100, 0)
	assert.ErrorIs(t, err, errs.ErrDoubleFree)
	assert.True(t, intact(h, bs[0]))
	assert.True(t, intact(h, bs[2]))
	walk(t, h)
	h.Trim()
	walk(t, h)
	assert.Equal(t, uintptr(2), h.Stats().LiveChunks)
}

// TestFrontBadPointers: pointers that are not the start of a block in use
// never go into a front: into a block, before it, misaligned, past the
// end of the run, a block in a fast bin.
func TestFrontBadPointers(t *testing.T) {
	h := frontHeap(t)
	bs := allocFilled(t, h, 4, 1500)
	a := bs[1].p
	ar := h.region.Lookup(a)
	for _, bad := range []uintptr{a + 16, a + 32, a + 1024, a - 16, a + 8, a + 1, bs[2].p - 8} {
		assert.False(t, h.FreeFast(ar, bad), "%#x", bad)
		_, err := h.Free(ar, bad)
		assert.ErrorIs(t, err, errs.ErrInvalidFree, "%#x", bad)
	}
	_, err := h.Free(ar, bs[2].p) // into the heap's fast bin (the lock's path)
	require.NoError(t, err)
	assert.False(t, h.FreeFast(ar, bs[2].p), "a block in a fast bin")
	for _, b := range []block{bs[0], bs[1], bs[3]} {
		assert.True(t, intact(h, b))
	}
	assert.Zero(t, h.Stats().Cached)
	walk(t, h)
}

// TestFrontForgedHeader: a write past the end of a block overwrites the
// header of the block after it, in use: a larger size (over its
// neighbour), a smaller one, the in-use flag cleared. The block never goes
// into a front with the wrong size: the Free without the lock refuses it,
// the one with the lock reports it, and no block is ever handed out over
// another.
func TestFrontForgedHeader(t *testing.T) {
	const n = 2000
	s := chunkSize(n)
	for name, damage := range map[string]func(uint64) uint64{
		"larger":  func(hd uint64) uint64 { return hd + uint64(s) },
		"smaller": func(hd uint64) uint64 { return hd - 4*granule },
		"free":    func(hd uint64) uint64 { return hd &^ flagInUse },
		"sampled": func(hd uint64) uint64 { return hd | flagSampled }, // not damage: it goes through the lock
	} {
		t.Run(name, func(t *testing.T) {
			var got []uintptr
			h := reportsTo(t, &got)
			makeFronts(h)
			bs := allocFilled(t, h, 4, n) // a, b (its header overwritten), c, guard
			b := bs[1]
			ar := h.region.Lookup(b.p)
			hdr := wordAt(h, bs[0].p, s-overhead)
			*hdr = damage(*hdr)
			assert.False(t, h.FreeFast(ar, b.p), "into a front with a damaged header")
			_, err := h.Free(ar, b.p)
			if name == "sampled" {
				require.NoError(t, err)
				assert.Empty(t, got)
			} else {
				require.Error(t, err)
				assert.NotEmpty(t, got, "reported")
			}
			for i := range 8 {
				q, err := h.Alloc(n)
				require.NoError(t, err)
				qb := block{p: uintptr(q), n: n, tag: byte(50 + i)}
				for _, x := range []block{bs[0], bs[2], bs[3]} {
					require.False(t, qb.p < x.p+n && x.p < qb.p+n, "%#x handed out over %#x", qb.p, x.p)
				}
			}
			for _, x := range []block{bs[0], bs[2], bs[3]} {
				require.True(t, intact(h, x))
			}
		})
	}
}

// TestFrontDamagedWhileHeld: a write past the end of a block overwrites
// the header of the chunk after it while a front holds that chunk. The
// front never hands it out; the drain reports it, once, and loses it
// (left in use in the bitmap, counted free): its count in use (InUse)
// goes with it, once, and the counts of the chunks left agree with the
// heap's live chunks through their frees.
func TestFrontDamagedWhileHeld(t *testing.T) {
	const n = 2000
	s := chunkSize(n)
	var got []uintptr
	h := reportsTo(t, &got)
	makeFronts(h)
	bs := allocFilled(t, h, 4, n)
	require.Equal(t, 4, h.InUse(s, s))
	freeFast(t, h, bs[1])
	require.Equal(t, 4, h.InUse(s, s), "held by a front: counted in use")
	hdr := wordAt(h, bs[0].p, s-overhead)
	*hdr += uint64(s) // a larger size
	for range 4 {
		q, _ := h.AllocFast(n, 0)
		require.Nil(t, q, "a damaged chunk handed out by a front")
	}
	h.Trim()
	require.Len(t, got, 1, "reported once, by the drain")
	require.Equal(t, 3, h.InUse(s, s), "the lost chunk counted once, as the heap's live chunks")
	require.Equal(t, int(h.liveChunks), h.InUse(0, 1<<20))
	h.Trim()
	require.Len(t, got, 1)
	require.Equal(t, 3, h.InUse(s, s), "drained once")
	for _, x := range []block{bs[0], bs[2], bs[3]} {
		require.True(t, intact(h, x))
	}
	assert.Zero(t, h.Stats().Cached)
	assert.Equal(t, uintptr(3), h.Stats().LiveChunks)
	for _, x := range []block{bs[0], bs[2], bs[3]} {
		freeIntact(t, h, x)
	}
	h.Trim()
	require.Zero(t, h.InUse(s, s), "the live blocks freed, the lost chunk not counted again")
	require.Equal(t, int(h.liveChunks), h.InUse(0, 1<<20))
	countsNonNegative(t, h)
}

// TestFrontConcurrent: goroutines on every P allocate medium blocks and
// free their own and each other's, through the fronts and the lock, each
// block filled and checked before it is freed; the counts stay exact, and
// Trim empties every front.
func TestFrontConcurrent(t *testing.T) {
	h := frontHeap(t)
	const workers = 8
	ops := 1500
	if testing.Short() {
		ops = 500
	}
	handoff := make(chan block, 64)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			var mine []block
			free := func(b block) bool { return frontFree(t, h, b, rng.IntN(4) != 0) }
			for i := range ops {
				switch k := rng.IntN(10); {
				case k < 5 || len(mine) == 0:
					b, ok := frontAlloc(t, h, uintptr(1025+rng.IntN(1500)), byte(w*31+i))
					if !ok {
						return
					}
					mine = append(mine, b)
				case k < 7:
					j := rng.IntN(len(mine))
					select {
					case handoff <- mine[j]: // freed by another worker
					default:
						if !free(mine[j]) {
							return
						}
					}
					mine[j] = mine[len(mine)-1]
					mine = mine[:len(mine)-1]
				default:
					select {
					case b := <-handoff:
						if !free(b) {
							return
						}
					default:
					}
				}
			}
			for _, b := range mine {
				free(b)
			}
		}()
	}
	wg.Wait()
	close(handoff)
	for b := range handoff {
		_, err := h.Free(h.region.Lookup(b.p), b.p)
		require.NoError(t, err)
	}
	st := h.Stats()
	assert.Zero(t, st.LiveChunks)
	assert.Zero(t, st.LiveBytes)
	walk(t, h)
	h.Trim()
	st = h.Stats()
	assert.Zero(t, st.Cached, "Trim empties every front")
	walk(t, h)
}

// TestFrontIdleAndClose: a front no P used since the last Idle is emptied
// by the next; Close empties the rest, after which no Free goes into a
// front.
func TestFrontIdleAndClose(t *testing.T) {
	h := frontHeap(t)
	bs := allocFilled(t, h, 6, 1500)
	for _, b := range bs[:3] {
		if !h.FreeFast(h.region.Lookup(b.p), b.p) {
			_, err := h.Free(h.region.Lookup(b.p), b.p)
			require.NoError(t, err)
		}
	}
	h.Idle() // notes the fronts' operations
	h.Idle() // none since: emptied
	assert.Zero(t, h.Stats().Cached)
	walk(t, h)
	makeFronts(h)
	freeFast(t, h, bs[3])
	h.Close()
	assert.Zero(t, h.Stats().Cached, "Close empties the fronts")
	assert.False(t, h.FreeFast(h.region.Lookup(bs[4].p), bs[4].p), "no front after Close")
	q, _ := h.AllocFast(1500, 0)
	assert.Nil(t, q)
}

// TestFrontPurgePass: the purge's pass empties the fronts once they saw no
// operation for a whole pass, so memory a front holds goes back by itself.
func TestFrontPurgePass(t *testing.T) {
	h, _ := newHeapWith(t, Options{Purge: true, PurgeDelay: 2 * time.Millisecond})
	makeFronts(h)
	bs := allocFilled(t, h, 64, 2000)
	for _, b := range bs {
		if !h.FreeFast(h.region.Lookup(b.p), b.p) {
			_, err := h.Free(h.region.Lookup(b.p), b.p)
			require.NoError(t, err)
		}
	}
	require.Eventually(t, func() bool { return h.Stats().Cached == 0 }, 5*time.Second, time.Millisecond)
	walk(t, h)
}

// TestFrontDrainOwnReentered: drainOwn frees the chunks it took from this
// P's front unpinned, and one of those frees may merge 64 KiB and settle,
// which drains this P's front again. Meanwhile the front may have filled
// again (the lock holder preempted and another goroutine freeing on its P,
// or the lock holder moved to another P): the inner drain must not
// overwrite the outer's chunks still to free. OnFree, called within the
// outer's first free, stands in for that goroutine: it frees two blocks
// into this P's front.
func TestFrontDrainOwnReentered(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1)) // one P: one front, the drains' and the frees'
	const n = 2000
	var onFree func()
	h, _ := newHeapWith(t, Options{everyFree: true, OnFree: func(uintptr) {
		if f := onFree; f != nil {
			onFree = nil
			f()
		}
	}})
	makeFronts(h)
	full := allocFilled(t, h, fastCount, n) // to fill the fast bin of A's size: A is merged, not held
	bs := allocFilled(t, h, 1, n)           // A
	big := allocFilled(t, h, 1, 70000)      // L: A's free merges with it past 64 KiB
	bs = append(bs, allocFilled(t, h, 4, n)...)
	a, b, x1, x2, guard := bs[0], bs[1], bs[2], bs[3], bs[4]
	freeBlock(t, h, big[0]) // settles: the fast bins are emptied, none held yet
	for _, f := range full {
		freeBlock(t, h, f) // into the fast bin
	}
	require.Equal(t, uint8(fastCount), h.fastN[fastIndex(chunkSize(n))])
	freeFast(t, h, a)
	freeFast(t, h, b)
	onFree = func() { // within A's free by the drain: the front fills again
		freeFast(t, h, x1)
		freeFast(t, h, x2)
	}
	p, err := h.Alloc(3 << 20) // no room: drains this P's front first
	require.NoError(t, err)
	require.Nil(t, onFree, "A freed by the drain")
	walk(t, h)
	require.True(t, intact(h, guard))
	st := h.Stats()
	require.Equal(t, uintptr(2), st.LiveChunks, "the guard and the large block")
	require.Equal(t, uintptr(n+3<<20), st.LiveBytes)
	freeBlock(t, h, block{p: uintptr(p)})
	freeBlock(t, h, guard)
	h.Trim()
	walk(t, h)
	st = h.Stats()
	require.Zero(t, st.LiveChunks)
	require.Zero(t, st.Cached)
}

// TestFrontDrainDamagedNext: the chunk after a block a front holds is a
// free chunk, damaged while the front held the block (a write after its
// free, past its end). The drain cannot merge the block with it, and the
// heap's fast bin of its size is full: the block is reported and lost, as
// one whose own header was overwritten, never recorded in use again. Its
// free succeeded, so it is not counted live, and a second free of it
// fails.
func TestFrontDrainDamagedNext(t *testing.T) {
	const n = 2000
	s := chunkSize(n)
	var got []uintptr
	h := reportsTo(t, &got)
	makeFronts(h)
	full := allocFilled(t, h, fastCount, n) // to fill the fast bin of B's size
	b := allocFilled(t, h, 1, n)[0]
	c := allocFilled(t, h, 1, 5000)[0] // not a fast size: merged when freed
	guard := allocFilled(t, h, 1, n)[0]
	freeBlock(t, h, c)
	for _, f := range full {
		freeBlock(t, h, f)
	}
	require.Equal(t, uint8(fastCount), h.fastN[fastIndex(s)])
	freeFast(t, h, b)
	*wordAt(h, b.p, s-overhead) += granule // C's header: another size
	h.Trim()
	require.NotEmpty(t, got, "reported")
	st := h.Stats()
	assert.Zero(t, st.Cached)
	assert.Equal(t, uintptr(1), st.LiveChunks, "the guard")
	assert.Equal(t, uintptr(n), st.LiveBytes)
	ar := h.region.Lookup(b.p)
	makeFronts(h) // Trim took them out
	assert.False(t, h.FreeFast(ar, b.p), "B freed already")
	_, err := h.Free(ar, b.p)
	assert.Error(t, err, "B freed already")
	assert.True(t, intact(h, guard))
}

// TestFrontSampleMarked: the block a front hands out as the heap profile's
// sample is marked sampled before AllocFast returns, within its pinned
// section: the caller's fast path runs outside the allocator's gate, so
// once unpinned it may find the region unmapped by Close, and must not
// write the header then. Its free goes through the lock, to OnFree.
func TestFrontSampleMarked(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1)) // one P: the front freed into is the one allocated from
	var freed []uintptr
	h, _ := newHeapWith(t, Options{OnFree: func(p uintptr) { freed = append(freed, p) }})
	makeFronts(h)
	h.fronts[0].Load().sample = 0 // the next block it hands out is the sample
	b := allocFilled(t, h, 2, 1500)[0]
	freeFast(t, h, b)
	p, sampled := h.AllocFast(1500, 0)
	require.Equal(t, b.p, uintptr(p))
	require.True(t, sampled)
	assert.False(t, h.FreeFast(h.region.Lookup(b.p), b.p), "a sample into a front")
	freeBlock(t, h, b)
	assert.Equal(t, []uintptr{b.p}, freed, "freed through the lock, to OnFree")
	walk(t, h)
}

// TestFrontRecordMetaBytes: the segments of a run's record count in
// MetaBytes while the run is the heap's, and no longer once it is given
// back to the region.
func TestFrontRecordMetaBytes(t *testing.T) {
	h := frontHeap(t)
	before := h.Stats().MetaBytes
	bs := allocFilled(t, h, 2, 1500)
	st := h.Stats()
	require.Equal(t, uintptr(1), st.Runs)
	assert.Greater(t, st.MetaBytes, before+unsafe.Sizeof(flSeg{}), "the bitmap and a segment")
	for _, b := range bs {
		freeBlock(t, h, b)
	}
	h.Trim()      // the empty run, the spare, goes back
	makeFronts(h) // Trim took them out, with their share of MetaBytes
	st = h.Stats()
	require.Zero(t, st.Runs)
	assert.Equal(t, before, st.MetaBytes)
}

// TestFrontDrainsRacing: Trim, Idle and Stats run over and over, and
// GOMAXPROCS changes, while workers allocate and free medium blocks
// through the fronts and the lock: every drain takes fronts in use, and a
// P may find no front or an orphan one. No block changes, and the counts
// are exact once the workers are done.
func TestFrontDrainsRacing(t *testing.T) {
	h := frontHeap(t)
	ops := 4000
	if testing.Short() {
		ops = 1000
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			var mine []block
			for i := range ops {
				if rng.IntN(2) == 0 || len(mine) == 0 {
					b, ok := frontAlloc(t, h, uintptr(1025+rng.IntN(1500)), byte(w*7+i))
					if !ok {
						return
					}
					mine = append(mine, b)
					continue
				}
				j := rng.IntN(len(mine))
				b := mine[j]
				mine[j] = mine[len(mine)-1]
				mine = mine[:len(mine)-1]
				if !frontFree(t, h, b, true) {
					return
				}
			}
			for _, b := range mine {
				if !frontFree(t, h, b, true) {
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		procs := runtime.GOMAXPROCS(0)
		defer runtime.GOMAXPROCS(procs)
		for k := 0; !stop.Load(); k++ {
			runtime.GOMAXPROCS(1 + k%(procs+2))
			h.Trim()
			h.Idle()
			h.Stats()
		}
	}()
	wg.Wait()
	stop.Store(true)
	<-done
	walk(t, h)
	st := h.Stats()
	require.Zero(t, st.LiveChunks)
	require.Zero(t, st.LiveBytes)
	h.Trim()
	require.Zero(t, h.Stats().Cached)
	walk(t, h)
}

// TestFrontNotMadeAfterClose: a front a call made when the heap was
// open, and installs once Close has drained the fronts, is taken out
// again: after Close no front exists, so no Free without the lock reads
// the region.
func TestFrontNotMadeAfterClose(t *testing.T) {
	h, _ := newHeap(t)
	h.installFront(&front{})
	installed := false
	for i := range h.fronts {
		installed = installed || h.fronts[i].Load() != nil
	}
	require.True(t, installed, "installed while open")
	h.Close()
	h.installFront(&front{}) // made before Close, installed after it drained
	h.makeFront()
	for i := range h.fronts {
		require.Nil(t, h.fronts[i].Load(), "a front after Close")
	}
}

// TestFrontLook: with none of a request's own chunk size, a front hands
// out a chunk up to frontLook granules larger (the smallest it holds), its
// slack the block's; a chunk larger than that stays in the front and the
// request goes to the lock. The counts stay exact throughout.
func TestFrontLook(t *testing.T) {
	for _, extra := range []uintptr{1, frontLook, frontLook + 1} {
		h := frontHeap(t)
		const n = 1500
		big := n + extra*granule
		bs := allocFilled(t, h, 3, big)
		freeFast(t, h, bs[1])
		p, _ := h.AllocFast(n, 0)
		if p == nil && h.Stats().Cached == 0 {
			t.Skip("the goroutine moved to another P between the calls")
		}
		if extra > frontLook {
			assert.Nil(t, p, "a chunk %d granules larger is not taken", extra)
			assert.Equal(t, chunkSize(big), h.Stats().Cached)
			walk(t, h)
			continue
		}
		require.NotNil(t, p, "a chunk %d granules larger is taken", extra)
		assert.Equal(t, bs[1].p, uintptr(p))
		size, req, err := h.Usable(h.region.Lookup(bs[1].p), bs[1].p)
		require.NoError(t, err)
		assert.Equal(t, uintptr(n), req)
		assert.Equal(t, BlockSize(big), size, "the chunk's whole block")
		st := h.Stats()
		assert.Zero(t, st.Cached)
		assert.Equal(t, uintptr(2*big+n), st.LiveBytes)
		walk(t, h)
		b := block{p: uintptr(p), n: size, tag: 9}
		fill(h, b) // the whole usable size is the caller's
		require.True(t, intact(h, bs[0]) && intact(h, bs[2]), "neighbours untouched")
		freeFast(t, h, b) // back into the bin of its chunk's own size
		assert.Equal(t, chunkSize(big), h.Stats().Cached)
		h.Trim()
		assert.Equal(t, uintptr(2*big), h.Stats().LiveBytes)
		walk(t, h)
	}
}

// TestFrontedSizes: fronted's test of a chunk size is fastIndex's, for
// every multiple of 16 a header can hold up to past the fast bins.
func TestFrontedSizes(t *testing.T) {
	h, _ := newHeap(t)
	require.NotNil(t, h.fronts)
	r := &run{}
	for s := uintptr(0); s <= 2*fastLimit; s += granule {
		require.Equal(t, fastIndex(s) >= 0, h.fronted(r, 0, s), "chunk of %d bytes", s)
	}
}
