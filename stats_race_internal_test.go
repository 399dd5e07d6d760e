package alloc

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStatsConcurrentWithMallocFree: Stats reads every P's cache while
// other goroutines allocate and free through them (issue 11, item 3: in
// race builds a pinned goroutine blocked on the cache mutex Stats held,
// and the runtime died with "schedule: holding locks"). Run it with -race.
func TestStatsConcurrentWithMallocFree(t *testing.T) {
	// more Ps than cores: a holder of a cache's mutex is often descheduled
	// mid-section, which is when a blocking lock would park
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	a, err := New(Config{})
	require.NoError(t, err)
	defer a.Close()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var keep [][]byte
			for i := 0; !stop.Load(); i++ {
				b, err := a.Malloc(16 + (w*7+i)%500)
				if !assert.NoError(t, err) {
					return
				}
				keep = append(keep, b)
				if len(keep) > 64 {
					for _, b := range keep {
						assert.NoError(t, a.Free(b))
					}
					keep = keep[:0]
				}
			}
			for _, b := range keep {
				assert.NoError(t, a.Free(b))
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				a.Stats()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	assert.Zero(t, a.Stats().LiveBlocks)
}
