package harness

import (
	"cmp"
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"unsafe"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/internal/libc"
	"github.com/brkmap/alloc/bench/internal/sampler"
	"github.com/brkmap/alloc/internal/procfs"
	"github.com/brkmap/alloc/internal/sys"
	"github.com/brkmap/alloc/stats"
)

// Instance is one policy set up for one run: the heap, what measures it,
// and how to read its system calls at the end. It belongs to the run's
// one goroutine.
type Instance struct {
	Heap      Heap
	A         *alloc.Allocator // nil for libc
	counter   *CountingHeap    // libc: glibc does not tell its live bytes
	threshold int              // the configured mmap threshold (0: none)
	baseRSS   uint64           // the process's RSS before the run (libc)
	gcPercent int              // libc: the GC setting to restore at Close
	goBase    uint64           // libc: the Go runtime's memory before the run
	heapFrom  unsafe.Pointer   // libc: the break before the run
	heapVec   []byte           // libc: mincore scratch
	goMetrics []metrics.Sample // libc: read at every sample, allocated once

	// Maps: take region maps with the samples (PeakMap, Moments).
	Maps bool
	// PeakMap is the region map at the sample of highest Resident,
	// Moments the region maps at the named moments (taken by Probe).
	PeakMap      stats.RegionMap
	Moments      []Moment
	peakResident uint64
	breakdowns   []Breakdown // at every sample (this allocator's policies)
}

// peakSlack: the breakdown at the peak is taken, of the samples whose
// resident memory is within 1/peakSlack of the highest, at the one with
// the most live bytes. While a program frees, resident memory stays up
// until the purge runs (and a free may touch a page or two more), so the
// highest sample can come after the live peak, when part of the memory
// is already free: the bar would show that moment instead of the peak's
// make-up.
const peakSlack = 64

// peakBreakdown returns the breakdown at the peak (peakSlack), or nil.
func (in *Instance) peakBreakdown() *Breakdown {
	var top uint64
	for _, b := range in.breakdowns {
		top = max(top, b.ResidentBytes)
	}
	var best *Breakdown
	for i := range in.breakdowns {
		b := &in.breakdowns[i]
		if b.ResidentBytes >= top-top/peakSlack && (best == nil || b.RequestedBytes > best.RequestedBytes) {
			best = b
		}
	}
	return best
}

// newInstance sets p up. threshold > 0 overrides the mmap threshold (for
// threshold and libc; the others have no fixed threshold to set).
func newInstance(p Policy, threshold int, configure func(*alloc.Config)) (*Instance, error) {
	in := &Instance{}
	if p.Libc {
		if !libc.Available {
			return nil, ErrLibcMissing
		}
		in.threshold = alloc.DefaultMmapThreshold
		if threshold > 0 {
			if libc.Mallopt(libc.MmapThreshold, threshold) != 1 {
				return nil, fmt.Errorf("mallopt(M_MMAP_THRESHOLD, %d) refused", threshold)
			}
			in.threshold = threshold
		}
		in.counter = &CountingHeap{Heap: libc.Heap{}}
		in.Heap = in.counter
		return in, nil
	}
	cfg := p.Cfg
	if threshold > 0 && p.Name == "threshold" {
		cfg.MmapThreshold = threshold
	}
	if configure != nil {
		configure(&cfg)
	}
	a, err := alloc.New(cfg)
	if err != nil {
		return nil, err
	}
	in.A, in.Heap = a, a
	if cfg.Policy == alloc.PolicyThreshold {
		in.threshold = cmp.Or(cfg.MmapThreshold, alloc.DefaultMmapThreshold)
	}
	return in, nil
}

// Instance makes the heap for a run and notes in res what it is: the
// threshold, and where resident memory comes from (mincore, or the
// process's RSS for glibc). A failure is recorded in res too.
func (res *Result) Instance(p Policy, threshold int, configure func(*alloc.Config)) (*Instance, error) {
	in, err := newInstance(p, threshold, configure)
	if err != nil {
		res.Error = err.Error()
		return nil, err
	}
	res.Threshold = in.threshold
	if in.A == nil {
		res.ResidentFrom = "rss"
	}
	return in, nil
}

// Start makes ready to measure s's run: it records the process's RSS
// before the run and resets its peak.
//
// For glibc (libc), whose memory is measured as the process's RSS growth,
// it first makes the Go runtime keep still, so that the growth is
// glibc's: everything the run needs from the Go heap (the parsed trace,
// the table of blocks) is allocated before Start; the garbage collector
// runs once and is then switched off until Close (a collection during the
// run would move the Go heap's own pages in and out of RSS), and s's
// series gets its room now, written through (Sampler.Reserve). What the
// Go runtime still grows during the run is measured (Result.GoGrowthBytes)
// and is near zero for a replay. The run itself is made on the main
// thread (package libc), so glibc serves it from its main arena, as it
// serves a C program.
func (in *Instance) Start(s *sampler.Sampler) error {
	if in.A != nil {
		// The collector is off during our runs too: its write barriers on
		// the run's table of blocks and its marking are the harness's,
		// and glibc's runs are made without them (random-bal: 330 of our
		// minor faults were the collector's).
		runtime.GC()
		in.gcPercent = debug.SetGCPercent(-1)
	} else {
		s.Reserve(1 << 15)
		// Collect, and give the Go heap's free pages back now: the
		// scavenger would otherwise give them back during the run, and
		// the RSS that drops would hide as much of glibc's growth.
		debug.FreeOSMemory()
		in.gcPercent = debug.SetGCPercent(-1)
		// glibc's heap was warmed before the run (the Go runtime and cgo
		// call malloc at start): give its free pages back, so that the
		// run faults in what it uses, as in a fresh C process.
		libc.Trim()
		in.goMetrics = []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
		in.goBase = in.goMemory()
		in.heapFrom = libc.Break()
	}
	rss, _, err := sampler.ReadStatus()
	if err != nil {
		return fmt.Errorf("reading /proc/self/status: %w", err)
	}
	in.baseRSS = rss
	if err := procfs.ResetPeakRSS(); err != nil {
		return fmt.Errorf("resetting the peak RSS: %w", err)
	}
	return nil
}

// goMemory returns the memory the Go runtime holds from the kernel and
// has not given back (its heap, stacks and metadata). It allocates
// nothing.
func (in *Instance) goMemory() uint64 {
	ms := in.goMetrics
	metrics.Read(ms)
	if ms[0].Value.Kind() != metrics.KindUint64 || ms[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return sat(ms[0].Value.Uint64(), ms[1].Value.Uint64())
}

// Probe fills in a sample: from the allocator's own measurements, or, for
// glibc, from the process's accounting: RSS growth over the start, less
// what the Go runtime grew meanwhile (nothing, for a replay; a workload's
// own tables, for a workload).
func (in *Instance) Probe(s *sampler.Sample) {
	if in.A == nil {
		arena, mapped, _ := libc.Mallinfo2()
		s.LibcHeap = arena + mapped
		// Two measures of glibc's memory, each of which can only miss
		// some: the RSS growth less the Go runtime's (pages glibc reuses
		// that were resident before the run are missed, as are pages the
		// rest of the process gives back meanwhile), and mincore over
		// what the break grew by plus the chunks glibc mapped (which
		// the replay writes through): what the main arena took outside
		// the break, were the break to be blocked, is missed. The larger.
		s.Resident = max(sat(s.RSS, in.baseRSS+sat(in.goMemory(), in.goBase)),
			libc.HeapResident(in.heapFrom, &in.heapVec)+mapped)
		s.LiveBytes = in.counter.Live
		s.MinorFaults = sys.MinorFaults()
		return
	}
	st := in.A.Stats()
	in.breakdowns = append(in.breakdowns, *BreakdownOf(st))
	s.Resident = st.Resident
	s.LiveBytes = st.LiveBytes
	s.ArenaBytes = st.ArenaBytes
	s.MmapBytes = st.MmapBytes
	s.Syscalls = st.Syscalls()
	s.MinorFaults = st.MinorFaults
	if in.threshold > 0 {
		s.MmapThreshold = st.MmapThreshold
		if st.TrimThreshold != ^uint64(0) {
			s.TrimThreshold = st.TrimThreshold
		}
	}
	if in.Maps || st.DirtyBytes > 0 {
		m := in.A.RegionMap()
		s.Trapped = m.Trapped()
		if in.Maps {
			if s.Label != "" && s.Label != "start" {
				in.Moments = append(in.Moments, Moment{Label: s.Label, Map: m})
			}
			if s.Resident > in.peakResident || len(in.PeakMap.Extents) == 0 {
				in.peakResident, in.PeakMap = s.Resident, m
			}
		}
	}
}

// Close closes the allocator, if any, and switches the garbage collector
// back on.
func (in *Instance) Close() {
	if in.A != nil {
		in.A.Close()
	}
	if in.gcPercent != 0 {
		debug.SetGCPercent(in.gcPercent)
	}
}

// Finish fills in the figures of res measured at the end of a run, from
// the instance and the sampler's series.
func (in *Instance) Finish(res *Result, s *sampler.Sampler) {
	end := s.Samples[len(s.Samples)-1]
	if in.A != nil {
		res.PeakResidentBytes = s.Peak().Resident
	} else {
		// VmHWM catches a peak between samples; less the Go runtime's
		// growth (which only grows, the collector being off, so this is
		// at most glibc's peak), or the highest sample if that is more.
		res.GoGrowthBytes = sat(in.goMemory(), in.goBase)
		res.PeakResidentBytes = max(sat(end.PeakRSS, in.baseRSS+res.GoGrowthBytes), s.Peak().Resident)
	}
	res.FinalResidentBytes = end.Resident
	if in.A != nil {
		res.TrappedBytes = end.Trapped
	} else {
		res.LibcHeapPeakBytes = s.Max(func(p sampler.Sample) uint64 { return p.LibcHeap })
		res.LibcHeapFinalBytes = end.LibcHeap
	}
	res.MinorFaults = end.MinorFaults - s.Samples[0].MinorFaults
	res.PeakRSSGrowthBytes = sat(end.PeakRSS, in.baseRSS)
	if res.PeakLiveBytes > 0 {
		res.Fragmentation = float64(res.PeakResidentBytes) / float64(res.PeakLiveBytes)
	}
	res.MmapCalls, res.MunmapCalls, res.MadviseCalls, res.MprotectCalls = in.callCounts()
	if n, ok := res.Syscalls(); ok {
		res.SyscallCount = &n
	}
	res.PeakBreakdown = in.peakBreakdown()
	res.Series = s.Samples
}

// callCounts returns the allocator's system-call counters, or nils for
// glibc, whose calls this process cannot count.
func (in *Instance) callCounts() (mmap, munmap, madvise, mprotect *uint64) {
	if in.A == nil {
		return nil, nil, nil, nil
	}
	s := in.A.Stats()
	return &s.Mmap, &s.Munmap, &s.Madvise, &s.Mprotect
}

// sat returns a-b, or 0 if b > a.
func sat(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
