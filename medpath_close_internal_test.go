package alloc

import (
	"errors"
	"testing"
	"time"

	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/stretchr/testify/require"
)

// TestMediumCallsWhileClosing: the medium path outside the gate (gate.go)
// in the window between Close's start and its fit.Close: Close is held
// in idle.stop by an idle pass that waits for a.moves, which the test
// holds. A medium Malloc or Free there is served (the heap is still open)
// or refused with ErrClosed, never anything else; its block is usable
// until Close goes on; every gated call is refused; once Close is done
// every call is refused, and the profile counts every sampled block
// freed.
func TestMediumCallsWhileClosing(t *testing.T) {
	a, err := New(Config{ColdBlocks: alloctest.AllCold, PurgeInBackground: true, PurgeDelay: time.Millisecond, ProfileRate: 1})
	require.NoError(t, err)
	var held [][]byte
	for i := range 8 {
		b, err := a.Malloc(1100 + 700*i)
		require.NoError(t, err)
		held = append(held, b)
	}
	a.moves.RLock()
	time.Sleep(50 * time.Millisecond) // the idle ticker fires: its pass waits for a.moves
	closed := make(chan error)
	go func() { closed <- a.Close() }()
	for !a.closed.Load() {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-closed:
		a.moves.RUnlock()
		require.NoError(t, err)
		t.Skip("the idle pass was not waiting: Close did not stop in idle.stop")
	default:
	}
	servedOrClosed := func(what string, err error) bool {
		t.Helper()
		if err != nil {
			require.ErrorIs(t, err, ErrClosed, what)
			return false
		}
		return true
	}
	for i, n := range []int{1500, 3000, 20000} {
		b, err := a.Malloc(n)
		if servedOrClosed("Malloc", err) {
			require.Len(t, b, n)
			for k := range b {
				b[k] = byte(i) // mapped until Close goes on
			}
			servedOrClosed("Free of a block Malloc served while closing", a.Free(b))
		}
		servedOrClosed("Free", a.Free(held[i]))
	}
	_, err = a.Realloc(held[3], 5000)
	require.ErrorIs(t, err, ErrClosed)
	_, err = a.Calloc(3000)
	require.ErrorIs(t, err, ErrClosed)
	_, err = a.NewLocal().Malloc(3000)
	require.ErrorIs(t, err, ErrClosed)
	require.Zero(t, a.UsableSize(held[3]))
	a.moves.RUnlock()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close still running 10 s after the idle pass could go on")
	}
	_, err = a.Malloc(3000)
	require.ErrorIs(t, err, ErrClosed)
	for _, b := range held[3:] {
		require.True(t, errors.Is(a.Free(b), ErrClosed))
	}
	for _, r := range a.HeapProfile().Records {
		require.Equal(t, r.AllocObjects, r.FreeObjects, "a sampled block still live after Close")
	}
}
