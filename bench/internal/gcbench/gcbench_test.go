package gcbench

import (
	"bytes"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/brkmap/alloc/internal/procfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Both stores run the workload to the end, small, and report what they
// measured; the off-heap one keeps its values off the Go heap.
func TestGCStores(t *testing.T) {
	cfg := Config{Entries: 20000, Ops: 50000, Garbage: 64, Get: 0.8, Set: 0.15, Seed: 1}
	var rs []Result
	for _, store := range Stores {
		r, err := RunStore(store, cfg)
		require.NoError(t, err, store)
		assert.Equal(t, store, r.Store)
		assert.Positive(t, r.GetNs, store)
		assert.Positive(t, r.SetNs, store)
		assert.Positive(t, r.DeleteNs, store)
		assert.Positive(t, r.Hits, store)
		assert.Positive(t, r.RSS, store)
		assert.GreaterOrEqual(t, r.PeakRSS, r.RSS, store)
		assert.GreaterOrEqual(t, r.GCFraction, 0.0, store)
		assert.LessOrEqual(t, r.GCFraction, 1.0, store)
		rs = append(rs, r)
	}
	assert.Zero(t, rs[0].OffHeap, "the heap store has nothing off-heap")
	// 20000 values of 32 B–1 KiB: at least 640 KB resident off-heap.
	assert.Greater(t, rs[1].OffHeap, uint64(20000*32))
	// The README's direction: off-heap values leave the Go heap smaller
	// (there: 381 MiB live against 2712 MiB at 5 M entries). At this size
	// the values alone are 20000 × ≈300 B, so at least half of them gone
	// from the heap shows.
	t.Logf("Go heap live: heap store %d B, off-heap store %d B", rs[0].HeapLive, rs[1].HeapLive)
	assert.Less(t, rs[1].HeapLive, rs[0].HeapLive-20000*300/2, "off-heap: a smaller Go heap")

	var out bytes.Buffer
	require.NoError(t, PrintTable(&out, cfg, 1, rs))
	for _, row := range []string{"get ns/op", "set ns/op", "gc cpu fraction", "gc cycles", "pause p99 µs", "process RSS MiB"} {
		assert.Contains(t, out.String(), row)
	}
}

// Keys are 8 to 32 bytes and distinct; value sizes 32 B to 1 KiB.
func TestGCKeysAndValues(t *testing.T) {
	seen := map[string]bool{}
	lens := map[int]bool{}
	for id := range uint64(10000) {
		k := gcKey(nil, id)
		require.GreaterOrEqual(t, len(k), 8)
		require.LessOrEqual(t, len(k), 32)
		require.False(t, seen[string(k)], "key %d repeats", id)
		seen[string(k)] = true
		lens[len(k)] = true
	}
	assert.Len(t, lens, 25, "every length from 8 to 32 occurs")
	r := newTestRand()
	for range 10000 {
		n := gcValueSize(r)
		require.GreaterOrEqual(t, n, 32)
		require.LessOrEqual(t, n, 1024)
	}
}

// Quantiles of a runtime/metrics histogram are the upper bounds of the
// buckets that hold them.
func TestHistQuantile(t *testing.T) {
	h := hist{buckets: []float64{0, 1, 2, 4, math.Inf(1)}, counts: []uint64{50, 40, 9, 1}}
	assert.Equal(t, uint64(100), h.total())
	assert.Equal(t, 1.0, h.quantile(0.5))
	assert.Equal(t, 4.0, h.quantile(0.99))
	assert.Equal(t, 4.0, h.max(), "the +Inf bucket reports its lower bound")
	d := histDelta(h, hist{buckets: h.buckets, counts: []uint64{50, 0, 0, 1}})
	assert.Equal(t, 2.0, d.quantile(0.5))
	assert.Equal(t, 4.0, d.max())
	assert.Zero(t, hist{buckets: h.buckets, counts: make([]uint64, 4)}.quantile(0.5))
}

// The metrics read are the ones runtime/metrics documents, and GC work
// shows in them.
func TestReadGCMetrics(t *testing.T) {
	m0 := readGCMetrics()
	runtime.GC()
	m1 := readGCMetrics()
	assert.Greater(t, m1.cycles, m0.cycles)
	assert.Greater(t, histDelta(m1.pauses, m0.pauses).total(), uint64(0))
	assert.Greater(t, m1.totalCPU, m0.totalCPU)
	_, err := procfs.ReadProcMemory()
	require.NoError(t, err)
}

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }
