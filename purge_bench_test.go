package alloc_test

import (
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brkmap/alloc"
)

// BenchmarkLatencyDuringPurge measures the latency of operations that take
// the region's lock while another goroutine keeps giving back touched 64
// MiB request arenas, each released by the purge at once
// (PurgeImmediately): a mid-size Malloc+Free pair (a run of the region
// each), and small Mallocs and Frees whose slab refills and releases reach
// the region. Each op is timed alone; the metrics are the percentiles of
// those samples, the worst, and how many took over a millisecond
// (stalls), and the time goroutines spent blocked on a mutex meanwhile
// (runtime/metrics' /sync/mutex/wait/total: the region's lock is one),
// which the load of the machine does not blur as it does the tail of the
// latencies. The purge's madvise of 64 MiB takes milliseconds: an op that
// waits for it shows in max, stalls and mutex-wait. The ops work below a
// live block, the request arenas above it. The percentiles are exact
// (every sample kept and sorted).
//
//	go test -run '^$' -bench LatencyDuringPurge -benchtime 1000000x -count 3 .
func BenchmarkLatencyDuringPurge(b *testing.B) {
	b.Run("mid-64KiB", func(b *testing.B) {
		latencyDuringPurge(b, func(a *alloc.Allocator, lat []time.Duration) {
			for i := range lat {
				t0 := time.Now()
				p, err := a.Malloc(64 << 10)
				if err != nil {
					b.Fatal(err)
				}
				p[0] = 1
				if err := a.Free(p); err != nil {
					b.Fatal(err)
				}
				lat[i] = time.Since(t0)
			}
		})
	})
	b.Run("small-3KiB", func(b *testing.B) {
		latencyDuringPurge(b, func(a *alloc.Allocator, lat []time.Duration) {
			// 4096 Mallocs, then 4096 Frees, and again: the slabs are
			// carved from the region and given back to it as they go
			held := make([][]byte, 0, 4096)
			filling := true
			for i := range lat {
				t0 := time.Now()
				if filling {
					p, err := a.Malloc(3 << 10)
					if err != nil {
						b.Fatal(err)
					}
					p[0] = 1
					held = append(held, p)
				} else {
					if err := a.Free(held[len(held)-1]); err != nil {
						b.Fatal(err)
					}
					held = held[:len(held)-1]
				}
				lat[i] = time.Since(t0)
				switch {
				case filling && len(held) == cap(held):
					filling = false
				case !filling && len(held) == 0:
					filling = true
				}
			}
			for _, p := range held {
				_ = a.Free(p)
			}
		})
	})
}

func latencyDuringPurge(b *testing.B, ops func(*alloc.Allocator, []time.Duration)) {
	a, err := alloc.New(alloc.Config{PurgeDelay: alloc.PurgeImmediately})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	// One round of the ops first, then a live block above them: their runs
	// and slabs are then below it, and they neither grow the region nor
	// move its break down (mprotect, which waits for the kernel's
	// mmap_lock while another thread's madvise holds it: a stall this
	// benchmark is not about).
	ops(a, make([]time.Duration, 8192))
	fence, err := a.Malloc(64 << 10)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Free(fence)
	lat := make([]time.Duration, b.N)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var purges int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			sc := a.NewScratch()
			p, err := sc.Alloc(64 << 20)
			if err != nil {
				b.Error(err)
				return
			}
			clear(p) // touched: the purge has every page to release
			if err := sc.Free(); err != nil {
				b.Error(err)
				return
			}
			purges++
		}
	}()
	time.Sleep(20 * time.Millisecond) // the first release under way
	wait := []metrics.Sample{{Name: "/sync/mutex/wait/total:seconds"}}
	metrics.Read(wait)
	waited := wait[0].Value.Float64()
	b.ResetTimer()
	ops(a, lat)
	b.StopTimer()
	metrics.Read(wait)
	waited = wait[0].Value.Float64() - waited
	stop.Store(true)
	wg.Wait()
	slices.Sort(lat)
	at := func(q float64) float64 { return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Nanoseconds()) }
	stalls := len(lat) - below(lat, time.Millisecond)
	b.ReportMetric(at(0.5), "p50-ns")
	b.ReportMetric(at(0.99), "p99-ns")
	b.ReportMetric(at(0.9999), "p99.99-ns")
	b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds()), "max-ns")
	b.ReportMetric(float64(stalls), "stalls>1ms")
	b.ReportMetric(float64(purges), "purges")
	b.ReportMetric(waited*1e3, "mutex-wait-ms")
}

// below returns how many of the sorted latencies are below d.
func below(lat []time.Duration, d time.Duration) int {
	n, _ := slices.BinarySearch(lat, d)
	return n
}
