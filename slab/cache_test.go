package slab

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/percpu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cached returns the free blocks every P's cache holds, by class.
func cached(h *Pool) [NumClasses]uint64 {
	var out [NumClasses]uint64
	for i := range h.caches {
		percpu.Pin() // as every holder of a cache's lock
		if pc := h.caches[i].Load(); pc != nil && pc.Acquire() {
			for c := range pc.bins {
				out[c] += uint64(pc.bins[c].n)
			}
			pc.Release()
		}
		percpu.Unpin()
	}
	return out
}

// warmBins gives every P a cache whose bins have grown to their full
// capacity, as a class in steady use has them (a new cache's bins start
// cold: grow).
func warmBins(h *Pool) {
	for i := range h.caches {
		pc := newPcache(h)
		for c := range pc.bins {
			pc.bins[c].cap = h.classes[c].binMax
			pc.misses[c] = coldMisses
		}
		h.caches[i].Store(pc)
	}
}

// freeFast frees p the way the root package does: FreeFast, else Free.
func (h *Pool) freeFast(t *testing.T, p unsafe.Pointer) {
	t.Helper()
	run := h.region.Lookup(uintptr(p))
	require.NotNil(t, run)
	require.Equal(t, arena.KindSlab, run.Kind())
	if !h.FreeFast(run, p) {
		_, err := h.Free(run, uintptr(p))
		require.NoError(t, err)
	}
}

func TestCacheRoundTrip(t *testing.T) {
	alloctest.RequireChecks(t)
	h, r := newPool(t, Options{})
	warmBins(h)
	c := SizeClass(64)
	p := h.AllocFast(uint8(c), 64)
	assert.Nil(t, p, "a new pool's caches are empty")
	p, zero, sampled, err := h.Alloc(c, 64)
	require.NoError(t, err)
	assert.True(t, zero, "the first block of a fresh slab")
	assert.False(t, sampled, "no sampling unless asked for")
	st := h.Stats()[c]
	assert.EqualValues(t, 1, st.LiveBlocks)
	assert.EqualValues(t, 64, st.LiveBytes)
	assert.EqualValues(t, h.classes[c].batch-1, cached(h)[c], "the rest of the batch waits in this P's cache")

	q := h.AllocFast(uint8(c), 50)
	require.NotNil(t, q, "served from the cache")
	assert.NotEqual(t, p, q)
	assert.EqualValues(t, 114, h.Stats()[c].LiveBytes)

	run := r.Lookup(uintptr(q))
	assert.True(t, h.FreeFast(run, q))
	assert.False(t, h.FreeFast(run, q), "a second free is not for the fast path")
	_, err = h.Free(run, uintptr(q))
	assert.ErrorIs(t, err, errs.ErrDoubleFree)
	_, _, err = h.Usable(run, uintptr(q))
	assert.ErrorIs(t, err, errs.ErrDoubleFree, "a cached block is not live")
	again := h.AllocFast(uint8(c), 64)
	assert.Equal(t, q, again, "the cache is a stack: the last freed comes back first")

	h.freeFast(t, again)
	h.freeFast(t, p)
	assert.Zero(t, h.Stats()[c].LiveBlocks)
	assert.NotZero(t, r.Counters().SlabBytes, "cached blocks keep their slab")
	h.Trim()
	assert.Zero(t, r.Counters().SlabBytes, "Trim empties the caches, and the slab goes back")
	assert.Zero(t, cached(h)[c])
}

// A class a P uses once parks nothing: its bin is cold, a refill takes one
// block and the free sends it straight back, so its slab empties.
func TestColdBinParksNothing(t *testing.T) {
	h, r := newPool(t, Options{})
	for _, size := range []uintptr{100, 1000, 5000, 20000} {
		c := SizeClass(size)
		p, _, _, err := h.Alloc(c, size)
		require.NoError(t, err)
		assert.Zero(t, cached(h)[c], "size %d: a cold refill takes one block", size)
		h.freeFast(t, p)
		assert.Zero(t, cached(h)[c], "size %d: a cold bin parks nothing", size)
		st := h.Stats()[c]
		assert.Zero(t, st.LiveBlocks)
		assert.Zero(t, st.CachedBlocks)
	}
	assert.EqualValues(t, keptSlabBytes(h), r.Counters().SlabBytes, "every slab but the kept empty ones went back")
}

// keptSlabBytes returns the bytes of the classes' kept empty slabs.
func keptSlabBytes(h *Pool) uint64 {
	var n uint64
	for _, st := range h.Stats() {
		n += st.EmptySlabBytes
	}
	return n
}

// A class in steady use grows its bin to binCap within a few misses, and
// then refills a whole batch at a time, as before bins started cold.
func TestBinGrowsWithDemand(t *testing.T) {
	h, _ := newPool(t, Options{})
	c := SizeClass(64)
	cl := &h.classes[c]
	var ps []unsafe.Pointer
	for round := 0; round < 8; round++ {
		for range 4 * int(cl.binMax) {
			p, _, _, err := h.Alloc(c, 64)
			require.NoError(t, err)
			ps = append(ps, p)
		}
		for _, p := range ps {
			h.freeFast(t, p)
		}
		ps = ps[:0]
	}
	var caps []int32
	for i := range h.caches {
		percpu.Pin()
		if pc := h.caches[i].Load(); pc != nil && pc.Acquire() {
			caps = append(caps, pc.bins[c].cap)
			pc.Release()
		}
		percpu.Unpin()
	}
	require.NotEmpty(t, caps)
	assert.Contains(t, caps, cl.binMax, "the busy bin grew to binCap")
	for _, k := range caps {
		assert.LessOrEqual(t, k, cl.binMax)
	}
	assert.LessOrEqual(t, cached(h)[c], uint64(len(caps))*uint64(cl.binMax))
	assert.NotZero(t, cached(h)[c], "a warm bin parks freed blocks")
}

func TestCacheFlushesWhenFull(t *testing.T) {
	h, r := newPool(t, Options{})
	c := SizeClass(1000)
	cl := &h.classes[c]
	var ps []unsafe.Pointer
	for range 3 * cl.batch {
		p, _, _, err := h.Alloc(c, 1000)
		require.NoError(t, err)
		ps = append(ps, p)
	}
	for _, p := range ps {
		h.freeFast(t, p)
	}
	st := h.Stats()[c]
	assert.Zero(t, st.LiveBlocks)
	assert.LessOrEqual(t, cached(h)[c], uint64(2*cl.batch), "a bin never holds more than its capacity")
	// the rest went back to the slabs, on their free lists
	var onLists uint32
	for s := cl.partial; s != nil; s = s.next {
		onLists += s.nfree
	}
	if cl.empty != nil {
		onLists += cl.empty.nfree
	}
	assert.NotZero(t, onLists)
	h.Trim()
	assert.Zero(t, r.Counters().SlabBytes)
}

func TestSamplingMarksAndReports(t *testing.T) {
	alloctest.RequireChecks(t)
	// One P: the goroutine moved to another P between Alloc and Refill
	// would refill that P's bin with a new batch (seen on a loaded CI
	// machine: a zero block, 34 cached for 30).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var freed []uintptr
	var mu sync.Mutex
	h, r := newPool(t, Options{ProfileRate: 1, OnSampledFree: func(addr uintptr) { mu.Lock(); freed = append(freed, addr); mu.Unlock() }})
	warmBins(h)
	c := SizeClass(100)
	p, _, sampled, err := h.Alloc(c, 100)
	require.NoError(t, err)
	assert.True(t, sampled, "rate 1 samples every block")
	assert.Nil(t, h.AllocFast(uint8(c), 90), "the fast path leaves the sample to Refill")
	assert.EqualValues(t, h.classes[c].batch-1, cached(h)[c], "and takes nothing from the bin")
	q, zero, s2, err := h.Refill(c, 90)
	require.NoError(t, err)
	require.NotNil(t, q)
	assert.True(t, s2)
	assert.False(t, zero, "a cached block is not known zero")
	assert.EqualValues(t, h.classes[c].batch-2, cached(h)[c], "Refill popped the sample from the bin, no new batch")
	_, req, err := h.Usable(r.Lookup(uintptr(q)), uintptr(q))
	require.NoError(t, err)
	assert.EqualValues(t, 90, req, "the sampled bit does not change the requested size")

	run := r.Lookup(uintptr(p))
	assert.False(t, h.FreeFast(run, p), "sampled blocks are left to Free")
	n, err := h.Free(run, uintptr(p))
	require.NoError(t, err)
	assert.EqualValues(t, 100, n)
	h.freeFast(t, q)
	assert.ElementsMatch(t, []uintptr{uintptr(p), uintptr(q)}, freed)
	assert.Zero(t, h.Stats()[c].LiveBytes)
}

func TestSamplingOffNeverSamples(t *testing.T) {
	h, _ := newPool(t, Options{})
	for range 10000 {
		p, _, sampled, err := h.Alloc(0, 16)
		require.NoError(t, err)
		require.False(t, sampled)
		h.freeFast(t, p)
	}
}

// Many goroutines through the caches, blocks handed from one to another:
// every block intact, none handed out twice, the counters back to zero.
func TestCacheConcurrent(t *testing.T) {
	h, r := newPool(t, Options{})
	var wg sync.WaitGroup
	handoff := make(chan []byte, 128)
	var mu sync.Mutex
	live := map[uintptr]bool{}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 3000 {
				n := uintptr(16 + (i*131+g*17)%2000)
				c := SizeClass(n)
				p := h.AllocFast(uint8(c), n)
				if p == nil {
					var err error
					if p, _, _, err = h.Alloc(c, n); err != nil {
						t.Error(err)
						return
					}
				}
				mu.Lock()
				if live[uintptr(p)] {
					t.Errorf("%#x handed out twice", p)
				}
				live[uintptr(p)] = true
				mu.Unlock()
				b := block(p, n)
				fillBlock(b, uintptr(p))
				select {
				case handoff <- b:
				default:
				}
				var victim []byte
				select {
				case victim = <-handoff:
				default:
					victim = b
				}
				if !intact(victim, uintptr(unsafe.Pointer(&victim[0]))) {
					t.Errorf("block %p damaged", &victim[0])
				}
				mu.Lock()
				delete(live, uintptr(unsafe.Pointer(&victim[0])))
				mu.Unlock()
				h.freeFast(t, unsafe.Pointer(&victim[0]))
			}
		}()
	}
	wg.Wait()
	close(handoff)
	for b := range handoff {
		h.freeFast(t, unsafe.Pointer(&b[0]))
	}
	var blocks, bytes uint64
	for _, st := range h.Stats() {
		blocks += st.LiveBlocks
		bytes += st.LiveBytes
	}
	assert.Zero(t, blocks)
	assert.Zero(t, bytes)
	h.Trim()
	assert.Zero(t, r.Counters().SlabBytes)
}

// Every slab byte is a live, cached or free block, the kept empty slab, or
// a slab's tail: exactly, class by class.
func TestStatsAccountForEverySlabByte(t *testing.T) {
	h, _ := newPool(t, Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	var live []unsafe.Pointer
	check := func(when string) {
		t.Helper()
		for c, st := range h.Stats() {
			got := uint64(st.Size)*(st.LiveBlocks+st.CachedBlocks+st.FreeBlocks) + st.EmptySlabBytes + st.TailBytes
			require.Equal(t, st.SlabBytes, got, "%s: class %d (%d bytes): %+v", when, c, st.Size, st)
		}
	}
	for round := range 4 {
		for range 3000 {
			n := uintptr(16 + rng.IntN(4000))
			p, _, _, err := h.Alloc(SizeClass(n), n)
			require.NoError(t, err)
			live = append(live, p)
		}
		check("after allocating")
		rng.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
		keep := len(live) / (round + 2)
		for _, p := range live[keep:] {
			h.freeFast(t, p)
		}
		live = live[:keep]
		check("after freeing")
	}
	for _, p := range live {
		h.freeFast(t, p)
	}
	check("all freed")
	var empty uint64
	for _, st := range h.Stats() {
		assert.Zero(t, st.LiveBlocks)
		empty += st.EmptySlabBytes
	}
	assert.NotZero(t, empty, "classes keep an empty slab")
	h.Trim()
	check("trimmed")
	for _, st := range h.Stats() {
		assert.Zero(t, st.SlabBytes)
	}
}

// The idle pass: a cache that has not refilled or flushed since the last
// pass is retired; a kept empty slab unchanged over two passes goes back.
func TestFlushIdleAndReleaseIdle(t *testing.T) {
	h, r := newPool(t, Options{})
	c := SizeClass(1000)
	var ps []unsafe.Pointer
	for range 200 {
		p, _, _, err := h.Alloc(c, 1000)
		require.NoError(t, err)
		ps = append(ps, p)
	}
	for _, p := range ps {
		h.freeFast(t, p)
	}
	require.NotZero(t, cached(h)[c])
	assert.Zero(t, h.FlushIdle(), "the first pass notes the refills and flushes since the cache was made")
	assert.NotZero(t, cached(h)[c])
	assert.GreaterOrEqual(t, h.FlushIdle(), 1, "the second finds the cache idle")
	assert.Zero(t, cached(h)[c], "its blocks went back to the slabs")
	assert.Zero(t, h.FlushIdle(), "nothing left to flush")
	assert.NotZero(t, h.Stats()[c].EmptySlabBytes)
	assert.Zero(t, h.ReleaseIdle(), "the first pass marks the empty slab")
	assert.Equal(t, 1, h.ReleaseIdle(), "the second releases it")
	assert.Zero(t, r.Counters().SlabBytes)
}

// The slab kept empty is the lowest, so it never pins the top.
func TestKeptEmptySlabIsTheLowest(t *testing.T) {
	h, _ := newPool(t, Options{})
	c := SizeClass(2048)
	cl := &h.classes[c]
	var ps []unsafe.Pointer
	for range 4 * int(cl.nelems) {
		p, _, _, _, err := h.AllocDirect(c, 2048)
		require.NoError(t, err)
		ps = append(ps, p)
	}
	for _, p := range ps {
		_, err := h.FreeDirect(h.region.Lookup(uintptr(p)), uintptr(p))
		require.NoError(t, err)
	}
	require.NotNil(t, cl.empty)
	assert.Equal(t, uintptr(ps[0]), cl.empty.start, "the first slab, the lowest")
}
