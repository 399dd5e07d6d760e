package sys

import (
	"errors"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

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
		{OpOpen, func(s *OS, _ unsafe.Pointer) error {
			fd, err := s.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err == nil {
				_ = unix.Close(fd)
			}
			return err
		}},
		{OpWrite, func(s *OS, p unsafe.Pointer) error {
			fd, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0)
			require.NoError(t, err)
			defer unix.Close(fd)
			_, err = s.Write(fd, unsafe.Slice((*byte)(p), 8))
			return err
		}},
	}
	for _, tt := range ops {
		t.Run(tt.op.String(), func(t *testing.T) {
			if tt.op == OpMremap && !HasMremap {
				t.Skip("no mremap here (TestUnsupported)")
			}
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
	want := []string{"mmap", "munmap", "mprotect", "madvise", "mremap", "mincore", "msync",
		"sendfile", "splice", "vmsplice", "sendmsg", "errqueue", "read", "write", "open"}
	require.Len(t, want, int(numOps))
	for op := range numOps {
		assert.Equal(t, want[op], op.String())
	}
}

// MADV_DONTNEED gives the pages back and they read as zero afterwards, on
// every system (sys_other.go remaps where madvise keeps the contents), and
// the range stays mapped and writable.
func TestDontNeedZeroes(t *testing.T) {
	t.Run("Madvise", func(t *testing.T) {
		testReleaseZeroes(t, func(s *OS, p unsafe.Pointer, n uintptr) error { return s.Madvise(p, n, unix.MADV_DONTNEED) })
	})
	t.Run("remapZero", func(t *testing.T) { // what Madvise does where madvise keeps the contents
		testReleaseZeroes(t, func(s *OS, p unsafe.Pointer, n uintptr) error {
			_ = s.enter(OpMadvise)
			return remapZero(p, n, unix.PROT_READ|unix.PROT_WRITE)
		})
	})
}

func testReleaseZeroes(t *testing.T, release func(s *OS, p unsafe.Pointer, n uintptr) error) {
	page := PageSize
	s := &OS{}
	p, err := s.Mmap(4*page, unix.PROT_READ|unix.PROT_WRITE, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Munmap(p, 4*page) })
	b := unsafe.Slice((*byte)(p), 4*page)
	for i := range b {
		b[i] = 0xAB
	}
	require.NoError(t, release(s, unsafe.Add(p, page), 2*page))
	assert.Equal(t, uint64(1), s.Calls(OpMadvise))
	var vec []byte
	n, err := s.Resident(p, 4*page, &vec)
	require.NoError(t, err)
	assert.Equal(t, 2*page, n, "the released pages left RAM")
	for i, c := range b {
		want := byte(0xAB)
		if uintptr(i) >= page && uintptr(i) < 3*page {
			want = 0
		}
		require.Equal(t, want, c, "byte %d", i)
	}
	b[page] = 1 // still writable
	assert.Equal(t, byte(1), b[page])
}

// Where the system lacks a call, its wrapper says so with ErrUnsupported
// (and the allocator takes its fallback before ever calling it).
func TestUnsupported(t *testing.T) {
	if HasMremap && HasHugePages {
		t.Skip("this system has mremap and MADV_HUGEPAGE")
	}
	page := PageSize
	s := &OS{}
	p, err := s.Mmap(2*page, unix.PROT_READ|unix.PROT_WRITE, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Munmap(p, 2*page) })
	if !HasMremap {
		_, err := s.Mremap(p, page, 2*page)
		assert.ErrorIs(t, err, errors.ErrUnsupported)
		assert.ErrorIs(t, s.MremapInPlace(p, page, 2*page), errors.ErrUnsupported)
	}
	if !HasHugePages {
		assert.ErrorIs(t, s.MadviseHuge(p, 2*page), errors.ErrUnsupported)
	}
}

// ReleaseProtNone gives the pages of an inaccessible range back and keeps
// it inaccessible; made accessible again, it reads as zero. Both ways: the
// Linux one (madvise) and the one elsewhere (a PROT_NONE remap).
func TestReleaseProtNone(t *testing.T) {
	page := PageSize
	for name, release := range map[string]func(s *OS, p unsafe.Pointer, n uintptr) error{
		"ReleaseProtNone": (*OS).ReleaseProtNone,
		"remapZero":       func(_ *OS, p unsafe.Pointer, n uintptr) error { return remapZero(p, n, unix.PROT_NONE) },
	} {
		t.Run(name, func(t *testing.T) {
			s := &OS{}
			p, err := s.Mmap(2*page, unix.PROT_READ|unix.PROT_WRITE, 0)
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Munmap(p, 2*page) })
			b := unsafe.Slice((*byte)(p), 2*page)
			for i := range b {
				b[i] = 0xCD
			}
			require.NoError(t, s.Mprotect(p, 2*page, unix.PROT_NONE))
			require.NoError(t, release(s, p, 2*page))
			var vec []byte
			n, err := s.Resident(p, 2*page, &vec)
			require.NoError(t, err)
			assert.Zero(t, n, "released")
			require.NoError(t, s.Mprotect(p, 2*page, unix.PROT_READ|unix.PROT_WRITE))
			assert.Equal(t, make([]byte, 2*page), b, "reads as zero")
		})
	}
}
