package alloc_test

import (
	"testing"
	"unsafe"

	"github.com/brkmap/alloc"
	"github.com/stretchr/testify/require"
)

// Attacks on the medium path outside the gate (gate.go): a Malloc or Free
// that goes to the best-fit heap's lock without entering the gate, and
// Close.

// frontHeldDamaged leaves a block of 1500 bytes in this P's front (freed
// without the lock), its header overwritten by a write past the end of
// the live block before it, and returns that block: the next drain of
// the fronts (Trim, Close) reports the chunk.
func frontHeldDamaged(t *testing.T, a *alloc.Allocator) []byte {
	t.Helper()
	for range 1000 {
		x, err := a.Malloc(1500)
		require.NoError(t, err)
		y, err := a.Malloc(1500)
		require.NoError(t, err)
		usable := a.UsableSize(x)
		if addr(x)+uintptr(usable)+8 != addr(y) {
			continue // not neighbours: both stay live
		}
		before := a.Stats().FitCachedBytes
		require.NoError(t, a.Free(y))
		if a.Stats().FitCachedBytes == before {
			continue // freed under the lock (another P than the one whose front the first Malloc made)
		}
		hdr := (*uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(x)), usable)) // y's chunk's header
		*hdr = 0
		return x
	}
	t.Fatal("no free went into a front in 1000 tries")
	return nil
}

// TestMediumMallocAfterCloseDeliversNothing: Close's drain of the fronts
// finds the chunk a front held damaged and queues its report; a Malloc
// of a medium size after Close is refused (ErrClosed), as every call
// after Close, and delivers nothing: with no OnCorruption it must not
// panic with a report it did not find. (A medium Malloc enters no gate:
// fitMalloc delivered whatever the queue held, even when the heap had
// refused it.)
func TestMediumMallocAfterCloseDeliversNothing(t *testing.T) {
	a, err := alloc.New(alloc.Config{PurgeDelay: alloc.PurgeNever})
	require.NoError(t, err)
	frontHeldDamaged(t, a)
	require.NoError(t, a.Close()) // reports the chunk, delivered to nobody
	for _, n := range []int{1500, 3000, 20000} {
		var b []byte
		r := callRecovered(func() { b, err = a.Malloc(n) })
		require.Nil(t, r, "Malloc(%d) after Close panicked", n)
		require.ErrorIs(t, err, alloc.ErrClosed, n)
		require.Nil(t, b)
		l := a.NewLocal()
		r = callRecovered(func() { b, err = l.Malloc(n) })
		require.Nil(t, r, "a Local's Malloc(%d) after Close panicked", n)
		require.ErrorIs(t, err, alloc.ErrClosed, n)
	}
}
