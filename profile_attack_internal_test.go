package alloc

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/internal/alloctest"
)

// Every medium block sampled by the best-fit heap (ProfileRate 1: all of
// them), whatever made it (Malloc, Calloc, AlignedAlloc, a cold small
// class, a Local, Realloc in place or moving, into or out of the heap)
// and whatever frees it (Free, a Local's Free, a P's front; at a rate
// that samples some, too), has its
// record dropped at its Free: once all are freed, no record is live and
// nonSlab is back to 0 — with the heap's OnFree called for sampled
// blocks only.
func TestProfileMediumRecordsDropped(t *testing.T) {
	for _, c := range []struct{ workers, rate int }{{1, 1}, {8, 1}, {8, 4 << 10}} {
		workers := c.workers
		a, err := New(Config{ProfileRate: c.rate, ColdBlocks: alloctest.AllCold})
		require.NoError(t, err)
		var wg sync.WaitGroup
		for g := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l := a.NewLocal()
				defer func() { _ = l.Close() }()
				var keep [][]byte
				for i := range 300 {
					n := 64 + (g*977+i*1237)%(32<<10)
					var b []byte
					var err error
					switch i % 6 {
					case 0:
						b, err = a.Malloc(n)
					case 1:
						b, err = a.Calloc(n)
					case 2:
						b, err = a.AlignedAlloc(64, n)
					case 3:
						b, err = l.Malloc(n)
					case 4:
						b, err = a.Malloc(n)
						if err == nil {
							b, err = a.Realloc(b, n/2+1) // in place
						}
						if err == nil {
							b, err = a.Realloc(b, n+3000) // grown: in place or moved
						}
					case 5:
						b, err = a.Malloc(3000)
						if err == nil {
							b, err = a.Realloc(b, 100<<10) // out of the heap
						}
						if err == nil {
							b, err = a.Realloc(b, 2000) // back in
						}
					}
					if err != nil {
						t.Error(err)
						return
					}
					keep = append(keep, b)
					if len(keep) > 16 {
						x := keep[0]
						keep = keep[1:]
						if i%2 == 0 {
							err = l.Free(x)
						} else {
							err = a.Free(x)
						}
						if err != nil {
							t.Error(err)
							return
						}
					}
				}
				for _, b := range keep {
					if err := a.Free(b); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		s := a.prof
		s.mu.Lock()
		live := len(s.live)
		s.mu.Unlock()
		require.Zero(t, live, "%d workers: records of freed blocks still live", workers)
		require.Zero(t, s.nonSlab.Load(), "%d workers: nonSlab", workers)
		for _, r := range a.HeapProfile().Records {
			require.Zero(t, r.InUseObjects(), "%d workers", workers)
		}
		require.NoError(t, a.Close())
	}
}
