package fit

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/internal/errs"
)

// panics runs f and returns whether it panicked.
func panics(f func()) (did bool) {
	defer func() {
		if recover() != nil {
			did = true
		}
	}()
	f()
	return false
}

// notLocked fails the test if the heap's lock is still held: an Alloc
// that does not return within a few seconds is a heap left locked.
func notLocked(t *testing.T, h *Heap, what string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := h.Alloc(3000)
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err, what)
	case <-time.After(5 * time.Second):
		// not t.Fatalf: the test's cleanup, Close, would hang on the lock
		panic(what + ": the heap is left locked (the next Alloc hangs)")
	}
}

// TestHookPanicUnlocks: OnFree and OnCorruption are the caller's code,
// called under the heap's lock. A panic in one (or a runtime error), recovered
// by the caller, leaves the heap unlocked, whether the lock's holder
// unlocks at each return (Free, AllocSampled) or in a defer (Usable):
// the next call does not hang, and no lock is unlocked twice.
func TestHookPanicUnlocks(t *testing.T) {
	t.Run("OnFree in Free", func(t *testing.T) {
		armed := false
		h, _ := newHeapWith(t, Options{ProfileRate: 1, OnFree: func(uintptr) {
			if armed {
				panic("OnFree")
			}
		}})
		bs := allocFilled(t, h, 2, 3000)
		armed = true
		require.True(t, panics(func() { _, _ = h.Free(h.region.Lookup(bs[0].p), bs[0].p) }))
		armed = false
		notLocked(t, h, "OnFree")
		freeIntact(t, h, bs[0]) // OnFree is called before the block is freed: still in use
		freeIntact(t, h, bs[1])
		walk(t, h)
	})
	t.Run("runtime error in OnFree", func(t *testing.T) {
		var m map[uintptr]bool
		h, _ := newHeapWith(t, Options{ProfileRate: 1, OnFree: func(p uintptr) { m[p] = true }}) // a write to a nil map
		bs := allocFilled(t, h, 1, 3000)
		require.True(t, panics(func() { _, _ = h.Free(h.region.Lookup(bs[0].p), bs[0].p) }))
		m = map[uintptr]bool{}
		notLocked(t, h, "runtime error")
		freeIntact(t, h, bs[0])
		require.True(t, m[bs[0].p])
	})
	t.Run("OnCorruption in Free", func(t *testing.T) {
		h, _ := newHeapWith(t, Options{OnCorruption: func(addr, size uintptr, detail string) { panic(detail) }})
		bs := allocFilled(t, h, 3, 40000)          // no fast bin's size: the chunk after is checked
		freeBlock(t, h, bs[1])                     // binned: bs[2] follows
		*wordAt(h, bs[1].p, ^uintptr(7)) ^= 0x1000 // bs[0] written past its end: the free chunk's header
		var err error
		require.True(t, panics(func() { _, err = h.Free(h.region.Lookup(bs[0].p), bs[0].p) }), "err %v", err)
		notLocked(t, h, "OnCorruption in Free")
		_, err = h.Free(h.region.Lookup(bs[0].p), bs[0].p)
		require.ErrorIs(t, err, errs.ErrInvalidFree, "reported once, refused again")
		require.True(t, intact(h, bs[0]))
	})
	t.Run("OnCorruption in AllocSampled", func(t *testing.T) {
		h, _ := newHeapWith(t, Options{OnCorruption: func(addr, size uintptr, detail string) { panic(detail) }})
		bs := allocFilled(t, h, 2, 3000)
		freeBlock(t, h, bs[1]) // merged into the top's last free chunk
		require.Equal(t, bs[1].p-2*overhead, h.wild)
		*wordAt(h, bs[1].p, 0) ^= 0x10 // its forward link
		require.True(t, panics(func() { _, _ = h.Alloc(3000) }))
		notLocked(t, h, "OnCorruption in AllocSampled")
		require.True(t, intact(h, bs[0]))
	})
	t.Run("OnCorruption in Resize", func(t *testing.T) {
		h, _ := newHeapWith(t, Options{OnCorruption: func(addr, size uintptr, detail string) { panic(detail) }})
		bs := allocFilled(t, h, 3, 40000)
		freeBlock(t, h, bs[1])
		*wordAt(h, bs[1].p, 0) ^= 0x10 // a write after free: its forward link
		// Resize unlocks in a defer: the panic is not to unlock it twice
		// (a fatal error, not a panic)
		require.True(t, panics(func() { _, _ = h.Resize(h.region.Lookup(bs[0].p), bs[0].p, 60000, 0) }))
		notLocked(t, h, "OnCorruption in Resize")
		require.True(t, intact(h, bs[0]))
	})
}
