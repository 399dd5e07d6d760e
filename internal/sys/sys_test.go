package sys

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestBudget(t *testing.T) {
	type step struct {
		take, give uintptr
		ok         bool
		used       uint64
	}
	tests := []struct {
		name  string
		limit uint64
		steps []step
	}{
		{"unlimited", 0, []step{{take: 1 << 40, ok: true, used: 1 << 40}, {take: 1 << 40, ok: true, used: 2 << 40}, {give: 1 << 40, used: 1 << 40}}},
		{"up to the limit", 100, []step{{take: 60, ok: true, used: 60}, {take: 41, ok: false, used: 60}, {take: 40, ok: true, used: 100}, {take: 1, ok: false, used: 100}}},
		{"give makes room", 100, []step{{take: 100, ok: true, used: 100}, {give: 30, used: 70}, {take: 30, ok: true, used: 100}}},
		{"a take of zero always fits", 10, []step{{take: 10, ok: true, used: 10}, {take: 0, ok: true, used: 10}}},
		{"overflow is refused", ^uint64(0), []step{{take: 10, ok: true, used: 10}, {take: ^uintptr(0), ok: false, used: 10}, {take: ^uintptr(0) - 10, ok: true, used: ^uint64(0)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBudget(tt.limit)
			assert.Equal(t, tt.limit, b.Limit())
			for i, s := range tt.steps {
				if s.give > 0 {
					b.Give(s.give)
				} else {
					assert.Equal(t, s.ok, b.Take(s.take), "step %d", i)
				}
				assert.Equal(t, s.used, b.Used(), "step %d", i)
			}
		})
	}
}

func TestBudgetConcurrentTakeNeverPassesTheLimit(t *testing.T) {
	const limit, piece = 10007, 7
	b := NewBudget(limit)
	var taken atomic.Uint64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 400 {
				if b.Take(piece) {
					taken.Add(piece)
					if i%3 == 0 { // some give back and take again
						b.Give(piece)
						taken.Add(^uint64(piece - 1))
					}
				}
				assert.LessOrEqual(t, b.Used(), uint64(limit))
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, taken.Load(), b.Used())
	assert.LessOrEqual(t, b.Used(), uint64(limit))
	for b.Take(piece) {
	}
	assert.LessOrEqual(t, b.Used(), uint64(limit))
	assert.Greater(t, b.Used()+piece, uint64(limit), "the budget fills as far as pieces fit")
}

// TestFailHook injects a failure at the second call of each op and checks
// that it is returned, counted, and that the call is not made.
func TestFailHook(t *testing.T) {
	page := PageSize
	injected := errors.New("injected")
	ops := []struct {
		op   Op
		call func(s *OS, p unsafe.Pointer) error
	}{
		{OpMmap, func(s *OS, _ unsafe.Pointer) error {
			q, err := s.Mmap(page, unix.PROT_READ, 0)
			if err == nil {
				_ = unix.MunmapPtr(q, page)
			}
			return err
		}},
		{OpMprotect, func(s *OS, p unsafe.Pointer) error { return s.Mprotect(p, page, unix.PROT_READ|unix.PROT_WRITE) }},
		{OpMadvise, func(s *OS, p unsafe.Pointer) error { return s.Madvise(p, page, unix.MADV_DONTNEED) }},
		{OpMremap, func(s *OS, p unsafe.Pointer) error { _, err := s.Mremap(p, 2*page, 2*page); return err }},
		{OpMincore, func(s *OS, p unsafe.Pointer) error { var v []byte; _, err := s.Resident(p, page, &v); return err }},
		{OpMunmap, func(s *OS, p unsafe.Pointer) error { return s.Munmap(unsafe.Add(p, page), page) }},
	}
	for _, tt := range ops {
		t.Run(tt.op.String(), func(t *testing.T) {
			s := &OS{}
			p, err := unix.MmapPtr(-1, 0, nil, 2*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
			require.NoError(t, err)
			t.Cleanup(func() { _ = unix.MunmapPtr(p, 2*page) })
			var seen []uint64
			s.Fail = func(op Op, n uint64) error {
				if op != tt.op {
					return nil
				}
				seen = append(seen, n)
				if n == 2 {
					return injected
				}
				return nil
			}
			require.NoError(t, tt.call(s, p))
			assert.ErrorIs(t, tt.call(s, p), injected, "the injected failure is returned")
			assert.Equal(t, uint64(2), s.Calls(tt.op), "the refused call is counted")
			if tt.op != OpMunmap {
				require.NoError(t, tt.call(s, p), "later calls go through")
			}
			assert.Equal(t, []uint64{1, 2, 3}[:len(seen)], seen, "the hook sees 1-based counts")
			for op := range numOps {
				if op != tt.op {
					assert.Zero(t, s.Calls(op), "%s", op)
				}
			}
		})
	}
}

func TestFailedMunmapIsNotMade(t *testing.T) {
	page := PageSize
	s := &OS{Fail: func(op Op, _ uint64) error {
		if op == OpMunmap {
			return unix.ENOMEM
		}
		return nil
	}}
	p, err := s.Mmap(page, unix.PROT_READ|unix.PROT_WRITE, 0)
	require.NoError(t, err)
	assert.ErrorIs(t, s.Munmap(p, page), unix.ENOMEM)
	*(*byte)(p) = 1 // still mapped
	s.Fail = nil
	require.NoError(t, s.Munmap(p, page))
	assert.Equal(t, uint64(2), s.Calls(OpMunmap))
}

func TestResident(t *testing.T) {
	page := PageSize
	s := &OS{}
	const pages = 16
	p, err := s.Mmap(pages*page, unix.PROT_READ|unix.PROT_WRITE, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Munmap(p, pages*page) })
	var vec []byte

	n, err := s.Resident(p, pages*page, &vec)
	require.NoError(t, err)
	assert.Zero(t, n, "a fresh mapping has nothing resident")

	faults := MinorFaults()
	b := unsafe.Slice((*byte)(p), pages*page)
	for _, i := range []uintptr{0, 3, 4, 15} {
		b[i*page+7] = 1
	}
	assert.GreaterOrEqual(t, MinorFaults(), faults+4, "touching fresh pages faults them in")
	n, err = s.Resident(p, pages*page, &vec)
	require.NoError(t, err)
	assert.Equal(t, 4*page, n)
	n, err = s.Resident(unsafe.Add(p, 3*page), 2*page, &vec)
	require.NoError(t, err)
	assert.Equal(t, 2*page, n, "a sub-range")
	n, err = s.Resident(p, page+1, &vec) // a partial page counts whole
	require.NoError(t, err)
	assert.Equal(t, page, n)

	require.NoError(t, s.Madvise(p, pages*page, unix.MADV_DONTNEED))
	n, err = s.Resident(p, pages*page, &vec)
	require.NoError(t, err)
	assert.Zero(t, n, "released")

	calls := s.Calls(OpMincore)
	n, err = s.Resident(p, 0, &vec)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, calls, s.Calls(OpMincore), "an empty range asks nothing")
}

func TestOpNames(t *testing.T) {
	want := []string{"mmap", "munmap", "mprotect", "madvise", "mremap", "mincore"}
	for op := range numOps {
		assert.Equal(t, want[op], op.String())
	}
}
