package slab

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"unsafe"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/brkmap/alloc/internal/budget"
	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/sys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// --- the generated table ---

func TestSizeClassIsTheSmallestThatFits(t *testing.T) {
	for n := uintptr(0); n <= MaxSize; n++ {
		c := SizeClass(n)
		require.True(t, c >= 0 && c < NumClasses, "n=%d: class %d", n, c)
		require.EqualValues(t, c, ClassOf(n), "n=%d: the fast path's one-load table agrees", n)
		require.GreaterOrEqual(t, ClassSize(c), n, "n=%d: class %d too small", n, c)
		if c > 0 {
			require.Less(t, ClassSize(c-1), n, "n=%d: class %d is not the smallest that fits", n, c)
		}
	}
}

func TestClassSizes(t *testing.T) {
	require.Len(t, classSize, NumClasses)
	assert.Equal(t, uint32(16), classSize[0])
	assert.Equal(t, uint32(MaxSize), classSize[NumClasses-1])
	for i, s := range classSize {
		assert.Zero(t, s%16, "class %d: %d bytes is not a multiple of 16", i, s)
		if i > 0 {
			assert.Greater(t, s, classSize[i-1], "class %d: sizes must strictly increase", i)
		}
		assert.Zero(t, classSlab[i]%4096, "class %d: slab of %d bytes is not whole pages", i, classSlab[i])
		assert.GreaterOrEqual(t, classSlab[i]/s, uint32(4), "class %d: fewer than 4 blocks a slab", i)
	}
}

// TestDivMagic checks off*magic>>divShift == off/size for every offset a
// slab of any class can have on this machine.
func TestDivMagic(t *testing.T) {
	largest := uintptr(slices.Max(classSlab[:]))
	largest = (largest + sys.PageSize - 1) &^ (sys.PageSize - 1)
	for i := range NumClasses {
		size, magic := uint64(classSize[i]), classDivMagic[i]
		for off := uint64(0); off < uint64(largest); off++ {
			if off*magic>>divShift != off/size {
				t.Fatalf("class %d (%d bytes): magic %d gives %d for offset %d, want %d",
					i, size, magic, off*magic>>divShift, off, off/size)
			}
		}
	}
}

// TestWorstCaseWaste recomputes each class's worst case from classSize and
// classSlab: the smallest request the class serves (16 more than the class
// below, requests being 16-byte aligned) in every block, plus the slab's
// unusable tail, as a fraction of the slab.
func TestWorstCaseWaste(t *testing.T) {
	prev := uint32(0)
	worst := 0.0
	for i := range NumClasses {
		size, slab := classSize[i], classSlab[i]
		objects := slab / size
		tail := slab - objects*size
		smallest := prev + 16
		waste := float64((size-smallest)*objects+tail) / float64(slab)
		assert.LessOrEqual(t, waste, 0.125, "class %d (%d bytes, %d-byte slab)", i, size, slab)
		worst = max(worst, waste)
		// at run time the slab is rounded up to the page size: still within bounds
		rounded := (uintptr(slab) + sys.PageSize - 1) &^ (sys.PageSize - 1)
		n := uint32(rounded) / size
		rtail := uint32(rounded) - n*size
		assert.LessOrEqual(t, float64((size-smallest)*n+rtail)/float64(rounded), 0.125,
			"class %d with %d-byte pages", i, sys.PageSize)
		prev = size
	}
	t.Logf("worst-case waste over all classes: %.2f%%", 100*worst)
}

func TestAlignedClass(t *testing.T) {
	sizes := []uintptr{0, 1, 16, 17, 48, 100, 255, 256, 1000, 1025, 3000, 4096, 5000, 20000, MaxSize}
	for _, n := range sizes {
		for align := uintptr(16); align <= sys.PageSize; align *= 2 {
			c := AlignedClass(n, align)
			// the expected answer, by a plain search
			want := -1
			for k := range NumClasses {
				if ClassSize(k) >= n && ClassSize(k)%align == 0 {
					want = k
					break
				}
			}
			assert.Equal(t, want, c, "AlignedClass(%d, %d)", n, align)
		}
	}
	assert.Equal(t, -1, AlignedClass(MaxSize+1, 16))
	assert.Equal(t, SizeClass(100), AlignedClass(100, 16), "16 is every class's alignment")
	assert.Equal(t, 7, AlignedClass(100, 128)) // 128-byte class
}

// TestGeneratedFileIsUpToDate regenerates the table and compares it with
// the committed sizeclasses.go.
func TestGeneratedFileIsUpToDate(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	if testing.Short() {
		t.Skip("runs the generator")
	}
	out := filepath.Join(t.TempDir(), "sizeclasses.go")
	cmd := exec.Command(goBin, "run", "mksizeclasses.go", "-o", out)
	msg, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", msg)
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	have, err := os.ReadFile("sizeclasses.go")
	require.NoError(t, err)
	assert.True(t, bytes.Equal(have, got), "sizeclasses.go is stale: run go generate ./slab")
}

// --- the pool ---

var page = sys.PageSize

func newPool(t *testing.T, opts Options) (*Pool, *arena.Region) {
	t.Helper()
	r, err := arena.New(arena.Config{Reserve: 4 << 30, TopPad: 128 << 10, TrimThreshold: 128 << 10,
		OS: &sys.OS{}, Budget: budget.New(0)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return New(r, opts), r
}

func block(p unsafe.Pointer, n uintptr) []byte { return unsafe.Slice((*byte)(p), n) }

// fillBlock and intact are the shared pattern (internal/alloctest) with
// the seeds these tests use.
func fillBlock(b []byte, seed uintptr) { alloctest.Fill(b, uint32(seed)) }

func intact(b []byte, seed uintptr) bool { return alloctest.Intact(b, uint32(seed)) < 0 }

// allocD and FreeDirect are the paths without the P caches: these tests are
// about the slabs themselves (cache_test.go tests the caches in front).
func (h *Pool) allocD(c int, n uintptr) (unsafe.Pointer, bool, error) {
	p, zero, _, _, err := h.AllocDirect(c, n)
	return p, zero, err
}

// free frees the block at p through its run, as the root package does.
func (h *Pool) free(t *testing.T, p unsafe.Pointer) uintptr {
	t.Helper()
	run := h.region.Lookup(uintptr(p))
	require.NotNil(t, run)
	require.Equal(t, arena.KindSlab, run.Kind())
	n, err := h.FreeDirect(run, uintptr(p))
	require.NoError(t, err)
	return n
}

// fullSlabs makes every class's slabs their largest from the first (no
// growth with demand), for the tests that count blocks per slab.
func fullSlabs(h *Pool) {
	for i := range h.classes {
		h.classes[i].minPages = h.classes[i].slabPages
	}
}

func TestAllocFreeEveryClass(t *testing.T) {
	for c := range NumClasses {
		h, r := newPool(t, Options{}) // fresh pages for every class
		fullSlabs(h)
		cl := &h.classes[c]
		size := cl.size
		count := int(cl.nelems) + 1 // a second slab
		blocks := make([]unsafe.Pointer, count)
		seen := map[uintptr]bool{}
		for i := range blocks {
			req := size - uintptr(i%2)*7 // the class's size, or a little less
			p, zero, err := h.allocD(c, req)
			require.NoError(t, err, "class %d", c)
			a := uintptr(p)
			require.False(t, seen[a], "class %d: %#x handed out twice", c, a)
			seen[a] = true
			require.Zero(t, a%16)
			run := r.Lookup(a)
			require.NotNil(t, run)
			require.Equal(t, arena.KindSlab, run.Kind())
			require.Zero(t, (a-run.Start())%size, "class %d: not a block start", c)
			require.LessOrEqual(t, a+size, run.Start()+run.Pages()*page, "class %d: block past its slab", c)
			assert.True(t, zero, "class %d: a block of a new slab is fresh", c)
			b := block(p, size)
			if zero {
				require.Equal(t, -1, slices.IndexFunc(b, func(x byte) bool { return x != 0 }),
					"class %d: a block reported zero is not", c)
			}
			fillBlock(b, uintptr(i))
			blocks[i] = p
		}
		st := h.Stats()[c]
		assert.Equal(t, uint64(count), st.LiveBlocks)
		assert.Equal(t, uint64(2), st.Slabs)
		for i, p := range blocks {
			require.True(t, intact(block(p, size), uintptr(i)), "class %d: block %d overwritten", c, i)
			size2, req, err := h.Usable(r.Lookup(uintptr(p)), uintptr(p))
			require.NoError(t, err)
			assert.Equal(t, size, size2)
			assert.Equal(t, size-uintptr(i%2)*7, req)
			assert.Equal(t, req, h.free(t, p), "Free returns the requested size")
		}
		st = h.Stats()[c]
		assert.Zero(t, st.LiveBlocks)
		assert.Zero(t, st.LiveBytes)
	}
}

func TestReusedBlockIsNotReportedZero(t *testing.T) {
	h, _ := newPool(t, Options{})
	c := SizeClass(64)
	a, _, err := h.allocD(c, 64)
	require.NoError(t, err)
	b, _, err := h.allocD(c, 64) // keeps the slab from going back
	require.NoError(t, err)
	h.free(t, a)
	again, zero, err := h.allocD(c, 64)
	require.NoError(t, err)
	assert.Equal(t, a, again, "the freed block is reused first")
	assert.False(t, zero)
	_ = b
}

func TestBadFreeChangesNothing(t *testing.T) {
	h, r := newPool(t, Options{})
	c := SizeClass(100) // 112-byte blocks
	size := ClassSize(c)
	var ps []unsafe.Pointer
	for i := range 4 {
		p, _, err := h.allocD(c, 100)
		require.NoError(t, err)
		fillBlock(block(p, size), uintptr(i))
		ps = append(ps, p)
	}
	h.free(t, ps[1])
	run := r.Lookup(uintptr(ps[0]))
	before := h.Stats()
	snapshot := func() []byte { return bytes.Clone(block(ps[0], 4*size)) }
	mem := snapshot()

	tests := []struct {
		name string
		addr uintptr
		want error
	}{
		{"double free", uintptr(ps[1]), errs.ErrDoubleFree},
		{"interior pointer", uintptr(ps[2]) + 16, errs.ErrInvalidFree},
		{"one byte in", uintptr(ps[2]) + 1, errs.ErrInvalidFree},
		{"past the last block", run.Start() + uintptr(h.classes[c].nelems)*size, errs.ErrInvalidFree},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.FreeDirect(run, tt.addr)
			assert.ErrorIs(t, err, tt.want)
			_, _, err = h.Usable(run, tt.addr)
			assert.ErrorIs(t, err, tt.want)
			_, _, err = h.Resize(run, tt.addr, 50)
			assert.ErrorIs(t, err, tt.want)
			assert.Equal(t, before, h.Stats())
			assert.Equal(t, mem, snapshot(), "memory changed")
		})
	}
	// the free list is intact: the freed block comes back, then fresh ones
	p, _, err := h.allocD(c, 100)
	require.NoError(t, err)
	assert.Equal(t, ps[1], p)
	q, _, err := h.allocD(c, 100)
	require.NoError(t, err)
	assert.Equal(t, uintptr(ps[3])+size, uintptr(q))
	for i, p := range ps {
		if i != 1 {
			assert.True(t, intact(block(p, size), uintptr(i)))
		}
	}
}

func TestFreeInAReleasedSlab(t *testing.T) {
	h, r := newPool(t, Options{})
	c := SizeClass(256)
	p, _, err := h.allocD(c, 256)
	require.NoError(t, err)
	run := r.Lookup(uintptr(p))
	h.free(t, p)
	h.Trim() // the cached empty slab goes back to the arena
	require.Zero(t, h.Stats()[c].Slabs)
	_, err = h.FreeDirect(run, uintptr(p))
	assert.ErrorIs(t, err, errs.ErrDoubleFree)
	_, _, live := r.Used(run)
	assert.False(t, live, "the slab's run went back to the arena")
	assert.Equal(t, uint64(0), h.Stats()[c].LiveBlocks)
}

func TestEmptySlabsGoBack(t *testing.T) {
	h, r := newPool(t, Options{})
	c := SizeClass(1000)
	cl := &h.classes[c]
	// Slabs of one page: a class keeps one such slab when it empties
	// (keepSlabMax).
	cl.slabPages, cl.minPages = 1, 1
	cl.nelems = uint32(page / cl.size)
	slabBytes := cl.slabPages * page
	n := int(cl.nelems)
	var first, second []unsafe.Pointer
	for range n {
		p, _, err := h.allocD(c, 1000)
		require.NoError(t, err)
		first = append(first, p)
	}
	for range n {
		p, _, err := h.allocD(c, 1000)
		require.NoError(t, err)
		second = append(second, p)
	}
	require.Equal(t, 2*slabBytes, r.Counters().SlabBytes)

	for _, p := range first {
		h.free(t, p)
	}
	assert.Equal(t, 2*slabBytes, r.Counters().SlabBytes, "one empty slab is kept per class")
	assert.Equal(t, uint64(2), h.Stats()[c].Slabs)

	for _, p := range second {
		h.free(t, p)
	}
	assert.Equal(t, slabBytes, r.Counters().SlabBytes, "a second empty slab goes back to the arena")
	st := h.Stats()[c]
	assert.Equal(t, uint64(1), st.Slabs)
	assert.Equal(t, uint64(slabBytes), st.SlabBytes)

	// the cached slab serves the next allocation without the arena
	brk := r.Counters().Break
	p, _, err := h.allocD(c, 1000)
	require.NoError(t, err)
	assert.Equal(t, slabBytes, r.Counters().SlabBytes)
	assert.Equal(t, brk, r.Counters().Break)
	h.free(t, p)

	h.Trim()
	assert.Zero(t, r.Counters().SlabBytes, "Trim gives the cached slab back")
	assert.Zero(t, h.Stats()[c].Slabs)
}

// A slab bigger than keepSlabMax goes back to the arena as soon as it
// empties: its pages serve any class.
func TestBigEmptySlabNotKept(t *testing.T) {
	h, r := newPool(t, Options{})
	fullSlabs(h)
	c := SizeClass(1000)
	cl := &h.classes[c]
	require.Greater(t, cl.slabPages*page, uintptr(keepSlabMax))
	var ps []unsafe.Pointer
	for range int(cl.nelems) {
		p, _, err := h.allocD(c, 1000)
		require.NoError(t, err)
		ps = append(ps, p)
	}
	require.Equal(t, cl.slabPages*page, r.Counters().SlabBytes)
	for _, p := range ps {
		h.free(t, p)
	}
	assert.Zero(t, r.Counters().SlabBytes, "the empty slab went back")
	assert.Zero(t, h.Stats()[c].EmptySlabBytes)
}

// TestCorruptedFreeList damages the link in a free block and checks that
// the next Alloc reports it and never hands out anything but a free block
// of the slab.
func TestCorruptedFreeList(t *testing.T) {
	alloctest.RequireChecks(t)
	c := SizeClass(64)
	tests := []struct {
		name string
		link func(s *Slab, victim uint32) uint32 // the garbage, before the XOR
		raw  bool                                // written as is, not XORed with the key
	}{
		{"raw garbage", func(*Slab, uint32) uint32 { return 0xdeadbeef }, true},
		// A zero is the likeliest write after free (Calloc-style clearing,
		// a zeroed struct): only the per-slab key makes it a bad link
		// instead of a silent end of the list.
		{"raw zero", func(*Slab, uint32) uint32 { return 0 }, true},
		{"past the slab", func(s *Slab, _ uint32) uint32 { return s.nelems + 9 }, false},
		{"a live block", func(*Slab, uint32) uint32 { return 0 + 1 }, false},
		{"itself", func(_ *Slab, victim uint32) uint32 { return victim + 1 }, false},
		{"a block never handed out", func(s *Slab, _ uint32) uint32 { return s.bump + 3 + 1 }, false},
		{"the last block never handed out", func(s *Slab, _ uint32) uint32 { return s.nelems }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reports []string
			h, r := newPool(t, Options{OnCorruption: func(_, _ uintptr, msg string) { reports = append(reports, msg) }})
			size := ClassSize(c)
			live := map[uintptr]bool{}
			var ps []unsafe.Pointer
			for range 6 {
				p, _, err := h.allocD(c, 64)
				require.NoError(t, err)
				live[uintptr(p)] = true
				ps = append(ps, p)
			}
			run := r.Lookup(uintptr(ps[0]))
			s := slabOf(run)
			victim := ps[2]
			h.free(t, victim)
			delete(live, uintptr(victim))
			idx := uint32((uintptr(victim) - s.start) / size)
			link := tt.link(s, idx)
			if !tt.raw {
				link ^= s.key
			}
			*(*uint32)(victim) = link

			p, _, err := h.allocD(c, 64) // pops the victim, reads its link
			require.NoError(t, err)
			assert.Equal(t, victim, p, "the victim itself is a free block")
			live[uintptr(p)] = true
			if assert.Len(t, reports, 1, "the damaged link is reported") {
				assert.Contains(t, reports[0], "not a free block")
			}

			// Whatever the link said, nothing but free blocks of real slabs come out.
			for range 2 * s.nelems {
				p, _, err := h.allocD(c, 64)
				require.NoError(t, err)
				a := uintptr(p)
				require.False(t, live[a], "a live block %#x handed out again", a)
				got := r.Lookup(a)
				require.NotNil(t, got)
				require.Equal(t, arena.KindSlab, got.Kind())
				require.Zero(t, (a-got.Start())%size)
				require.Less(t, a, got.Start()+got.Pages()*page)
				live[a] = true
			}
			assert.Len(t, reports, 1)
		})
	}
}

func TestCorruptionPanicsByDefault(t *testing.T) {
	alloctest.RequireChecks(t)
	h, r := newPool(t, Options{})
	c := SizeClass(32)
	p, _, err := h.allocD(c, 32)
	require.NoError(t, err)
	q, _, err := h.allocD(c, 32)
	require.NoError(t, err)
	_ = q
	h.free(t, p)
	s := slabOf(r.Lookup(uintptr(p)))
	*(*uint32)(p) = (s.nelems + 100) ^ s.key
	assert.Panics(t, func() { _, _, _ = h.allocD(c, 32) })
}

func TestResizeInPlace(t *testing.T) {
	h, r := newPool(t, Options{})
	tests := []struct {
		class   int
		from, n uintptr
		ok      bool
	}{
		{SizeClass(64), 64, 64, true},
		{SizeClass(64), 64, 33, true},
		{SizeClass(64), 40, 63, true},
		{SizeClass(64), 64, 32, false}, // more than twice too big: move to a smaller class
		{SizeClass(64), 64, 65, false}, // does not fit
		{SizeClass(16), 16, 0, true},   // the smallest class never moves down
		{SizeClass(16), 1, 16, true},
		{SizeClass(16), 16, 17, false},
		{SizeClass(MaxSize), MaxSize, MaxSize/2 + 1, true},
		{SizeClass(MaxSize), MaxSize, MaxSize / 2, false},
	}
	for _, tt := range tests {
		p, _, err := h.allocD(tt.class, tt.from)
		require.NoError(t, err)
		run := r.Lookup(uintptr(p))
		before := h.Stats()[tt.class].LiveBytes
		ok, old, err := h.Resize(run, uintptr(p), tt.n)
		require.NoError(t, err)
		assert.Equal(t, tt.ok, ok, "class %d: %d -> %d", ClassSize(tt.class), tt.from, tt.n)
		assert.Equal(t, tt.from, old)
		_, req, err := h.Usable(run, uintptr(p))
		require.NoError(t, err)
		if tt.ok {
			assert.Equal(t, tt.n, req)
			assert.Equal(t, before-uint64(tt.from)+uint64(tt.n), h.Stats()[tt.class].LiveBytes)
		} else {
			assert.Equal(t, tt.from, req, "a refused resize changes nothing")
			assert.Equal(t, before, h.Stats()[tt.class].LiveBytes)
		}
		h.free(t, p)
	}
}

func TestStatsPerClass(t *testing.T) {
	h, _ := newPool(t, Options{})
	reqs := map[int][]uintptr{}
	for _, n := range []uintptr{1, 16, 17, 30, 100, 100, 100, 1000, 5000, 5000, MaxSize} {
		c := SizeClass(n)
		_, _, err := h.allocD(c, n)
		require.NoError(t, err)
		reqs[c] = append(reqs[c], n)
	}
	st := h.Stats()
	for c := range NumClasses {
		var bytes uint64
		for _, n := range reqs[c] {
			bytes += uint64(n)
		}
		assert.Equal(t, uint64(ClassSize(c)), st[c].Size)
		assert.Equal(t, uint64(len(reqs[c])), st[c].LiveBlocks, "class %d", c)
		assert.Equal(t, bytes, st[c].LiveBytes, "class %d", c)
		if len(reqs[c]) > 0 {
			assert.Equal(t, uint64(1), st[c].Slabs)
			assert.Equal(t, uint64(h.classes[c].minPages*page), st[c].SlabBytes, "a class's first slab is its smallest")
		} else {
			assert.Zero(t, st[c].Slabs)
		}
	}
}

func TestClosedHeap(t *testing.T) {
	h, r := newPool(t, Options{})
	p, _, err := h.allocD(0, 16)
	require.NoError(t, err)
	run := r.Lookup(uintptr(p))
	h.Close()
	_, _, err = h.allocD(0, 16)
	assert.ErrorIs(t, err, errs.ErrClosed)
	_, err = h.FreeDirect(run, uintptr(p))
	assert.ErrorIs(t, err, errs.ErrClosed)
	_, _, err = h.Usable(run, uintptr(p))
	assert.ErrorIs(t, err, errs.ErrClosed)
	h.Trim() // does nothing, does not panic
	assert.Equal(t, uint64(1), h.Stats()[0].LiveBlocks)
}

func TestConcurrentClasses(t *testing.T) {
	h, r := newPool(t, Options{})
	var wg sync.WaitGroup
	handoff := make(chan unsafe.Pointer, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []unsafe.Pointer
			for i := range 2000 {
				n := uintptr(16 + (g*131+i*17)%600)
				p, _, err := h.allocD(SizeClass(n), n)
				if !assert.NoError(t, err) {
					return
				}
				*(*uint64)(p) = uint64(uintptr(p))
				mine = append(mine, p)
				if len(mine) > 20 {
					q := mine[0]
					mine = mine[1:]
					select {
					case handoff <- q: // to be freed by another goroutine
					default:
						_, err := h.FreeDirect(r.Lookup(uintptr(q)), uintptr(q))
						assert.NoError(t, err)
					}
					select {
					case q2 := <-handoff: // perhaps another goroutine's block
						assert.Equal(t, uint64(uintptr(q2)), *(*uint64)(q2))
						_, err := h.FreeDirect(r.Lookup(uintptr(q2)), uintptr(q2))
						assert.NoError(t, err)
					default:
					}
				}
			}
			for _, p := range mine {
				_, err := h.FreeDirect(r.Lookup(uintptr(p)), uintptr(p))
				assert.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	close(handoff)
	for q := range handoff {
		_, err := h.FreeDirect(r.Lookup(uintptr(q)), uintptr(q))
		assert.NoError(t, err)
	}
	for c, st := range h.Stats() {
		assert.Zero(t, st.LiveBlocks, "class %d", c)
		assert.Zero(t, st.LiveBytes, "class %d", c)
	}
}

// A class's slabs grow with its demand: small while it holds few, up to
// the largest.
func TestSlabsGrowWithDemand(t *testing.T) {
	h, r := newPool(t, Options{})
	c := SizeClass(64)
	cl := &h.classes[c]
	require.Less(t, cl.minPages, cl.slabPages, "a class of small blocks starts below its largest slab")
	seen := map[*arena.Run]bool{}
	var sizes []uintptr
	for range 64 * int(cl.nelems) {
		p, _, err := h.allocD(c, 64)
		require.NoError(t, err)
		run := r.Lookup(uintptr(p))
		if !seen[run] {
			seen[run] = true
			sizes = append(sizes, run.Pages())
		}
	}
	assert.Equal(t, cl.minPages, sizes[0], "the first slab is the smallest")
	assert.Equal(t, cl.slabPages, sizes[len(sizes)-1], "the slabs grew to the largest")
	assert.True(t, slices.IsSorted(sizes), "and never shrink while the class grows: %v", sizes)
	st := h.Stats()[c]
	assert.Equal(t, st.SlabBytes, uint64(st.Size)*(st.LiveBlocks+st.CachedBlocks+st.FreeBlocks)+st.EmptySlabBytes+st.TailBytes)
}
