// Package metrics exports an allocator's figures to Prometheus, the way
// Go services are scraped: a prometheus.Collector to register next to the
// Go runtime's own.
//
//	a, _ := alloc.New(alloc.Config{})
//	prometheus.MustRegister(metrics.NewCollector(a, metrics.Options{}))
//
// A scrape reads the allocator's counters (Allocator.Counters): atomics and
// a short walk of the size classes, no system call but a getrusage. It
// makes no mincore call, so the resident figure it exports by default is
// an estimate from those counters, named as one
// (brkmap_alloc_resident_estimate_bytes: the pages in use plus the free
// pages not yet given back, an upper bound, since a page never touched is
// not resident). Options.MeasureResident exports the measured figure
// instead, at the price of Allocator.Stats on every scrape.
//
// Names and units follow the Prometheus conventions: a namespace prefix
// (brkmap_alloc unless Options.Namespace says otherwise), base units in
// the name (_bytes), _total on counters. Every metric:
//
//	brkmap_alloc_live_bytes                 gauge   bytes callers asked for, in live blocks
//	brkmap_alloc_live_blocks                gauge   live blocks
//	brkmap_alloc_committed_bytes            gauge   region to its break + live mappings (+ Debug's quarantine)
//	brkmap_alloc_limit_bytes                gauge   Config.Limit (0: none)
//	brkmap_alloc_arena_bytes                gauge   the region from its base to its break
//	brkmap_alloc_arena_free_bytes           gauge   free pages below the break
//	brkmap_alloc_arena_unreleased_bytes     gauge   free pages below the break not yet given back
//	brkmap_alloc_mapped_bytes               gauge   live large mappings, bytes
//	brkmap_alloc_mappings                   gauge   live large mappings, count
//	brkmap_alloc_resident_estimate_bytes    gauge   (default) upper bound on resident bytes, from the counters
//	brkmap_alloc_resident_bytes             gauge   (MeasureResident) resident bytes, measured with mincore
//	brkmap_alloc_mmap_threshold_bytes       gauge   the mmap threshold as it stands
//	brkmap_alloc_trim_threshold_bytes       gauge   the trim threshold (+Inf: never)
//	brkmap_alloc_syscalls_total{call}       counter system calls by kind: mmap, munmap, mprotect, madvise, mremap, mincore
//	brkmap_alloc_class_live_blocks{block_size_bytes}  gauge  per size class: live blocks
//	brkmap_alloc_class_live_bytes{block_size_bytes}   gauge  per size class: bytes asked for
//	brkmap_alloc_class_slabs{block_size_bytes}        gauge  per size class: slabs
//	brkmap_alloc_class_slab_bytes{block_size_bytes}   gauge  per size class: bytes of its slabs
//
// The per-class series are exported for the classes that hold something
// (a live block or a slab), as stats.Snapshot's JSON does.
package metrics

import (
	"math"
	"strconv"

	"github.com/brkmap/alloc/stats"
	"github.com/prometheus/client_golang/prometheus"
)

// Source is what the collector reads: *alloc.Allocator is one.
type Source interface {
	// Counters is read on every scrape.
	Counters() stats.Snapshot
	// Stats is read instead when Options.MeasureResident is set.
	Stats() stats.Snapshot
}

// Options adjusts a Collector. The zero Options is the default.
type Options struct {
	// Namespace is the metric names' prefix; "" means "brkmap_alloc".
	Namespace string
	// ConstLabels are added to every series: for example
	// {"allocator": "cache"} when a program registers several allocators.
	ConstLabels prometheus.Labels
	// MeasureResident takes Stats on every scrape (one mincore over the
	// region and one per live mapping, and /proc/self/smaps when huge
	// pages are in play) and exports the measured resident_bytes instead
	// of resident_estimate_bytes.
	MeasureResident bool
}

// DefaultNamespace prefixes every metric name unless Options says otherwise.
const DefaultNamespace = "brkmap_alloc"

// Collector is a prometheus.Collector of one allocator. Safe for
// concurrent scrapes, as the allocator's Counters and Stats are.
type Collector struct {
	src     Source
	measure bool

	live, liveBlocks, committed, limit                     *prometheus.Desc
	arena, arenaFree, arenaUnreleased                      *prometheus.Desc
	mapped, mappings, resident                             *prometheus.Desc
	mmapThreshold, trimThreshold, syscalls                 *prometheus.Desc
	classLiveBlocks, classLive, classSlabs, classSlabBytes *prometheus.Desc
}

// NewCollector returns a collector of src's figures. Register it with a
// prometheus.Registerer (prometheus.MustRegister for the default one).
func NewCollector(src Source, opts Options) *Collector {
	ns := opts.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, labels, opts.ConstLabels)
	}
	c := &Collector{src: src, measure: opts.MeasureResident}
	c.live = desc("live_bytes", "Bytes callers asked for, in blocks allocated and not freed.")
	c.liveBlocks = desc("live_blocks", "Blocks allocated and not freed.")
	c.committed = desc("committed_bytes", "Bytes committed: the region up to its break, every live mapping, and mappings Debug mode keeps in quarantine. Config.Limit caps it.")
	c.limit = desc("limit_bytes", "The cap on committed bytes (Config.Limit); 0 means none.")
	c.arena = desc("arena_bytes", "The brk-like region from its base to its break.")
	c.arenaFree = desc("arena_free_bytes", "Free pages of the region below its break.")
	c.arenaUnreleased = desc("arena_unreleased_bytes", "Free pages of the region below its break not yet given back to the kernel (resident if they were touched; Trim releases them).")
	c.mapped = desc("mapped_bytes", "Bytes of the live large blocks' own mappings.")
	c.mappings = desc("mappings", "Live large blocks' own mappings.")
	if c.measure {
		c.resident = desc("resident_bytes", "Bytes of the allocator's memory resident in RAM, measured with mincore at scrape time.")
	} else {
		c.resident = desc("resident_estimate_bytes", "Upper bound on the allocator's resident bytes, from its counters (not measured): pages in use plus free pages not yet given back. Pages never touched are counted though not resident.")
	}
	c.mmapThreshold = desc("mmap_threshold_bytes", "Requests of at least this many bytes get their own mapping (the dynamic threshold moves it).")
	c.trimThreshold = desc("trim_threshold_bytes", "Free bytes at the top of the region that make its break move down; +Inf means never.")
	c.syscalls = desc("syscalls_total", "Memory-management system calls made by the allocator, by call.", "call")
	c.classLiveBlocks = desc("class_live_blocks", "Live blocks of a size class.", "block_size_bytes")
	c.classLive = desc("class_live_bytes", "Bytes callers asked for, in live blocks of a size class.", "block_size_bytes")
	c.classSlabs = desc("class_slabs", "Slabs of a size class.", "block_size_bytes")
	c.classSlabBytes = desc("class_slab_bytes", "Bytes of the slabs of a size class.", "block_size_bytes")
	return c
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.live, c.liveBlocks, c.committed, c.limit, c.arena, c.arenaFree, c.arenaUnreleased,
		c.mapped, c.mappings, c.resident, c.mmapThreshold, c.trimThreshold, c.syscalls,
		c.classLiveBlocks, c.classLive, c.classSlabs, c.classSlabBytes,
	} {
		ch <- d
	}
}

// ResidentEstimate is the resident figure the collector exports by
// default: the bytes that can be resident as far as the counters know —
// slabs, mid-size runs, free pages of the region not yet released, and
// the live mappings. It is an upper bound: a page never written is
// counted though the kernel never backed it.
func ResidentEstimate(s stats.Snapshot) uint64 {
	return s.SlabBytes + s.MidBytes + s.DirtyBytes + s.MmapBytes
}

// Collect takes the allocator's counters (or Stats, with MeasureResident)
// and sends every metric.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	var s stats.Snapshot
	var resident uint64
	if c.measure {
		s = c.src.Stats()
		resident = s.Resident
	} else {
		s = c.src.Counters()
		resident = ResidentEstimate(s)
	}
	gauge := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	gauge(c.live, s.LiveBytes)
	gauge(c.liveBlocks, s.LiveBlocks)
	gauge(c.committed, s.Committed)
	gauge(c.limit, s.Limit)
	gauge(c.arena, s.ArenaBytes)
	gauge(c.arenaFree, s.FreeBytes)
	gauge(c.arenaUnreleased, s.DirtyBytes)
	gauge(c.mapped, s.MmapBytes)
	gauge(c.mappings, s.MmapCount)
	gauge(c.resident, resident)
	gauge(c.mmapThreshold, s.MmapThreshold)
	trim := float64(s.TrimThreshold)
	if s.TrimThreshold == math.MaxUint64 {
		trim = math.Inf(1)
	}
	ch <- prometheus.MustNewConstMetric(c.trimThreshold, prometheus.GaugeValue, trim)
	for _, sc := range []struct {
		call string
		n    uint64
	}{
		{"mmap", s.Mmap}, {"munmap", s.Munmap}, {"mprotect", s.Mprotect},
		{"madvise", s.Madvise}, {"mremap", s.Mremap}, {"mincore", s.Mincore},
	} {
		ch <- prometheus.MustNewConstMetric(c.syscalls, prometheus.CounterValue, float64(sc.n), sc.call)
	}
	for _, cl := range s.Classes {
		if cl.Empty() {
			continue
		}
		size := strconv.FormatUint(cl.Size, 10)
		gauge(c.classLiveBlocks, cl.LiveBlocks, size)
		gauge(c.classLive, cl.LiveBytes, size)
		gauge(c.classSlabs, cl.Slabs, size)
		gauge(c.classSlabBytes, cl.SlabBytes, size)
	}
}
