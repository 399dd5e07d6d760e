package shm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAllocFree(t *testing.T) {
	p := newTestPool(t, 4<<20)
	rep := mustCheck(t, p)
	assert.Zero(t, rep.LiveBlocks)
	free0 := rep.FreePages

	sizes := []int{0, 1, 16, 17, 100, 1000, MaxSmall, MaxSmall + 1, 3 * PageSize, 100 << 10}
	refs := make([]Ref, len(sizes))
	for i, n := range sizes {
		r, b, err := p.Alloc(n)
		require.NoError(t, err, n)
		require.Len(t, b, n)
		alloctest.Fill(b, uint32(i))
		refs[i] = r
		u, err := p.Bytes(r)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, len(u), n)
	}
	rep = mustCheck(t, p)
	assert.Equal(t, uint64(len(sizes)), rep.LiveBlocks)
	for i, r := range refs {
		b, err := p.Bytes(r)
		require.NoError(t, err)
		assert.Equal(t, -1, alloctest.Intact(b[:sizes[i]], uint32(i)), "block %d", i)
		require.NoError(t, p.Free(r))
		assert.ErrorIs(t, p.Free(r), ErrDoubleFree, "size %d", sizes[i])
		_, err = p.Bytes(r)
		assert.ErrorIs(t, err, ErrInvalidRef)
	}
	rep = mustCheck(t, p)
	assert.Zero(t, rep.LiveBlocks)
	assert.Zero(t, rep.LiveBytes)
	// Empty slabs went back except one a class; all runs coalesced.
	assert.LessOrEqual(t, free0-rep.FreePages, rep.SlabPages)
	assert.NoError(t, p.Free(0))
}

func TestBadFrees(t *testing.T) {
	p := newTestPool(t, 1<<20)
	q := newTestPool(t, 1<<20)
	small, _, err := p.Alloc(64)
	require.NoError(t, err)
	large, _, err := p.Alloc(3 * PageSize)
	require.NoError(t, err)
	foreign, _, err := q.Alloc(64)
	require.NoError(t, err)
	before := mustCheck(t, p)

	tag := uint64(small) >> refShift
	cases := []struct {
		name string
		ref  Ref
		want error
	}{
		{"foreign", foreign, ErrInvalidFree},
		{"inside small", small + 8, ErrInvalidFree},
		{"inside large", large + PageSize, ErrInvalidFree},
		{"large plus 16", large + 16, ErrInvalidFree},
		{"header", Ref(tag << refShift), ErrInvalidFree},
		{"past the end", Ref(tag<<refShift | uint64(p.Size())), ErrInvalidFree},
		{"never carved", small + 64*5, ErrInvalidFree},
		{"free run", Ref(tag<<refShift | (p.h.NPages-1)*PageSize), ErrInvalidFree},
	}
	for _, c := range cases {
		err := p.Free(c.ref)
		assert.ErrorIs(t, err, c.want, c.name)
		_, err = p.Bytes(c.ref)
		assert.ErrorIs(t, err, ErrInvalidRef, c.name)
	}
	after := mustCheck(t, p)
	assert.Equal(t, before, after, "a bad free changes nothing")
	require.NoError(t, p.Free(small))
	require.NoError(t, p.Free(large))
	assert.ErrorIs(t, p.Free(large), ErrDoubleFree)
	assert.ErrorIs(t, p.Free(small), ErrDoubleFree)
	mustCheck(t, p)

	_, _, err = p.Alloc(-1)
	assert.ErrorIs(t, err, ErrInvalidSize)
	_, _, err = p.Alloc(2 << 20)
	assert.ErrorIs(t, err, ErrInvalidSize)
	_, _, err = p.Alloc(1 << 20)
	assert.ErrorIs(t, err, ErrNoMemory, "the header and page table take room")
	mustCheck(t, p)
}

func TestFull(t *testing.T) {
	p := newTestPool(t, 256<<10)
	var refs []Ref
	for {
		r, b, err := p.Alloc(200)
		if err != nil {
			require.ErrorIs(t, err, ErrNoMemory)
			break
		}
		alloctest.Fill(b, uint32(len(refs)))
		refs = append(refs, r)
	}
	rep := mustCheck(t, p)
	assert.Zero(t, rep.FreePages)
	assert.Equal(t, uint64(len(refs)), rep.LiveBlocks)
	for i, r := range refs {
		b, err := p.Bytes(r)
		require.NoError(t, err)
		require.Equal(t, -1, alloctest.Intact(b[:200], uint32(i)))
		require.NoError(t, p.Free(r))
	}
	rep = mustCheck(t, p)
	assert.Zero(t, rep.LiveBlocks)
	// Everything but the one slab kept for the class is one free run again.
	assert.Equal(t, uint64(1), rep.Slabs)
	assert.LessOrEqual(t, rep.FreeRuns, uint64(2))
}

// TestRandomOps holds the pool against a model: random sizes and frees,
// every block's contents checked before it is freed, the verifier now
// and then.
func TestRandomOps(t *testing.T) {
	p := newTestPool(t, 16<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	type blk struct {
		r    Ref
		n    int
		seed uint32
	}
	var live []blk
	for i := range 20000 {
		if len(live) > 0 && rng.IntN(100) < 45 {
			j := rng.IntN(len(live))
			b := live[j]
			s, err := p.Bytes(b.r)
			require.NoError(t, err)
			require.Equal(t, -1, alloctest.Intact(s[:b.n], b.seed), "block %v", b.r)
			require.NoError(t, p.Free(b.r))
			live[j] = live[len(live)-1]
			live = live[:len(live)-1]
		} else {
			n := rng.IntN(512)
			if rng.IntN(20) == 0 {
				n = rng.IntN(64 << 10)
			}
			r, s, err := p.Alloc(n)
			if errors.Is(err, ErrNoMemory) {
				continue
			}
			require.NoError(t, err)
			alloctest.Fill(s, uint32(i))
			live = append(live, blk{r, n, uint32(i)})
		}
		if i%2000 == 0 {
			rep := mustCheck(t, p)
			require.Equal(t, uint64(len(live)), rep.LiveBlocks)
		}
	}
	for _, b := range live {
		require.NoError(t, p.Free(b.r))
	}
	assert.Zero(t, mustCheck(t, p).LiveBlocks)
}

// Two attachments of one pool in one process map it at two addresses:
// a block written through one is read through the other by its Ref.
func TestTwoAttachments(t *testing.T) {
	p := newTestPool(t, 1<<20)
	dup, err := os.OpenFile("/proc/self/fd/"+itoa(int(p.File().Fd())), os.O_RDWR, 0)
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	q, err := Attach(dup)
	require.NoError(t, err)
	defer q.Close()
	require.NotEqual(t, p.base, q.base)
	r, b, err := p.Alloc(100)
	require.NoError(t, err)
	copy(b, "through p")
	got, err := q.Bytes(r)
	require.NoError(t, err)
	assert.Equal(t, "through p", string(got[:9]))
	require.NoError(t, q.Free(r))
	assert.ErrorIs(t, p.Free(r), ErrDoubleFree)
	mustCheck(t, p)
}

func itoa(i int) string { return string(appendInt(nil, i)) }

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, b, 0o600))
		return path
	}
	_, err := Open(write("empty", nil))
	assert.ErrorIs(t, err, ErrTooSmall)
	_, err = Open(write("zeros", make([]byte, 64<<10)))
	assert.ErrorIs(t, err, ErrNotPool)
	_, err = Open(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)

	path := filepath.Join(dir, "pool")
	p, err := CreateFile(path, 256<<10)
	require.NoError(t, err)
	require.NoError(t, p.Close())
	_, err = CreateFile(path, 256<<10)
	assert.ErrorIs(t, err, os.ErrExist)
	_, err = CreateFile(filepath.Join(dir, "tiny"), 4096)
	assert.ErrorIs(t, err, ErrInvalidSize)

	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	bad := append([]byte(nil), orig...)
	bad[8] = 99 // version
	_, err = Open(write("version", bad))
	assert.ErrorIs(t, err, ErrVersion)
	_, err = Open(write("short", orig[:128<<10]))
	assert.ErrorIs(t, err, ErrTooSmall)
	bad = append([]byte(nil), orig...)
	bad[PageSize+8*entrySize] ^= 0xff // a page-table tag
	_, err = Open(write("table", bad))
	assert.ErrorIs(t, err, ErrCorrupt)

	p, err = Open(path)
	require.NoError(t, err)
	assert.ErrorIs(t, p.Close(), nil)
	assert.ErrorIs(t, p.Close(), ErrClosed)
	_, _, err = p.Alloc(1)
	assert.ErrorIs(t, err, ErrClosed)
}

// A file longer than its pool (someone extended it): the pool is the
// header's size, and Close unmaps all that was mapped.
func TestFileLongerThanPool(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pool")
	p, err := CreateFile(path, 256<<10)
	require.NoError(t, err)
	require.NoError(t, p.Close())
	require.NoError(t, os.Truncate(path, 1<<20))
	q, err := Open(path)
	require.NoError(t, err)
	assert.Equal(t, 256<<10, q.Size())
	assert.Equal(t, uint64(1<<20), q.mapped)
	_, _, err = q.Alloc(512 << 10)
	assert.ErrorIs(t, err, ErrInvalidSize, "more than the pool")
	_, _, err = q.Alloc(255 << 10)
	assert.ErrorIs(t, err, ErrNoMemory, "the pool's data pages, not the file's")
	require.NoError(t, q.Close())
}

// Goroutines of one process share an attachment: the lock is the same
// word, taken by each in turn.
func TestGoroutines(t *testing.T) {
	p := newTestPool(t, 16<<20)
	const workers, n = 4, 5000
	errc := make(chan error, workers)
	for w := range workers {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			type blk struct {
				r    Ref
				b    []byte
				seed uint32
			}
			var live []blk
			for i := range n {
				if len(live) > 50 || (len(live) > 0 && rng.IntN(2) == 0) {
					x := live[0]
					live = live[1:]
					if j := alloctest.Intact(x.b, x.seed); j >= 0 {
						errc <- fmt.Errorf("worker %d: block %v corrupt at %d", w, x.r, j)
						return
					}
					if err := p.Free(x.r); err != nil {
						errc <- err
						return
					}
					continue
				}
				sz := 1 + rng.IntN(600)
				if rng.IntN(50) == 0 {
					sz = 5000 + rng.IntN(20000)
				}
				r, b, err := p.Alloc(sz)
				if err != nil {
					errc <- err
					return
				}
				seed := uint32(w<<20 | i)
				alloctest.Fill(b, seed)
				live = append(live, blk{r, b, seed})
			}
			for _, x := range live {
				if err := p.Free(x.r); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for range workers {
		require.NoError(t, <-errc)
	}
	assert.Zero(t, mustCheck(t, p).LiveBlocks)
	assert.Zero(t, inLock.Load())
}
