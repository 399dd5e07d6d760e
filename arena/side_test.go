package arena_test

import (
	"errors"
	"runtime/debug"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/budget"
	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/sys"
)

func newSided(t *testing.T, os *sys.OS, reserve uintptr) *arena.Region {
	t.Helper()
	r, err := arena.New(arena.Config{Reserve: reserve, TrimThreshold: 128 << 10, OS: os, Budget: budget.New(0), SideShift: 7})
	require.NoError(t, err)
	return r
}

// TestSideWindows: a side is reserved with the region in its one mapping
// (no other call), made writable only as windows reach into it (one
// mprotect for each MiB of side, 128 MiB of the region), and a window is
// the words of its addresses: two windows over the same addresses share
// them, windows of different addresses do not, and a window's capacity is
// its length, so that an append copies it rather than writing over the
// next one.
func TestSideWindows(t *testing.T) {
	os := &sys.OS{}
	r := newSided(t, os, 1<<30)
	defer r.Close()
	s := r.Side()
	require.NotNil(t, s)
	assert.Equal(t, uint64(1), os.Calls(sys.OpMmap), "one mapping: the region and its side")
	assert.Zero(t, os.Calls(sys.OpMprotect), "nothing writable before a window asks")
	assert.Zero(t, s.Committed())

	base := r.Base()
	a, err := s.Words(base, 4) // the first 4 KiB of the region: 4 words
	require.NoError(t, err)
	require.Len(t, a, 4)
	assert.Equal(t, 4, cap(a), "capacity is the length")
	assert.Equal(t, uint64(1), os.Calls(sys.OpMprotect))
	assert.Equal(t, uintptr(1<<20), s.Committed(), "a step of a MiB")
	for _, w := range a {
		assert.Zero(t, w, "a side starts clear")
	}

	b, err := s.Words(base+4096, 4) // the next page's words
	require.NoError(t, err)
	assert.Equal(t, uintptr(unsafe.Pointer(&a[0]))+32, uintptr(unsafe.Pointer(&b[0])), "a byte for each 128 bytes of the region")
	a2, err := s.Words(base, 8) // the first window grown: the same words, and the next
	require.NoError(t, err)
	a2[1] = 0xff
	b[0] = 7
	assert.Equal(t, uint64(0xff), a[1], "the same words")
	assert.Equal(t, uint64(7), a2[4], "a window reaches the next one's words")
	grown := append(a, 1)
	grown[1] = 0
	assert.Equal(t, uint64(0xff), a[1], "an append copies out of the side")
	assert.Equal(t, uint64(1), os.Calls(sys.OpMprotect), "within the committed step: no call")

	far, err := s.Words(base+200<<20, 1) // 200 MiB into the region: 1.56 MiB into the side
	require.NoError(t, err)
	far[0] = 1
	assert.Equal(t, uint64(2), os.Calls(sys.OpMprotect))
	assert.Equal(t, uintptr(2<<20), s.Committed())
}

// TestSideBounds: a window must start on a word of the side and end in
// it (the reservation's last word, and one to spare, fit).
func TestSideBounds(t *testing.T) {
	r := newSided(t, &sys.OS{}, 1<<30)
	defer r.Close()
	s := r.Side()
	base := r.Base()
	for _, tc := range []struct {
		name string
		from uintptr
		n    int
	}{
		{"not on a word", base + 512, 1},
		{"below the region", base - 4096, 1},
		{"past the region", base + 1<<30, 1},
		{"negative", base, -1},
		{"past the side", base + 1<<30 - 1024, 1 + (2<<20)/8 + 1}, // (the side is rounded up to 2 MiB)
		{"bytes past 2^64", base, 1 << 61},                        // (n*8 wraps to 0)
		{"bytes wrapping to a word", base, 1<<61 + 1},
	} {
		w, err := s.Words(tc.from, tc.n)
		assert.Error(t, err, tc.name)
		assert.Nil(t, w, tc.name)
	}
	last, err := s.Words(base+1<<30-1024, 2) // the reservation's last word, and the one to spare
	require.NoError(t, err)
	last[1] = 1
	none, err := arena.New(arena.Config{Reserve: 1 << 20, OS: &sys.OS{}, Budget: budget.New(0)})
	require.NoError(t, err)
	defer none.Close()
	assert.Nil(t, none.Side(), "no SideShift, no side")
}

// TestSideCommitRefused: a refused mprotect is an error for the window
// that needed it, and commits nothing; the next window tries again. A
// closed region's side refuses too, with no call.
func TestSideCommitRefused(t *testing.T) {
	refuse := true
	os := &sys.OS{Fail: func(op sys.Op, _ uint64) error {
		if op == sys.OpMprotect && refuse {
			return errors.New("injected")
		}
		return nil
	}}
	r := newSided(t, os, 1<<30)
	s := r.Side()
	_, err := s.Words(r.Base(), 4)
	require.Error(t, err)
	assert.Zero(t, s.Committed())
	refuse = false
	w, err := s.Words(r.Base(), 4)
	require.NoError(t, err)
	w[0] = 1
	require.NoError(t, r.Close())
	calls := os.Calls(sys.OpMprotect)
	_, err = s.Words(r.Base(), 4) // (Close let go of the committed bytes)
	require.Error(t, err)
	assert.Equal(t, calls, os.Calls(sys.OpMprotect))
}

// TestSideReserveOverflow: a reservation whose side would take the
// mapping's size past the end of the address space (the sum wraps round
// to a size the kernel grants) is refused, as the reservation alone is,
// not mapped short with the region's end and its side's start wrapped.
func TestSideReserveOverflow(t *testing.T) {
	const page = 4096
	for _, want := range []uintptr{1 << 30, 64 << 20} { // what reserve + side wraps to
		// reserve + reserve/128 + a page, rounded to 2 MiB, is 2^64 + want
		var reserve uintptr
		for d := ((1<<57-want)/129*128)&^(2<<20-1) - 64<<20; ; d += 2 << 20 { // d: 2^64 - reserve
			reserve = -d
			side := (reserve>>7 + page + 2<<20 - 1) &^ (2<<20 - 1)
			if sum := reserve + side; sum < reserve && sum <= want {
				require.Greater(t, sum, want/2)
				break
			}
		}
		os := &sys.OS{}
		r, err := arena.New(arena.Config{Reserve: reserve, OS: os, Budget: budget.New(0), SideShift: 7})
		require.ErrorIs(t, err, errs.ErrNoMemory, "a reservation of %#x bytes and its side", reserve)
		assert.Nil(t, r)
		assert.Zero(t, os.Calls(sys.OpMmap), "nothing mapped")
	}
}

// TestSideReleaseForeign: Release gives back only pages of its own side:
// words of the Go heap, of another region's side, or of its own side
// once the region is closed (its mapping gone, the addresses anyone's)
// are refused, and left as they are, not advised away.
func TestSideReleaseForeign(t *testing.T) {
	fill := func(w []uint64) {
		for i := range w {
			w[i] = ^uint64(0)
		}
	}
	intact := func(w []uint64, what string) {
		for i, x := range w {
			require.Equal(t, ^uint64(0), x, "%s: word %d", what, i)
		}
	}
	os := &sys.OS{}
	r := newSided(t, os, 1<<30)
	s := r.Side()
	madvise := os.Calls(sys.OpMadvise)

	heap := make([]uint64, 4*4096/8) // whole pages of the Go heap
	fill(heap)
	lo, hi, err := s.Release(heap)
	assert.Error(t, err, "words of the Go heap")
	assert.Equal(t, lo, hi, "none released")
	intact(heap, "the Go heap's")

	other := newSided(t, &sys.OS{}, 1<<30)
	defer other.Close()
	ow, err := other.Side().Words(other.Base()+64<<20, 4*4096/8)
	require.NoError(t, err)
	fill(ow)
	lo, hi, err = s.Release(ow)
	assert.Error(t, err, "words of another region's side")
	assert.Equal(t, lo, hi, "none released")
	intact(ow, "the other side's")
	assert.Equal(t, madvise, os.Calls(sys.OpMadvise), "no madvise for a window not of this side")

	own, err := s.Words(r.Base()+64<<20, 4*4096/8)
	require.NoError(t, err)
	fill(own)
	lo, hi, err = s.Release(own)
	require.NoError(t, err)
	assert.Less(t, lo, hi, "its own side's whole pages")
	require.NoError(t, r.Close())
	calls := os.Calls(sys.OpMadvise)
	_, _, err = s.Release(own)
	assert.Error(t, err, "a closed region's side")
	assert.Equal(t, calls, os.Calls(sys.OpMadvise), "no madvise once the mapping is gone")
}

// TestSideGuarded: the side is not the region's next byte: a write past
// the region's end (a block at its very end, overrun) faults on a page
// of no access between them, rather than landing in the side's first
// words, the bitmap of the region's first 512 KiB.
func TestSideGuarded(t *testing.T) {
	r := newSided(t, &sys.OS{}, 1<<20)
	defer r.Close()
	first, err := r.Side().Words(r.Base(), 4) // committed: the side's first MiB
	require.NoError(t, err)
	run, _, err := r.Alloc((1<<20)/sys.PageSize, 0, arena.KindMid, 1<<20) // the whole region: its last block ends at its end
	require.NoError(t, err)
	end := run.Start() + 1<<20
	_, hi := r.Reservation()
	require.Equal(t, hi, end)
	last := unsafe.Slice((*byte)(r.Ptr(end-8)), 8)
	overrun := func() (fault any) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() { fault = recover() }()
		b := unsafe.Slice(&last[0], 16) // 8 bytes past the block's end
		for i := range b {
			b[i] = 0xff
		}
		return nil
	}()
	assert.NotNil(t, overrun, "a write past the region's end faults")
	assert.Zero(t, first[0], "and leaves the side alone")
	require.NoError(t, r.Free(run))
}
