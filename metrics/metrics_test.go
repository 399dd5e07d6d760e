package metrics_test

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/metrics"
	"github.com/brkmap/alloc/stats"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fixed serves one snapshot, and counts which of its methods were called.
type fixed struct {
	s               stats.Snapshot
	counters, stats int
}

func (f *fixed) Counters() stats.Snapshot { f.counters++; return f.s }
func (f *fixed) Stats() stats.Snapshot    { f.stats++; return f.s }

var snapshot = stats.Snapshot{
	LiveBlocks: 3, LiveBytes: 300, ArenaBytes: 1 << 20, MmapBytes: 4 << 20, MmapCount: 2,
	Resident: 123456, ResidentMeasured: true,
	Mmap: 5, Munmap: 4, Madvise: 3, Mprotect: 2, Mremap: 1, Mincore: 9,
	SlabBytes: 65536, MidBytes: 40960, FreeBytes: 8192, DirtyBytes: 4096,
	MmapThreshold: 128 << 10, TrimThreshold: math.MaxUint64,
	Committed: 5 << 20, Limit: 0,
	Classes: []stats.Class{
		{Size: 16},
		{Size: 112, LiveBlocks: 3, LiveBytes: 300, Slabs: 1, SlabBytes: 16384},
		{Size: 256, Slabs: 1, SlabBytes: 16384},
	},
}

// The exposition, name by name: help, type, labels, values.
func TestCollectorExposition(t *testing.T) {
	src := &fixed{s: snapshot}
	c := metrics.NewCollector(src, metrics.Options{})
	want := `
# HELP brkmap_alloc_arena_bytes The brk-like region from its base to its break.
# TYPE brkmap_alloc_arena_bytes gauge
brkmap_alloc_arena_bytes 1.048576e+06
# HELP brkmap_alloc_arena_free_bytes Free pages of the region below its break.
# TYPE brkmap_alloc_arena_free_bytes gauge
brkmap_alloc_arena_free_bytes 8192
# HELP brkmap_alloc_arena_unreleased_bytes Free pages of the region below its break not yet given back to the kernel (resident if they were touched; Trim releases them).
# TYPE brkmap_alloc_arena_unreleased_bytes gauge
brkmap_alloc_arena_unreleased_bytes 4096
# HELP brkmap_alloc_class_live_blocks Live blocks of a size class.
# TYPE brkmap_alloc_class_live_blocks gauge
brkmap_alloc_class_live_blocks{block_size_bytes="112"} 3
brkmap_alloc_class_live_blocks{block_size_bytes="256"} 0
# HELP brkmap_alloc_class_live_bytes Bytes callers asked for, in live blocks of a size class.
# TYPE brkmap_alloc_class_live_bytes gauge
brkmap_alloc_class_live_bytes{block_size_bytes="112"} 300
brkmap_alloc_class_live_bytes{block_size_bytes="256"} 0
# HELP brkmap_alloc_class_slab_bytes Bytes of the slabs of a size class.
# TYPE brkmap_alloc_class_slab_bytes gauge
brkmap_alloc_class_slab_bytes{block_size_bytes="112"} 16384
brkmap_alloc_class_slab_bytes{block_size_bytes="256"} 16384
# HELP brkmap_alloc_class_slabs Slabs of a size class.
# TYPE brkmap_alloc_class_slabs gauge
brkmap_alloc_class_slabs{block_size_bytes="112"} 1
brkmap_alloc_class_slabs{block_size_bytes="256"} 1
# HELP brkmap_alloc_committed_bytes Bytes committed: the region up to its break, every live mapping, and mappings Debug mode keeps in quarantine. Config.Limit caps it.
# TYPE brkmap_alloc_committed_bytes gauge
brkmap_alloc_committed_bytes 5.24288e+06
# HELP brkmap_alloc_limit_bytes The cap on committed bytes (Config.Limit); 0 means none.
# TYPE brkmap_alloc_limit_bytes gauge
brkmap_alloc_limit_bytes 0
# HELP brkmap_alloc_live_blocks Blocks allocated and not freed.
# TYPE brkmap_alloc_live_blocks gauge
brkmap_alloc_live_blocks 3
# HELP brkmap_alloc_live_bytes Bytes callers asked for, in blocks allocated and not freed.
# TYPE brkmap_alloc_live_bytes gauge
brkmap_alloc_live_bytes 300
# HELP brkmap_alloc_mapped_bytes Bytes of the live large blocks' own mappings.
# TYPE brkmap_alloc_mapped_bytes gauge
brkmap_alloc_mapped_bytes 4.194304e+06
# HELP brkmap_alloc_mappings Live large blocks' own mappings.
# TYPE brkmap_alloc_mappings gauge
brkmap_alloc_mappings 2
# HELP brkmap_alloc_mmap_threshold_bytes Requests of at least this many bytes get their own mapping (the dynamic threshold moves it).
# TYPE brkmap_alloc_mmap_threshold_bytes gauge
brkmap_alloc_mmap_threshold_bytes 131072
# HELP brkmap_alloc_resident_estimate_bytes Upper bound on the allocator's resident bytes, from its counters (not measured): pages in use plus free pages not yet given back. Pages never touched are counted though not resident.
# TYPE brkmap_alloc_resident_estimate_bytes gauge
brkmap_alloc_resident_estimate_bytes 4.304896e+06
# HELP brkmap_alloc_syscalls_total Memory-management system calls made by the allocator, by call.
# TYPE brkmap_alloc_syscalls_total counter
brkmap_alloc_syscalls_total{call="madvise"} 3
brkmap_alloc_syscalls_total{call="mincore"} 9
brkmap_alloc_syscalls_total{call="mmap"} 5
brkmap_alloc_syscalls_total{call="mprotect"} 2
brkmap_alloc_syscalls_total{call="mremap"} 1
brkmap_alloc_syscalls_total{call="munmap"} 4
# HELP brkmap_alloc_trim_threshold_bytes Free bytes at the top of the region that make its break move down; +Inf means never.
# TYPE brkmap_alloc_trim_threshold_bytes gauge
brkmap_alloc_trim_threshold_bytes +Inf
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want)))
	// 65536 + 40960 + 4096 + 4 MiB
	assert.Equal(t, uint64(4304896), metrics.ResidentEstimate(snapshot))
	assert.Positive(t, src.counters)
	assert.Zero(t, src.stats, "no measuring unless asked")
}

// The names pass Prometheus's own linter, and a pedantic registry finds
// Describe and Collect consistent.
func TestCollectorLintAndRegister(t *testing.T) {
	for _, measure := range []bool{false, true} {
		c := metrics.NewCollector(&fixed{s: snapshot}, metrics.Options{MeasureResident: measure})
		problems, err := testutil.CollectAndLint(c)
		require.NoError(t, err)
		assert.Empty(t, problems)
		reg := prometheus.NewPedanticRegistry()
		require.NoError(t, reg.Register(c))
		n, err := testutil.GatherAndCount(reg)
		require.NoError(t, err)
		// 12 gauges, 6 system calls, 4 series for each of the 2 classes in use
		assert.Equal(t, 12+6+4*2, n)
	}
}

// With MeasureResident, the measured figure replaces the estimate; with a
// namespace and constant labels, every series carries them.
func TestCollectorOptions(t *testing.T) {
	src := &fixed{s: snapshot}
	c := metrics.NewCollector(src, metrics.Options{
		MeasureResident: true, Namespace: "cache", ConstLabels: prometheus.Labels{"allocator": "values"},
	})
	want := `
# HELP cache_resident_bytes Bytes of the allocator's memory resident in RAM, measured with mincore at scrape time.
# TYPE cache_resident_bytes gauge
cache_resident_bytes{allocator="values"} 123456
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want), "cache_resident_bytes"))
	assert.Zero(t, testutil.CollectAndCount(c, "cache_resident_estimate_bytes"))
	assert.Zero(t, src.counters)
	assert.Positive(t, src.stats)
}

// Against a real allocator: the series follow its blocks, and a scrape
// makes no mincore call.
func TestCollectorAllocator(t *testing.T) {
	a, err := alloc.New(alloc.Config{ColdBlocks: -1}) // the small blocks in their class
	require.NoError(t, err)
	defer a.Close()
	var blocks [][]byte
	for _, n := range []int{100, 100, 100, 1 << 20} {
		b, err := a.Malloc(n)
		require.NoError(t, err)
		blocks = append(blocks, b)
	}
	c := metrics.NewCollector(a, metrics.Options{})
	mincore := a.Counters().Mincore
	size := a.UsableSize(blocks[0])
	want := fmt.Sprintf(`
# HELP brkmap_alloc_live_bytes Bytes callers asked for, in blocks allocated and not freed.
# TYPE brkmap_alloc_live_bytes gauge
brkmap_alloc_live_bytes %d
# HELP brkmap_alloc_live_blocks Blocks allocated and not freed.
# TYPE brkmap_alloc_live_blocks gauge
brkmap_alloc_live_blocks 4
# HELP brkmap_alloc_mappings Live large blocks' own mappings.
# TYPE brkmap_alloc_mappings gauge
brkmap_alloc_mappings 1
# HELP brkmap_alloc_mapped_bytes Bytes of the live large blocks' own mappings.
# TYPE brkmap_alloc_mapped_bytes gauge
brkmap_alloc_mapped_bytes %d
# HELP brkmap_alloc_class_live_blocks Live blocks of a size class.
# TYPE brkmap_alloc_class_live_blocks gauge
brkmap_alloc_class_live_blocks{block_size_bytes="%d"} 3
`, 300+1<<20, 1<<20, size)
	names := []string{"brkmap_alloc_live_bytes", "brkmap_alloc_live_blocks", "brkmap_alloc_mappings",
		"brkmap_alloc_mapped_bytes", "brkmap_alloc_class_live_blocks"}
	for range 3 {
		require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want), names...))
	}
	assert.Equal(t, mincore, a.Counters().Mincore, "scrapes measure nothing")
	est := testutil.ToFloat64(onlyOne{c, "brkmap_alloc_resident_estimate_bytes"})
	assert.GreaterOrEqual(t, est, float64(1<<20+4096), "the mapping and at least one slab (a page at least)")

	for _, b := range blocks {
		require.NoError(t, a.Free(b))
	}
	assert.Equal(t, 1, testutil.CollectAndCount(c, "brkmap_alloc_mappings"), "the gauge stays, at 0")
	assert.Zero(t, testutil.ToFloat64(onlyOne{c, "brkmap_alloc_live_bytes"}))
	assert.Zero(t, testutil.ToFloat64(onlyOne{c, "brkmap_alloc_mappings"}))
}

// onlyOne is c's metric of one name, for testutil.ToFloat64.
type onlyOne struct {
	c    prometheus.Collector
	name string
}

func (o onlyOne) Describe(ch chan<- *prometheus.Desc) { o.c.Describe(ch) }

func (o onlyOne) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric)
	go func() { o.c.Collect(all); close(all) }()
	for m := range all {
		if strings.Contains(m.Desc().String(), `fqName: "`+o.name+`"`) {
			ch <- m
		}
	}
}

// Registering an allocator's collector next to the Go runtime's.
func ExampleNewCollector() {
	a, err := alloc.New(alloc.Config{})
	if err != nil {
		panic(err)
	}
	defer a.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(a, metrics.Options{ConstLabels: prometheus.Labels{"allocator": "main"}}))
	// serve reg with promhttp.HandlerFor(reg, promhttp.HandlerOpts{}) on the metrics port

	b, _ := a.Malloc(1 << 20)
	defer a.Free(b)
	families, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, f := range families {
		if f.GetName() == "brkmap_alloc_mapped_bytes" {
			fmt.Println(f.GetName(), f.GetMetric()[0].GetGauge().GetValue())
		}
	}
	// Output:
	// brkmap_alloc_mapped_bytes 1.048576e+06
}
