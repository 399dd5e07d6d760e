package gcbench

import (
	"math"
	"runtime/metrics"
	"slices"
)

// setGCFigures fills in what the runtime measured between before and after.
func (res *Result) setGCFigures(before, after gcMetrics) {
	if dt := after.totalCPU - before.totalCPU; dt > 0 {
		res.GCFraction = (after.gcCPU - before.gcCPU) / dt
	}
	res.GCCycles = after.cycles - before.cycles
	pauses := histDelta(after.pauses, before.pauses)
	res.Pauses = pauses.total()
	res.PauseP50, res.PauseP99, res.PauseMax = pauses.quantile(0.50), pauses.quantile(0.99), pauses.max()
	res.HeapObjects, res.HeapLive = after.heapObjects, after.heapLive
}

type gcMetrics struct {
	gcCPU, totalCPU       float64
	cycles                uint64
	pauses                hist
	heapObjects, heapLive uint64
}

var gcMetricNames = []string{
	"/cpu/classes/gc/total:cpu-seconds",
	"/cpu/classes/total:cpu-seconds",
	"/gc/cycles/total:gc-cycles",
	"/sched/pauses/total/gc:seconds",
	"/memory/classes/heap/objects:bytes",
	"/gc/heap/live:bytes",
}

func readGCMetrics() gcMetrics {
	s := make([]metrics.Sample, len(gcMetricNames))
	for i, n := range gcMetricNames {
		s[i].Name = n
	}
	metrics.Read(s)
	h := s[3].Value.Float64Histogram()
	return gcMetrics{
		gcCPU:       s[0].Value.Float64(),
		totalCPU:    s[1].Value.Float64(),
		cycles:      s[2].Value.Uint64(),
		pauses:      hist{counts: slices.Clone(h.Counts), buckets: h.Buckets},
		heapObjects: s[4].Value.Uint64(),
		heapLive:    s[5].Value.Uint64(),
	}
}

// hist is a runtime/metrics histogram: counts[i] samples fell in
// [buckets[i], buckets[i+1]).
type hist struct {
	counts  []uint64
	buckets []float64
}

func histDelta(a, b hist) hist {
	d := hist{counts: slices.Clone(a.counts), buckets: a.buckets}
	for i := range d.counts {
		d.counts[i] -= b.counts[i]
	}
	return d
}

func (h hist) total() uint64 {
	var n uint64
	for _, c := range h.counts {
		n += c
	}
	return n
}

// quantile returns the upper bound of the bucket holding the q-quantile
// (an upper bound on it, within the histogram's resolution), or 0 with no
// samples.
func (h hist) quantile(q float64) float64 {
	n := h.total()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= max(rank, 1) {
			return h.bound(i)
		}
	}
	return h.bound(len(h.counts) - 1)
}

func (h hist) max() float64 {
	for i := len(h.counts) - 1; i >= 0; i-- {
		if h.counts[i] > 0 {
			return h.bound(i)
		}
	}
	return 0
}

// bound is bucket i's upper bound, or its lower one if that is +Inf.
func (h hist) bound(i int) float64 {
	if b := h.buckets[i+1]; !math.IsInf(b, 1) {
		return b
	}
	return h.buckets[i]
}
