package percpu

import (
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPin: the id is a P's, and pinning nests with the runtime's own count.
func TestPin(t *testing.T) {
	id := Pin()
	Unpin()
	require.GreaterOrEqual(t, id, 0)
	require.Less(t, id, runtime.GOMAXPROCS(0))
}

// TestQuiesce: goroutines use locks in pinned sections while Quiesce
// retires them; it returns, and afterwards a section finds its lock usable
// only where the build has no lock to retire (the normal build, where the
// stop-the-world is what waits).
func TestQuiesce(t *testing.T) {
	locks := make([]*Lock, 4)
	for i := range locks {
		locks[i] = new(Lock)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				Pin()
				if l := locks[g]; l.Acquire() {
					l.Release()
				}
				Unpin()
			}
		}()
	}
	Quiesce(len(locks), func(i int) *Lock { return locks[i] })
	close(stop)
	wg.Wait()
	for _, l := range locks {
		Pin()
		ok := l.Acquire()
		if ok {
			l.Release()
		}
		Unpin()
		require.Equal(t, !raceEnabled, ok, "a retired lock refuses (race builds)")
	}
	Quiesce(0, nil) // nothing taken out: nothing to wait for
}
