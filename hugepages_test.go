//go:build linux

// Transparent huge pages are Linux's: elsewhere HugePages is never in
// effect (TestPlatform), and these tests have nothing to try.

package alloc_test

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/brkmap/alloc/internal/procfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const huge = 2 << 20

// requireTHP skips the test on a kernel that gives no huge pages.
func requireTHP(t *testing.T) {
	t.Helper()
	mode, size := procfs.ReadTHP()
	if !mode.Enabled() {
		t.Skipf("the kernel's transparent huge pages are %q (%s): nothing to test", mode, procfs.THPEnabledPath)
	}
	if size != huge {
		t.Skipf("the kernel's huge page size is %d, the test assumes 2 MiB", size)
	}
}

// fakeTHP points the allocator at a THP mode file holding content, for
// the rest of the test.
func fakeTHP(t *testing.T, content string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "enabled")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	old := procfs.THPEnabledPath
	procfs.THPEnabledPath = path
	t.Cleanup(func() { procfs.THPEnabledPath = old })
}

// smapsOf returns the /proc/self/smaps entry of the mapping holding p.
func smapsOf(t *testing.T, p uintptr) procfs.SmapsEntry {
	t.Helper()
	var found procfs.SmapsEntry
	ok := false
	var buf []byte
	require.NoError(t, procfs.ReadSmaps(&buf, func(e procfs.SmapsEntry) {
		if e.Start <= p && p < e.End {
			found, ok = e, true
		}
	}))
	require.True(t, ok, "no mapping holds %#x", p)
	return found
}

func touch(b []byte) {
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
}

func TestHugePagesSetting(t *testing.T) {
	_, err := alloc.New(alloc.Config{HugePages: 7})
	require.ErrorIs(t, err, alloc.ErrInvalidConfig)
	assert.EqualError(t, err, "alloc: invalid Config: unknown HugePages setting 7")
	assert.Equal(t, "off", alloc.HugePagesOff.String())
	assert.Equal(t, "large", alloc.HugePagesLarge.String())
	assert.Equal(t, "all", alloc.HugePagesAll.String())

	mode, _ := procfs.ReadTHP()
	for _, h := range []alloc.HugePages{alloc.HugePagesOff, alloc.HugePagesLarge, alloc.HugePagesAll} {
		s := newAlloc(t, alloc.Config{HugePages: h}).Stats()
		assert.Equal(t, h.String(), s.HugePages)
		assert.Equal(t, string(mode), s.THPMode)
		assert.Equal(t, h != alloc.HugePagesOff && mode.Enabled(), s.HugePagesInEffect)
	}
}

// Every mapping of at least 2 MiB starts on a 2 MiB boundary and carries
// the advice (VmFlags "hg" in smaps); smaller ones are left alone, and the
// length is not rounded up.
func TestHugePagesLargeAlignment(t *testing.T) {
	requireTHP(t)
	a := newAlloc(t, alloc.Config{HugePages: alloc.HugePagesLarge})
	for _, n := range []int{huge, huge + 1, 3<<20 + 100, 8 << 20, 64 << 20} {
		before := a.Stats().Madvise
		b, err := a.Malloc(n)
		require.NoError(t, err)
		assert.Zero(t, addr(b)%huge, "%d bytes at %#x", n, addr(b))
		assert.Equal(t, (n+4095)&^4095, a.UsableSize(b), "length rounded to pages, not to huge pages")
		e := smapsOf(t, addr(b))
		assert.True(t, e.HasFlag("hg"), "%d bytes: VmFlags %v", n, e.VmFlags)
		assert.Equal(t, before+1, a.Stats().Madvise, "one madvise per huge block")
		require.NoError(t, a.Free(b))
	}

	small, err := a.Malloc(1 << 20) // mapped (above the threshold), below a huge page
	require.NoError(t, err)
	assert.False(t, smapsOf(t, addr(small)).HasFlag("hg"))
	require.NoError(t, a.Free(small))

	wide, err := a.AlignedAlloc(8<<20, 4<<20) // a stricter alignment wins
	require.NoError(t, err)
	assert.Zero(t, addr(wide)%(8<<20))
	require.NoError(t, a.Free(wide))

	off := newAlloc(t, alloc.Config{})
	b, err := off.Malloc(8 << 20)
	require.NoError(t, err)
	assert.False(t, smapsOf(t, addr(b)).HasFlag("hg"), "off gives no advice")
	assert.Zero(t, off.Stats().Madvise)
	require.NoError(t, off.Free(b))
}

// Touching an advised 8 MiB block faults in huge pages: a handful of
// faults instead of 2048, and AnonHugePages in smaps and in Stats.
func TestHugePagesResident(t *testing.T) {
	requireTHP(t)
	for _, h := range []alloc.HugePages{alloc.HugePagesOff, alloc.HugePagesLarge} {
		t.Run(h.String(), func(t *testing.T) {
			a := newAlloc(t, alloc.Config{HugePages: h})
			b, err := a.Malloc(8 << 20)
			require.NoError(t, err)
			f0 := alloctest.MinorFaults()
			touch(b)
			faults := alloctest.MinorFaults() - f0
			s := a.Stats()
			assert.EqualValues(t, 8<<20, s.Resident)
			e := smapsOf(t, addr(b))
			if h == alloc.HugePagesOff {
				assert.GreaterOrEqual(t, faults, uint64(2048), "one fault per 4 KiB page")
				assert.Zero(t, e.AnonHugePages)
				assert.Zero(t, s.HugeResident)
				return
			}
			assert.Less(t, faults, uint64(512), "huge pages: a fault per 2 MiB")
			assert.Positive(t, e.AnonHugePages, "the kernel backed the block with huge pages")
			assert.EqualValues(t, e.AnonHugePages, s.HugeResident, "Stats reports what smaps says")
			assert.LessOrEqual(t, s.HugeResident, s.Resident)
			require.NoError(t, a.Free(b))
			assert.Zero(t, a.Stats().HugeResident)
		})
	}
}

// A fresh huge block is not pre-faulted: one written byte makes one huge
// page resident (2 MiB), not the whole 8 MiB block. Huge pages coarsen
// the grain of residency; they must not turn Malloc into a memset.
func TestHugePagesLargeNotPrefaulted(t *testing.T) {
	requireTHP(t)
	a := newAlloc(t, alloc.Config{HugePages: alloc.HugePagesLarge})
	b, err := a.Malloc(8 << 20)
	require.NoError(t, err)
	before := a.Stats()
	assert.Zero(t, before.Resident, "nothing is resident before the first write")
	b[len(b)/2] = 1
	s := a.Stats()
	assert.LessOrEqual(t, s.Resident, uint64(huge), "one byte written: at most the huge page that holds it")
	assert.Positive(t, s.Resident)
	assert.LessOrEqual(t, uint64(smapsOf(t, addr(b)).AnonHugePages), uint64(huge), "smaps agrees")
	require.NoError(t, a.Free(b))
}

// With the kernel's THP mode "never", or no THP at all, asking for huge
// pages changes nothing: no advice, no alignment work, and Stats says so.
func TestHugePagesNever(t *testing.T) {
	for name, content := range map[string]string{"never": "always madvise [never]\n", "absent": ""} {
		t.Run(name, func(t *testing.T) {
			if name == "absent" {
				old := procfs.THPEnabledPath
				procfs.THPEnabledPath = filepath.Join(t.TempDir(), "no-such-file")
				t.Cleanup(func() { procfs.THPEnabledPath = old })
			} else {
				fakeTHP(t, content)
			}
			a := newAlloc(t, alloc.Config{HugePages: alloc.HugePagesAll})
			big, err := a.Malloc(8 << 20)
			require.NoError(t, err)
			mid, err := a.Malloc(64 << 10)
			require.NoError(t, err)
			touch(big)
			touch(mid)
			s := a.Stats()
			assert.False(t, s.HugePagesInEffect)
			assert.Equal(t, "never", s.THPMode)
			assert.Equal(t, "all", s.HugePages)
			assert.Zero(t, s.HugePageSize)
			assert.Zero(t, s.Madvise, "no advice given")
			assert.Zero(t, s.HugeResident)
			assert.EqualValues(t, 1, s.Mmap-1, "one mmap for the block (and one for the region): no over-mapping")
			assert.False(t, smapsOf(t, addr(big)).HasFlag("hg"))
			assert.False(t, smapsOf(t, addr(mid)).HasFlag("hg"))
			require.NoError(t, a.Free(big))
			require.NoError(t, a.Free(mid))
		})
	}
}

// Realloc keeps a huge block aligned, advised and its contents, whether
// mremap grows it in place or must move it.
func TestHugePagesRealloc(t *testing.T) {
	requireTHP(t)
	a := newAlloc(t, alloc.Config{HugePages: alloc.HugePagesLarge})
	fill := func(b []byte, n int) {
		for i := 0; i < n; i += 4096 {
			b[i] = byte(i>>12) | 1
		}
	}
	check := func(b []byte, n int) {
		t.Helper()
		for i := 0; i < n; i += 4096 {
			if b[i] != byte(i>>12)|1 {
				t.Fatalf("byte %d lost: %d", i, b[i])
			}
		}
		assert.Zero(t, addr(b)%huge, "aligned at %#x", addr(b))
		assert.True(t, smapsOf(t, addr(b)).HasFlag("hg"))
	}

	b, err := a.Malloc(1 << 20) // not huge yet
	require.NoError(t, err)
	fill(b, len(b))
	b, err = a.Realloc(b, 8<<20) // becomes huge: moved to an aligned range, advised
	require.NoError(t, err)
	check(b, 1<<20)
	fill(b, len(b))

	// Take the address space just after the block: growing must move it.
	end := addr(b) + uintptr(len(b))
	blocker, _, errno := unix.Syscall6(unix.SYS_MMAP, end, 4096, unix.PROT_READ,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uintptr(0), 0)
	if errno != unix.EEXIST { // EEXIST: something is there already, as good
		require.Zero(t, errno)
		defer unix.Syscall(unix.SYS_MUNMAP, blocker, 4096, 0)
		require.Equal(t, end, blocker)
	}
	old := addr(b)
	b, err = a.Realloc(b, 16<<20)
	require.NoError(t, err)
	assert.NotEqual(t, old, addr(b), "moved")
	check(b, 8<<20)
	touch(b[8<<20:])
	assert.Positive(t, smapsOf(t, addr(b)).AnonHugePages, "huge pages survive the move")

	old = addr(b)
	b, err = a.Realloc(b, 4<<20) // a shrink stays put
	require.NoError(t, err)
	assert.Equal(t, old, addr(b))
	check(b, 4<<20)
	require.NoError(t, a.Free(b))
}

// With huge pages on for the region, moving the break down and Trim still
// give memory back, only in coarser steps.
func TestHugePagesRegionRelease(t *testing.T) {
	requireTHP(t)
	const blockSize, total = 64 << 10, 40 << 20 // mid-size blocks: page runs of the region
	fillRegion := func(a *alloc.Allocator) [][]byte {
		var bs [][]byte
		for n := 0; n < total; n += blockSize {
			b, err := a.Malloc(blockSize)
			require.NoError(t, err)
			touch(b)
			bs = append(bs, b)
		}
		return bs
	}
	for _, h := range []alloc.HugePages{alloc.HugePagesOff, alloc.HugePagesAll} {
		t.Run(h.String()+"/top", func(t *testing.T) {
			a := newAlloc(t, alloc.Config{HugePages: h})
			bs := fillRegion(a)
			s := a.Stats()
			assert.GreaterOrEqual(t, s.Resident, uint64(total))
			if h == alloc.HugePagesAll {
				assert.Zero(t, s.ArenaBytes%huge, "the break stops on huge page boundaries")
				assert.True(t, smapsOf(t, addr(bs[0])).HasFlag("hg"))
				assert.Positive(t, s.HugeResident)
			}
			for _, b := range bs {
				require.NoError(t, a.Free(b))
			}
			s = a.Stats()
			t.Logf("%s: after freeing all, arena %d, resident %d, in huge pages %d", h, s.ArenaBytes, s.Resident, s.HugeResident)
			assert.LessOrEqual(t, s.ArenaBytes, uint64(huge), "the break moved down, keeping at most one huge page")
			assert.LessOrEqual(t, s.Resident, uint64(huge))
		})
		t.Run(h.String()+"/trim", func(t *testing.T) {
			a := newAlloc(t, alloc.Config{HugePages: h, PurgeDelay: alloc.PurgeNever}) // until Trim, as glibc

			bs := fillRegion(a)
			pin, err := a.Malloc(blockSize) // pins the top: the break cannot move down
			require.NoError(t, err)
			touch(pin)
			for _, b := range bs {
				require.NoError(t, a.Free(b))
			}
			trapped := a.Stats().Resident
			assert.GreaterOrEqual(t, trapped, uint64(total), "free memory below a live block stays resident")
			released := a.Trim()
			s := a.Stats()
			t.Logf("%s: Trim released %d, resident %d -> %d, in huge pages %d", h, released, trapped, s.Resident, s.HugeResident)
			assert.GreaterOrEqual(t, released, total)
			assert.Less(t, s.Resident, uint64(1<<20), "the huge page under the pinned block is split and its free part released")
			b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(pin))), blockSize)
			assert.EqualValues(t, 1, b[0], "the live block is untouched")
			require.NoError(t, a.Free(pin))
		})
	}
}

// TestHugePagesTrimKeepsDirtyBytes: with huge pages on for the region,
// Trim releases every free run, even one known zero; it must not count
// those as dirty pages released, or DirtyBytes underflows (issue 11, item
// 8: 18446744073709494272 after two Trims).
func TestHugePagesTrimKeepsDirtyBytes(t *testing.T) {
	requireTHP(t)
	a := newAlloc(t, alloc.Config{HugePages: alloc.HugePagesAll})
	var bs [][]byte
	for range 101 {
		b, err := a.Malloc(40000)
		require.NoError(t, err)
		touch(b)
		bs = append(bs, b)
	}
	for _, b := range bs[:100] {
		require.NoError(t, a.Free(b))
	}
	for range 2 {
		a.Trim()
		s := a.Stats()
		assert.LessOrEqual(t, s.DirtyBytes, s.FreeBytes, "dirty free bytes are free bytes")
	}
	require.NoError(t, a.Free(bs[100]))
}
