// Package gcbench is what taking a cache's values off the Go heap does to
// the garbage collector (`go run ./bench gc`).
//
// The same cache workload runs in two stores, each in a fresh child
// process (so neither store's heap, RSS or GC pacing bleeds into the
// other): once with the values on the Go heap (map[string][]byte), once
// in offheapcache, whose index holds no Go pointers. Each process loads
// the entries, collects once, then runs the churn phase — Get/Set/Delete
// batches in a random mix, plus the garbage a request handler makes — and
// reports what the runtime measured over that phase alone.
package gcbench

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/internal/child"
	"github.com/brkmap/alloc/bench/offheapcache"
	"github.com/brkmap/alloc/internal/procfs"
)

// Config is the workload. The command's defaults: 5 million entries; keys
// are always 8–32 bytes, values 32 bytes–1 KiB.
type Config struct {
	Entries int     `json:"entries"`
	Ops     int     `json:"ops"`
	Garbage int     `json:"garbage"` // bytes of short-lived Go allocation per op
	Get     float64 `json:"get"`     // shares of the op mix; the rest are Deletes
	Set     float64 `json:"set"`
	Seed    uint64  `json:"seed"`
}

// Result is what one store's child process measured (one JSON object a
// line of `bench gc -json`).
type Result struct {
	Store       string  `json:"store"`
	Entries     int     `json:"entries"`
	LoadSeconds float64 `json:"load_seconds"`
	GetNs       float64 `json:"get_ns_per_op"`
	SetNs       float64 `json:"set_ns_per_op"`
	DeleteNs    float64 `json:"delete_ns_per_op"`
	GCFraction  float64 `json:"gc_cpu_fraction"`
	GCCycles    uint64  `json:"gc_cycles"`
	Pauses      uint64  `json:"gc_pauses"`
	PauseP50    float64 `json:"gc_pause_p50_seconds"`
	PauseP99    float64 `json:"gc_pause_p99_seconds"`
	PauseMax    float64 `json:"gc_pause_max_seconds"`
	HeapObjects uint64  `json:"go_heap_objects_bytes"`
	HeapLive    uint64  `json:"go_heap_live_bytes"`
	OffHeap     uint64  `json:"offheap_resident_bytes"`
	RSS         uint64  `json:"rss_bytes"`
	PeakRSS     uint64  `json:"peak_rss_bytes"`
	Hits        uint64  `json:"hits"`
}

// Run runs each store runs times, alternating, each in a fresh child
// process (RunStore there), with the seed of run i being cfg.Seed+i.
func Run(cfg Config, runs int, progress io.Writer) ([]Result, error) {
	var out []Result
	for i := range runs {
		for _, store := range Stores {
			fmt.Fprintf(progress, "gc: run %d/%d, %s…\n", i+1, runs, store)
			c := cfg
			c.Seed = cfg.Seed + uint64(i)
			spec, err := json.Marshal(c)
			if err != nil {
				return nil, err
			}
			var r Result
			if err := child.Run(child.Job{Kind: ChildKind, Target: store, Config: spec}, &r); err != nil {
				return nil, fmt.Errorf("gc: %s child: %w", store, err)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// ChildKind is the child.Job kind of one store's run.
const ChildKind = "gc"

// ServeChild is the child's side of Run: it runs the store j names with
// the Config j carries.
func ServeChild(j child.Job) (any, bool, error) {
	var cfg Config
	if err := json.Unmarshal(j.Config, &cfg); err != nil {
		return nil, false, fmt.Errorf("gc: child config: %w", err)
	}
	r, err := RunStore(j.Target, cfg)
	if err != nil {
		return nil, false, err
	}
	return r, true, nil
}

// Stores are the stores compared, in the table's order.
var Stores = []string{"heap", "offheap"}

// gcStore is the cache interface both stores implement. Get copies the
// value out into dst in both, as a cache shared by concurrent requests
// must (handing out the stored slice would race with the next Set).
type gcStore interface {
	Set(key, value []byte) error
	Get(key, dst []byte) ([]byte, bool)
	Delete(key []byte) bool
	Close() error
}

// heapCache is the baseline: values on the Go heap, behind the same lock.
type heapCache struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (c *heapCache) Set(key, value []byte) error {
	v := make([]byte, len(value))
	copy(v, value)
	c.mu.Lock()
	c.m[string(key)] = v
	c.mu.Unlock()
	return nil
}

func (c *heapCache) Get(key, dst []byte) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[string(key)]
	if !ok {
		return dst, false
	}
	return append(dst, v...), true
}

func (c *heapCache) Delete(key []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[string(key)]
	delete(c.m, string(key))
	return ok
}

func (c *heapCache) Close() error { return nil }

// newGCStore returns the store called name, empty.
func newGCStore(name string) (gcStore, error) {
	switch name {
	case "heap":
		return &heapCache{m: make(map[string][]byte)}, nil
	case "offheap":
		return offheapcache.New(alloc.Config{})
	}
	return nil, fmt.Errorf("gc: unknown store %q (heap or offheap)", name)
}

// gcKey writes key id into buf: 8 to 32 bytes, the id's 8 bytes first (so
// keys are distinct) and a length chosen by a hash of the id.
func gcKey(buf []byte, id uint64) []byte {
	h := id * 0x9E3779B97F4A7C15
	n := 8 + int(h>>59)%25
	buf = binary.LittleEndian.AppendUint64(buf[:0], id)
	for len(buf) < n {
		buf = append(buf, 'a'+byte(len(buf)))
	}
	return buf
}

// gcValueSize draws a value size: 45% 32–128 B, 35% 128–512 B, 20%
// 512 B–1 KiB (mean about 300 B) — small values dominate, as in the
// memcached and Redis workload studies, with a long tail.
func gcValueSize(r *rand.Rand) int {
	switch p := r.IntN(100); {
	case p < 45:
		return 32 + r.IntN(96)
	case p < 80:
		return 128 + r.IntN(384)
	}
	return 512 + r.IntN(513)
}

// gcSink keeps the request garbage reachable for a moment, as a handler's
// buffers are, so the compiler cannot drop it.
var gcSink []byte

const gcBatch = 256 // ops of one kind between two clock reads

// RunStore loads cfg.Entries entries into the store called name, runs the
// churn phase, and returns what the runtime measured over it. It runs in
// this process: Run calls it in a child per store.
func RunStore(name string, cfg Config) (Result, error) {
	store, err := newGCStore(name)
	if err != nil {
		return Result{}, err
	}
	defer store.Close()
	w := &gcWorkload{cfg: cfg, store: store, r: rand.New(rand.NewPCG(cfg.Seed, 0x6763)),
		key: make([]byte, 0, 32), value: bytes.Repeat([]byte{0xA5}, 1024), dst: make([]byte, 0, 1024)}

	start := time.Now()
	if err := w.load(); err != nil {
		return Result{}, err
	}
	res := Result{Store: name, Entries: cfg.Entries, LoadSeconds: time.Since(start).Seconds()}
	runtime.GC() // start the churn phase from a collected heap, for both stores

	before := readGCMetrics()
	err = w.churn()
	after := readGCMetrics()
	gcSink = nil
	res.Hits = w.hits
	if err != nil {
		return res, err
	}
	res.GetNs, res.SetNs, res.DeleteNs = w.perOp(opGet), w.perOp(opSet), w.perOp(opDelete)
	res.setGCFigures(before, after)
	if c, ok := store.(*offheapcache.Cache); ok {
		res.OffHeap = c.Allocator().Stats().Resident
	}
	m, err := procfs.ReadProcMemory()
	res.RSS, res.PeakRSS = m.RSS, m.PeakRSS
	runtime.KeepAlive(store)
	return res, err
}

// The kinds of operation of the churn phase.
const (
	opGet = iota
	opSet
	opDelete
	numOps
)

// gcWorkload is one store's run: its random source, buffers, and the time
// spent in and count of each kind of operation. It belongs to one
// goroutine.
type gcWorkload struct {
	cfg             Config
	store           gcStore
	r               *rand.Rand
	key, value, dst []byte
	spent           [numOps]time.Duration
	count           [numOps]int
	hits            uint64
}

// load sets every entry once.
func (w *gcWorkload) load() error {
	for id := range uint64(w.cfg.Entries) {
		if err := w.store.Set(gcKey(w.key, id), w.value[:gcValueSize(w.r)]); err != nil {
			return err
		}
	}
	return nil
}

// churn runs cfg.Ops operations in batches of one kind, drawn by the mix.
func (w *gcWorkload) churn() error {
	for done := 0; done < w.cfg.Ops; done += gcBatch {
		kind := opDelete
		if p := w.r.Float64(); p < w.cfg.Get {
			kind = opGet
		} else if p < w.cfg.Get+w.cfg.Set {
			kind = opSet
		}
		n := min(gcBatch, w.cfg.Ops-done)
		// The request handlers' garbage, made outside the timed window so
		// that ns/op is the cache's own; it still drives the GC cycles
		// whose marking and assists the timed ops run through.
		for range n {
			if w.cfg.Garbage > 0 {
				gcSink = make([]byte, w.cfg.Garbage)
			}
		}
		if err := w.batch(kind, n); err != nil {
			return err
		}
	}
	return nil
}

// batch runs n operations of one kind on random keys, timed together.
func (w *gcWorkload) batch(kind, n int) error {
	t0 := time.Now()
	for range n {
		k := gcKey(w.key, w.r.Uint64N(uint64(w.cfg.Entries)))
		switch kind {
		case opGet:
			var ok bool
			if w.dst, ok = w.store.Get(k, w.dst[:0]); ok {
				w.hits++
			}
		case opSet:
			if err := w.store.Set(k, w.value[:gcValueSize(w.r)]); err != nil {
				return err
			}
		case opDelete:
			w.store.Delete(k)
		}
	}
	w.spent[kind] += time.Since(t0)
	w.count[kind] += n
	return nil
}

// perOp returns the mean nanoseconds of an operation of kind k, or 0.
func (w *gcWorkload) perOp(k int) float64 {
	if w.count[k] == 0 {
		return 0
	}
	return float64(w.spent[k].Nanoseconds()) / float64(w.count[k])
}

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

// PrintTable prints the medians of each store side by side, with the
// ratio off-heap / heap.
func PrintTable(w io.Writer, cfg Config, runs int, results []Result) error {
	by := map[string][]Result{}
	for _, r := range results {
		by[r.Store] = append(by[r.Store], r)
	}
	fmt.Fprintf(w, "gc: %d entries (keys 8–32 B, values 32 B–1 KiB, mean ≈300 B); %d ops: %.0f%% get, %.0f%% set, %.0f%% delete,\n",
		cfg.Entries, cfg.Ops, 100*cfg.Get, 100*cfg.Set, 100*(1-cfg.Get-cfg.Set))
	fmt.Fprintf(w, "    each with %d B of request garbage; medians of %d runs, each store in its own process; GOMAXPROCS=%d\n\n",
		cfg.Garbage, runs, runtime.GOMAXPROCS(0))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "metric\theap\toff-heap\toff/heap\t")
	rows := []struct {
		name string
		f    func(Result) float64
		fmt  func(float64) string
	}{
		{"get ns/op", func(r Result) float64 { return r.GetNs }, fmtF(1)},
		{"set ns/op", func(r Result) float64 { return r.SetNs }, fmtF(1)},
		{"delete ns/op", func(r Result) float64 { return r.DeleteNs }, fmtF(1)},
		{"load s", func(r Result) float64 { return r.LoadSeconds }, fmtF(2)},
		{"gc cpu fraction", func(r Result) float64 { return r.GCFraction }, fmtF(4)},
		{"gc cycles", func(r Result) float64 { return float64(r.GCCycles) }, fmtF(0)},
		{"gc pauses", func(r Result) float64 { return float64(r.Pauses) }, fmtF(0)},
		{"pause p50 µs", func(r Result) float64 { return r.PauseP50 * 1e6 }, fmtF(1)},
		{"pause p99 µs", func(r Result) float64 { return r.PauseP99 * 1e6 }, fmtF(1)},
		{"pause max µs", func(r Result) float64 { return r.PauseMax * 1e6 }, fmtF(1)},
		{"go heap objects MiB", func(r Result) float64 { return float64(r.HeapObjects) / (1 << 20) }, fmtF(0)},
		{"go heap live MiB", func(r Result) float64 { return float64(r.HeapLive) / (1 << 20) }, fmtF(0)},
		{"off-heap resident MiB", func(r Result) float64 { return float64(r.OffHeap) / (1 << 20) }, fmtF(0)},
		{"process RSS MiB", func(r Result) float64 { return float64(r.RSS) / (1 << 20) }, fmtF(0)},
		{"peak RSS MiB", func(r Result) float64 { return float64(r.PeakRSS) / (1 << 20) }, fmtF(0)},
	}
	for _, row := range rows {
		h, o := median(by["heap"], row.f), median(by["offheap"], row.f)
		ratio := "—"
		if h != 0 {
			ratio = fmt.Sprintf("%.3f", o/h)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", row.name, row.fmt(h), row.fmt(o), ratio)
	}
	return tw.Flush()
}

func fmtF(prec int) func(float64) string {
	return func(v float64) string { return strconv.FormatFloat(v, 'f', prec, 64) }
}

func median(rs []Result, f func(Result) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
