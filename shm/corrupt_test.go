package shm

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// openWithin runs Open(path) and fails the test if it does not return
// within d (a hang), returning its result otherwise.
func openWithin(t *testing.T, path string, d time.Duration) (*Pool, error) {
	t.Helper()
	type res struct {
		p   *Pool
		err error
	}
	c := make(chan res, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				c <- res{err: errors.New("panic")}
				t.Errorf("Open panicked: %v", r)
			}
		}()
		p, err := Open(path)
		c <- res{p, err}
	}()
	select {
	case r := <-c:
		return r.p, r.err
	case <-time.After(d):
		t.Fatalf("Open(%s) did not return in %v", filepath.Base(path), d)
		return nil, nil
	}
}

// A lock word whose pid is no process's — 0, or one the kernel reads as
// negative (kill(-1, 0) succeeds: "every process") — is a dead holder's,
// taken over, not waited for forever.
func TestLockWordImpossiblePid(t *testing.T) {
	dir := t.TempDir()
	lockOff := int64(unsafe.Offsetof(header{}.Lock))
	for _, w := range []uint64{0<<32 | 7, 0xffffffff<<32 | 7, 0x80000000<<32 | 7} {
		path := filepath.Join(dir, "pool"+itoa(int(w>>32%1000)))
		p, err := CreateFile(path, 256<<10)
		require.NoError(t, err)
		_, _, err = p.Alloc(100)
		require.NoError(t, err)
		require.NoError(t, p.Close())
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		require.NoError(t, err)
		var b [8]byte
		*(*uint64)(unsafe.Pointer(&b)) = w
		_, err = f.WriteAt(b[:], lockOff)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		q, err := openWithin(t, path, 10*time.Second)
		require.NoError(t, err, "lock word %#x", w)
		mustCheck(t, q)
		require.NoError(t, q.Close())
	}
}

// Random bytes written into a pool's metadata (header, undo log, page
// table, a slab's bitmap): Open returns — a pool that passes Check, or an
// error wrapping one of the package's sentinels — and never panics or
// hangs; an opened pool then serves and checks without panicking.
func TestCorruptMetadata(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pool")
	p, err := CreateFile(path, 2<<20)
	require.NoError(t, err)
	var refs []Ref
	for i := 0; i < 300; i++ {
		r, _, err := p.Alloc(1 + (i*97)%5000)
		require.NoError(t, err)
		refs = append(refs, r)
	}
	for i := 0; i < len(refs); i += 3 {
		require.NoError(t, p.Free(refs[i]))
	}
	meta := int((p.h.FirstData + 4) * PageSize) // header, table, the first slabs' bitmaps
	require.NoError(t, p.Close())
	orig, err := os.ReadFile(path)
	require.NoError(t, err)

	sentinels := []error{ErrCorrupt, ErrNotPool, ErrVersion, ErrTooSmall}
	rng := rand.New(rand.NewPCG(17, 17))
	n := 400
	if testing.Short() {
		n = 50
	}
	opened := 0
	for i := 0; i < n; i++ {
		bad := append([]byte(nil), orig...)
		for k := 1 + rng.IntN(8); k > 0; k-- {
			off := rng.IntN(meta)
			if rng.IntN(2) == 0 {
				off = rng.IntN(PageSize) // the header and its log, more often
			}
			if rng.IntN(2) == 0 {
				bad[off] = byte(rng.Uint32())
			} else {
				bad[off] ^= 1 << rng.IntN(8)
			}
		}
		bpath := filepath.Join(dir, "bad")
		require.NoError(t, os.WriteFile(bpath, bad, 0o600))
		q, err := openWithin(t, bpath, 10*time.Second)
		if err != nil {
			ok := false
			for _, s := range sentinels {
				ok = ok || errors.Is(err, s)
			}
			assert.True(t, ok, "case %d: Open's error wraps no sentinel: %v", i, err)
			continue
		}
		opened++
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("case %d: a pool that passed Open panicked: %v", i, r)
				}
			}()
			for _, r := range refs {
				q.Bytes(r)
				q.Free(r)
			}
			for j := 0; j < 50; j++ {
				if r, _, err := q.Alloc(1 + j*61); err == nil {
					q.Free(r)
				}
			}
			q.Stats()
			_, err = q.Check()
			assert.NoError(t, err, "case %d: a pool that passed Open fails Check after use", i)
		}()
		require.NoError(t, q.Close())
	}
	t.Logf("%d of %d corrupted files opened", opened, n)
}

// A pool attached without a check (Attach runs none: a peer may scribble
// on the metadata at any time) whose page table names an impossible size
// class: every method says ErrCorrupt rather than index out of range.
func TestCorruptClassAfterAttach(t *testing.T) {
	p := newTestPool(t, 1<<20)
	r, _, err := p.Alloc(100)
	require.NoError(t, err)
	pg := r.Offset() / PageSize
	e := p.ent(pg)
	require.Equal(t, uint64(kindSlab), tagKind(e.Tag))
	e.Tag = e.Tag&^(0xff<<classShift) | 200<<classShift // class 200 of 26

	calls := map[string]func() error{
		"Bytes": func() error { _, err := p.Bytes(r); return err },
		"Free":  func() error { return p.Free(r) },
		"Stats": func() error { _, err := p.Stats(); return err },
		"Check": func() error { _, err := p.Check(); return err },
	}
	for name, call := range calls {
		func() {
			defer func() {
				if x := recover(); x != nil {
					t.Errorf("%s panicked: %v", name, x)
				}
			}()
			assert.ErrorIs(t, call(), ErrCorrupt, name)
		}()
	}
}
