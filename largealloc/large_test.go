package largealloc_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"unsafe"

	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/brkmap/alloc/internal/budget"
	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/sys"
	"github.com/brkmap/alloc/largealloc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

var page = sys.PageSize

func newLarge(t *testing.T, limit uint64) (*largealloc.Mappings, *sys.OS, *budget.Budget) {
	t.Helper()
	o, b := &sys.OS{}, budget.New(limit)
	a := largealloc.New(o, b)
	t.Cleanup(func() { _ = a.Close() })
	return a, o, b
}

func bytesAt(p unsafe.Pointer, n uintptr) []byte { return unsafe.Slice((*byte)(p), n) }

// fill and intact are the shared pattern (internal/alloctest).
func fill(b []byte, seed byte) { alloctest.Fill(b, uint32(seed)) }

func intact(b []byte, seed byte) bool { return alloctest.Intact(b, uint32(seed)) < 0 }

func roundUp(n uintptr) uintptr { return (max(n, 1) + page - 1) &^ (page - 1) }

func TestAllocFree(t *testing.T) {
	sizes := []uintptr{0, 1, page - 1, page, page + 1, 128 << 10, 1<<20 + 3, 9 << 20}
	for _, n := range sizes {
		a, o, b := newLarge(t, 0)
		p, err := a.Alloc(n, 0, 0)
		require.NoError(t, err, "%d bytes", n)
		addr := uintptr(p)
		assert.Zero(t, addr%page)
		size := roundUp(n)
		m := a.Lookup(addr)
		require.NotNil(t, m)
		assert.Equal(t, [3]uintptr{addr, size, n}, [3]uintptr{m.Addr, m.Len, m.Requested})
		count, mapped, requested := a.Counters()
		assert.Equal(t, [3]uint64{1, uint64(size), uint64(n)}, [3]uint64{count, mapped, requested})
		assert.Equal(t, uint64(size), b.Used())
		assert.Equal(t, uint64(1), o.Calls(sys.OpMmap))

		blk := bytesAt(p, size)
		for i := uintptr(0); i < size; i += 997 {
			require.Zero(t, blk[i], "fresh mapping is zero")
		}
		fill(blk, 7)
		require.True(t, intact(blk, 7))

		got, err := a.Free(addr)
		require.NoError(t, err)
		assert.Equal(t, size, got.Len)
		assert.Equal(t, uint64(1), o.Calls(sys.OpMunmap))
		count, mapped, requested = a.Counters()
		assert.Zero(t, count+mapped+requested)
		assert.Zero(t, b.Used())
		assert.Nil(t, a.Lookup(addr))
	}
}

func TestAlignment(t *testing.T) {
	aligns := []uintptr{0, 16, page, 2 * page, 64 << 10, 1 << 20, 2 << 20, 16 << 20, 64 << 20}
	for _, align := range aligns {
		for _, n := range []uintptr{100, 3 * page, 5<<20 + 1} {
			a, o, b := newLarge(t, 0)
			p, err := a.Alloc(n, 0, align)
			require.NoError(t, err, "align %d, %d bytes", align, n)
			assert.Zero(t, uintptr(p)%max(align, page), "align %d: %p", align, p)
			size := roundUp(n)
			assert.Equal(t, uint64(1), o.Calls(sys.OpMmap), "one mapping")
			if align > page {
				// the spare room is cut off: the head, the tail, or both
				assert.GreaterOrEqual(t, o.Calls(sys.OpMunmap), uint64(1))
				assert.LessOrEqual(t, o.Calls(sys.OpMunmap), uint64(2))
			} else {
				assert.Zero(t, o.Calls(sys.OpMunmap))
			}
			_, mapped, _ := a.Counters()
			assert.Equal(t, uint64(size), mapped, "only the block stays mapped")
			assert.Equal(t, uint64(size), b.Used())
			blk := bytesAt(p, size)
			blk[0], blk[size-1] = 1, 1

			munmaps := o.Calls(sys.OpMunmap)
			_, err = a.Free(uintptr(p))
			require.NoError(t, err)
			assert.Equal(t, munmaps+1, o.Calls(sys.OpMunmap))
		}
	}
}

// TestAlignedCutIsUnmapped checks with mincore, which fails with ENOMEM
// on an unmapped page, that the spare room around an aligned block is
// gone: a 64 MiB-aligned 1 MiB block is mapped with 63 MiB to spare.
func TestAlignedCutIsUnmapped(t *testing.T) {
	a, o, _ := newLarge(t, 0)
	const align = 64 << 20
	p, err := a.Alloc(1<<20, 0, align)
	require.NoError(t, err)
	require.Zero(t, uintptr(p)%align)
	vec := make([]byte, 1)
	unmapped := func(q unsafe.Pointer) bool {
		_, err := o.Resident(q, page, &vec)
		return errors.Is(err, unix.ENOMEM)
	}
	// head + tail = 64 MiB - 1 page, so one of them is at least 32 MiB
	// long: 16 MiB before or after the block is inside it
	before, after := unmapped(unsafe.Add(p, -16<<20)), unmapped(unsafe.Add(p, 17<<20))
	assert.True(t, before || after, "the spare room around the block is unmapped")
	if before {
		assert.True(t, unmapped(unsafe.Add(p, -int(page))), "the head reaches the block")
	}
	if after {
		assert.True(t, unmapped(unsafe.Add(p, 1<<20)), "the tail starts at the block's end")
	}
	res, err := o.Resident(p, 1<<20, &vec)
	require.NoError(t, err)
	assert.Zero(t, res)
}

func TestBadFree(t *testing.T) {
	a, o, b := newLarge(t, 0)
	p, err := a.Alloc(3*page, 0, 0)
	require.NoError(t, err)
	fill(bytesAt(p, 3*page), 3)
	q, err := a.Alloc(page, 0, 0)
	require.NoError(t, err)
	_, err = a.Free(uintptr(q))
	require.NoError(t, err)

	goHeap := make([]byte, 64)
	tests := []struct {
		name string
		addr uintptr
	}{
		{"interior", uintptr(p) + page},
		{"one byte in", uintptr(p) + 1},
		{"Go heap", uintptr(unsafe.Pointer(&goHeap[0]))},
		{"double free", uintptr(q)},
		{"nil", 0},
	}
	count, mapped, requested := a.Counters()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			munmaps := o.Calls(sys.OpMunmap)
			_, err := a.Free(tt.addr)
			assert.ErrorIs(t, err, errs.ErrInvalidFree)
			_, err = a.Resize(tt.addr, 10*page)
			assert.ErrorIs(t, err, errs.ErrInvalidFree)
			assert.Equal(t, munmaps, o.Calls(sys.OpMunmap), "no call is made")
			c2, m2, r2 := a.Counters()
			assert.Equal(t, [3]uint64{count, mapped, requested}, [3]uint64{c2, m2, r2})
			assert.Equal(t, mapped, b.Used())
			assert.True(t, intact(bytesAt(p, 3*page), 3))
			assert.NotNil(t, a.Lookup(uintptr(p)))
		})
	}
}

func TestResize(t *testing.T) {
	a, o, b := newLarge(t, 0)
	const n = 1 << 20
	p, err := a.Alloc(n, 0, 0)
	require.NoError(t, err)
	fill(bytesAt(p, n), 9)

	t.Run("grow keeps the contents", func(t *testing.T) {
		q, err := a.Resize(uintptr(p), 3<<20+5)
		require.NoError(t, err)
		assert.Equal(t, uint64(1), o.Calls(sys.OpMremap))
		assert.True(t, intact(bytesAt(q, n), 9))
		tail := bytesAt(unsafe.Add(q, n), 2<<20)
		for i := 0; i < len(tail); i += 4096 {
			require.Zero(t, tail[i], "the grown tail is zero")
		}
		size := roundUp(3<<20 + 5)
		m := a.Lookup(uintptr(q))
		require.NotNil(t, m)
		assert.Equal(t, size, m.Len)
		assert.Equal(t, uintptr(3<<20+5), m.Requested)
		if q != p {
			assert.Nil(t, a.Lookup(uintptr(p)), "the old address is not live after a move")
		}
		count, mapped, requested := a.Counters()
		assert.Equal(t, [3]uint64{1, uint64(size), 3<<20 + 5}, [3]uint64{count, mapped, requested})
		assert.Equal(t, uint64(size), b.Used())
		p = q
	})
	t.Run("shrink", func(t *testing.T) {
		q, err := a.Resize(uintptr(p), 100<<10)
		require.NoError(t, err)
		assert.Equal(t, uint64(2), o.Calls(sys.OpMremap))
		assert.True(t, intact(bytesAt(q, 100<<10), 9))
		_, mapped, requested := a.Counters()
		assert.Equal(t, uint64(100<<10), mapped)
		assert.Equal(t, uint64(100<<10), requested)
		assert.Equal(t, uint64(100<<10), b.Used())
		p = q
	})
	t.Run("same pages: no call", func(t *testing.T) {
		q, err := a.Resize(uintptr(p), 100<<10-100)
		require.NoError(t, err)
		assert.Equal(t, p, q)
		assert.Equal(t, uint64(2), o.Calls(sys.OpMremap))
		_, _, requested := a.Counters()
		assert.Equal(t, uint64(100<<10-100), requested)
		assert.Equal(t, uintptr(100<<10-100), a.Lookup(uintptr(p)).Requested)
	})
	_, err = a.Free(uintptr(p))
	require.NoError(t, err)
	assert.Zero(t, b.Used())
}

func TestBudget(t *testing.T) {
	a, o, b := newLarge(t, 1<<20)
	p, err := a.Alloc(768<<10, 0, 0)
	require.NoError(t, err)
	fill(bytesAt(p, 768<<10), 1)

	_, err = a.Alloc(512<<10, 0, 0)
	assert.ErrorIs(t, err, errs.ErrNoMemory)
	assert.Equal(t, uint64(1), o.Calls(sys.OpMmap), "no mmap past the limit")

	_, err = a.Resize(uintptr(p), 2<<20)
	assert.ErrorIs(t, err, errs.ErrNoMemory)
	assert.Zero(t, o.Calls(sys.OpMremap))
	assert.True(t, intact(bytesAt(p, 768<<10), 1), "the block is untouched")
	assert.NotNil(t, a.Lookup(uintptr(p)), "and still live")
	assert.Equal(t, uint64(768<<10), b.Used())

	q, err := a.Alloc(256<<10, 0, 0) // exactly up to the limit
	require.NoError(t, err)
	_, err = a.Free(uintptr(q))
	require.NoError(t, err)
	_, err = a.Free(uintptr(p))
	require.NoError(t, err)
	assert.Zero(t, b.Used())
}

func TestKernelRefuses(t *testing.T) {
	enomem := func(target sys.Op) func(sys.Op, uint64) error {
		return func(op sys.Op, _ uint64) error {
			if op == target {
				return unix.ENOMEM
			}
			return nil
		}
	}
	t.Run("mmap", func(t *testing.T) {
		a, o, b := newLarge(t, 0)
		o.Fail = enomem(sys.OpMmap)
		_, err := a.Alloc(page, 0, 0)
		assert.ErrorIs(t, err, errs.ErrNoMemory)
		assert.Zero(t, b.Used())
		count, _, _ := a.Counters()
		assert.Zero(t, count)
	})
	t.Run("munmap of the aligned cut", func(t *testing.T) {
		a, o, b := newLarge(t, 0)
		o.Fail = enomem(sys.OpMunmap)
		_, err := a.Alloc(page, 0, 1<<20)
		assert.ErrorIs(t, err, errs.ErrNoMemory)
		assert.Zero(t, b.Used())
		count, _, _ := a.Counters()
		assert.Zero(t, count)
	})
	t.Run("mremap", func(t *testing.T) {
		a, o, b := newLarge(t, 0)
		p, err := a.Alloc(page, 0, 0)
		require.NoError(t, err)
		fill(bytesAt(p, page), 4)
		o.Fail = enomem(sys.OpMremap)
		_, err = a.Resize(uintptr(p), 10*page)
		assert.ErrorIs(t, err, errs.ErrNoMemory)
		assert.Equal(t, uint64(page), b.Used(), "the budget taken for the growth is given back")
		assert.NotNil(t, a.Lookup(uintptr(p)))
		assert.True(t, intact(bytesAt(p, page), 4))
		o.Fail = nil
		q, err := a.Resize(uintptr(p), 10*page)
		require.NoError(t, err)
		assert.True(t, intact(bytesAt(q, page), 4))
	})
	t.Run("munmap on Free (the map count), madvise too", func(t *testing.T) {
		a, o, b := newLarge(t, 0)
		p, err := a.Alloc(page, 0, 0)
		require.NoError(t, err)
		fill(bytesAt(p, page), 5)
		o.Fail = func(op sys.Op, _ uint64) error {
			if op == sys.OpMunmap || op == sys.OpMadvise {
				return unix.ENOMEM
			}
			return nil
		}
		_, err = a.Free(uintptr(p))
		require.Error(t, err)
		assert.ErrorIs(t, err, errs.ErrNoMemory, "ENOMEM from munmap (the map count limit) is out of memory")
		assert.ErrorIs(t, err, unix.ENOMEM)
		assert.NotNil(t, a.Lookup(uintptr(p)), "the block stays live")
		assert.True(t, intact(bytesAt(p, page), 5))
		count, mapped, _ := a.Counters()
		assert.Equal(t, uint64(1), count)
		assert.Equal(t, uint64(page), mapped)
		assert.Equal(t, uint64(page), b.Used())
		o.Fail = nil
		_, err = a.Free(uintptr(p))
		require.NoError(t, err, "a retry succeeds")
	})
	t.Run("munmap on Free (the map count): the range waits", func(t *testing.T) {
		// issue 11, item 7: a free of a valid block succeeds at the map
		// count limit; its pages are released, and its range is reused or
		// unmapped later
		a, o, b := newLarge(t, 0)
		p, err := a.Alloc(page, 0, 0)
		require.NoError(t, err)
		fill(bytesAt(p, page), 5)
		o.Fail = enomem(sys.OpMunmap)
		_, err = a.Free(uintptr(p))
		require.NoError(t, err)
		assert.Nil(t, a.Lookup(uintptr(p)), "the block is freed")
		count, mapped, _ := a.Counters()
		assert.Zero(t, count)
		assert.Zero(t, mapped)
		assert.Zero(t, b.Used())
		assert.Equal(t, uint64(page), a.DeferredBytes())
		assert.Equal(t, uint64(1), o.Calls(sys.OpMadvise), "its pages were released")
		_, err = a.Free(uintptr(p))
		assert.ErrorIs(t, err, errs.ErrInvalidFree, "freed once")

		q, err := a.Alloc(page, 0, 0) // the same size: the range is reused
		require.NoError(t, err)
		assert.Equal(t, p, q)
		assert.Equal(t, -1, slices.IndexFunc(bytesAt(q, page), func(c byte) bool { return c != 0 }), "zero: its pages were released")
		assert.Zero(t, a.DeferredBytes())
		_, err = a.Free(uintptr(q)) // deferred again
		require.NoError(t, err)
		assert.Equal(t, uint64(page), a.DeferredBytes())

		a.UnmapDeferred() // still refused: it waits
		assert.Equal(t, uint64(page), a.DeferredBytes())
		o.Fail = nil // the count allows again
		a.UnmapDeferred()
		assert.Zero(t, a.DeferredBytes())
		assert.Zero(t, b.Used())
	})
	t.Run("other munmap errors", func(t *testing.T) {
		a, o, _ := newLarge(t, 0)
		p, err := a.Alloc(page, 0, 0)
		require.NoError(t, err)
		boom := errors.New("injected")
		o.Fail = func(op sys.Op, _ uint64) error {
			if op == sys.OpMunmap {
				return boom
			}
			return nil
		}
		_, err = a.Free(uintptr(p))
		assert.ErrorIs(t, err, boom)
		assert.NotErrorIs(t, err, errs.ErrNoMemory)
		o.Fail = nil
	})
}

func TestEachAndResident(t *testing.T) {
	a, _, _ := newLarge(t, 0)
	want := map[uintptr]uintptr{}
	var ps []unsafe.Pointer
	for i := range 5 {
		n := uintptr(i+1) * 16 * page
		p, err := a.Alloc(n, 0, 0)
		require.NoError(t, err)
		want[uintptr(p)] = n
		ps = append(ps, p)
	}
	got := map[uintptr]uintptr{}
	a.Each(func(m largealloc.Mapping) { got[m.Addr] = m.Len })
	assert.Equal(t, want, got)

	var vec []byte
	assert.Zero(t, a.Resident(&vec), "mapped, never touched")
	touched := uintptr(0)
	for i, p := range ps {
		for k := 0; k <= i; k++ {
			bytesAt(p, want[uintptr(p)])[uintptr(k)*page] = 1
			touched += page
		}
	}
	assert.Equal(t, touched, a.Resident(&vec))
	_, err := a.Free(uintptr(ps[4]))
	require.NoError(t, err)
	assert.Equal(t, touched-5*page, a.Resident(&vec), "a freed mapping leaves at once")
}

func TestClose(t *testing.T) {
	a, o, b := newLarge(t, 0)
	var ps []unsafe.Pointer
	for range 10 {
		p, err := a.Alloc(3*page, 0, 0)
		require.NoError(t, err)
		ps = append(ps, p)
	}
	munmaps := o.Calls(sys.OpMunmap)
	require.NoError(t, a.Close())
	assert.Equal(t, munmaps+10, o.Calls(sys.OpMunmap))
	count, mapped, requested := a.Counters()
	assert.Zero(t, count+mapped+requested)
	assert.Zero(t, b.Used())
	vec := make([]byte, 3)
	_, err := o.Resident(ps[0], 3*page, &vec)
	assert.ErrorIs(t, err, unix.ENOMEM, "the mapping is gone")

	_, err = a.Alloc(page, 0, 0)
	assert.ErrorIs(t, err, errs.ErrClosed)
	_, err = a.Free(uintptr(ps[0]))
	assert.ErrorIs(t, err, errs.ErrClosed)
	_, err = a.Resize(uintptr(ps[0]), page)
	assert.ErrorIs(t, err, errs.ErrClosed)
	n := 0
	a.Each(func(largealloc.Mapping) { n++ })
	assert.Zero(t, n)
	assert.NoError(t, a.Close())
}

// TestConcurrent has goroutines allocating, resizing and freeing their own
// blocks while others look theirs up (run with -race).
func TestConcurrent(t *testing.T) {
	a, _, b := newLarge(t, 0)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 3))
			type blk struct {
				p    unsafe.Pointer
				n    uintptr
				seed byte
			}
			var mine []blk
			for i := range 300 {
				switch {
				case len(mine) < 4 || rng.IntN(3) == 0:
					n := uintptr(1 + rng.IntN(64<<10))
					p, err := a.Alloc(n, 0, page<<rng.IntN(3))
					if !assert.NoError(t, err) {
						return
					}
					s := byte(g*16 + i)
					fill(bytesAt(p, n), s)
					mine = append(mine, blk{p, n, s})
				case rng.IntN(2) == 0:
					k := rng.IntN(len(mine))
					x := mine[k]
					n := uintptr(1 + rng.IntN(128<<10))
					q, err := a.Resize(uintptr(x.p), n)
					if !assert.NoError(t, err) {
						return
					}
					assert.True(t, intact(bytesAt(q, min(n, x.n)), x.seed), "contents lost in Resize")
					fill(bytesAt(q, n), x.seed)
					mine[k] = blk{q, n, x.seed}
				default:
					k := rng.IntN(len(mine))
					x := mine[k]
					assert.True(t, intact(bytesAt(x.p, x.n), x.seed), "block overwritten")
					_, err := a.Free(uintptr(x.p))
					assert.NoError(t, err)
					mine = append(mine[:k], mine[k+1:]...)
				}
				for _, x := range mine {
					if m := a.Lookup(uintptr(x.p)); assert.NotNil(t, m) {
						assert.Equal(t, x.n, m.Requested)
					}
				}
			}
			for _, x := range mine {
				_, err := a.Free(uintptr(x.p))
				assert.NoError(t, err)
			}
		}()
	}
	// a reader measuring while the others work
	done := make(chan struct{})
	go func() {
		var vec []byte
		for {
			select {
			case <-done:
				return
			default:
				a.Resident(&vec)
				a.Counters()
			}
		}
	}()
	wg.Wait()
	close(done)
	count, mapped, requested := a.Counters()
	assert.Zero(t, count+mapped+requested)
	assert.Zero(t, b.Used())
}

// Stats with many live mappings: mappings the kernel placed side by side
// are measured with one mincore, so the calls are far fewer than the
// mappings, and the figure is still exact.
func TestResidentManyMappingsFewCalls(t *testing.T) {
	a, o, _ := newLarge(t, 0)
	const n = 10000
	var ps []unsafe.Pointer
	for i := range n {
		p, err := a.Alloc(2*page, 0, 0)
		require.NoError(t, err)
		if i%3 == 0 {
			bytesAt(p, page)[0] = 1
		}
		ps = append(ps, p)
	}
	var vec []byte
	calls := o.Calls(sys.OpMincore)
	assert.Equal(t, uintptr((n+2)/3)*page, a.Resident(&vec))
	made := o.Calls(sys.OpMincore) - calls
	t.Logf("%d mappings measured with %d mincore calls", n, made)
	assert.Less(t, made, uint64(n/10), "adjacent mappings share a call")
	// every other one freed: holes between them, each measured alone, still exact
	for i := 0; i < n; i += 2 {
		_, err := a.Free(uintptr(ps[i]))
		require.NoError(t, err)
	}
	var want uintptr
	for i := 1; i < n; i += 2 {
		if i%3 == 0 {
			want += page
		}
	}
	assert.Equal(t, want, a.Resident(&vec))
}
