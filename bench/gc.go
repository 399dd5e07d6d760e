package main

// The gc subcommand: what taking a cache's values off the Go heap does to
// the garbage collector.
//
//	go run ./bench gc [-entries 5000000] [-ops 5000000] [-garbage 1024] [-runs 3] [-json]
//
// The same cache workload runs twice, each time in a fresh child process
// (so neither store's heap, RSS or GC pacing bleeds into the other): once
// with the values on the Go heap (map[string][]byte), once in
// offheapcache, whose index holds no Go pointers. Each process loads the
// entries, collects once, then runs the churn phase — Get/Set/Delete
// batches in a random mix, plus the garbage a request handler makes — and
// reports what the runtime measured over that phase alone.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/offheapcache"
)

func init() { commands["gc"] = gcCommand }

// gcConfig is the workload. The defaults are the issue's: 5 million
// entries, keys 8–32 bytes, values 32 bytes–1 KiB.
type gcConfig struct {
	Entries int     `json:"entries"`
	Ops     int     `json:"ops"`
	Garbage int     `json:"garbage"` // bytes of short-lived Go allocation per op
	Get     float64 `json:"get"`     // shares of the op mix; the rest are Deletes
	Set     float64 `json:"set"`
	Seed    uint64  `json:"seed"`
}

// gcResult is what one store's child process measured.
type gcResult struct {
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

func gcCommand(args []string) error {
	fs := flag.NewFlagSet("gc", flag.ContinueOnError)
	var cfg gcConfig
	fs.IntVar(&cfg.Entries, "entries", 5_000_000, "entries in the cache")
	fs.IntVar(&cfg.Ops, "ops", 5_000_000, "operations in the churn phase")
	fs.IntVar(&cfg.Garbage, "garbage", 1024, "bytes of short-lived Go heap garbage per op (a request handler's)")
	fs.Float64Var(&cfg.Get, "get", 0.80, "share of Gets")
	fs.Float64Var(&cfg.Set, "set", 0.15, "share of Sets (the rest are Deletes)")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed")
	runs := fs.Int("runs", 3, "runs of each store; the table shows medians")
	asJSON := fs.Bool("json", false, "print every run as one JSON object a line instead of the table")
	child := fs.String("child", "", "internal: run one store (heap or offheap) in this process and print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Entries <= 0 || cfg.Ops < 0 || cfg.Garbage < 0 || cfg.Get < 0 || cfg.Set < 0 || cfg.Get+cfg.Set > 1 {
		return fmt.Errorf("gc: bad workload %+v", cfg)
	}
	if *child != "" {
		r, err := runGCStore(*child, cfg)
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(r)
	}
	results, err := runGCChildren(cfg, *runs, os.Stderr)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		for _, r := range results {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	return printGCTable(os.Stdout, cfg, *runs, results)
}

// runGCChildren runs each store runs times, alternating, each in a fresh
// process of this same program.
func runGCChildren(cfg gcConfig, runs int, progress io.Writer) ([]gcResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var out []gcResult
	for i := range runs {
		for _, store := range gcStores {
			fmt.Fprintf(progress, "gc: run %d/%d, %s…\n", i+1, runs, store)
			cmd := exec.Command(exe, "gc", "-child", store, "-entries", strconv.Itoa(cfg.Entries),
				"-ops", strconv.Itoa(cfg.Ops), "-garbage", strconv.Itoa(cfg.Garbage),
				"-get", fmt.Sprint(cfg.Get), "-set", fmt.Sprint(cfg.Set), "-seed", fmt.Sprint(cfg.Seed+uint64(i)))
			cmd.Stderr = os.Stderr
			b, err := cmd.Output()
			if err != nil {
				return nil, fmt.Errorf("gc: %s child: %w", store, err)
			}
			var r gcResult
			if err := json.Unmarshal(b, &r); err != nil {
				return nil, fmt.Errorf("gc: %s child printed %q: %w", store, b, err)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

var gcStores = []string{"heap", "offheap"}

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

func newGCStore(name string, entries int) (gcStore, error) {
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

func runGCStore(name string, cfg gcConfig) (gcResult, error) {
	store, err := newGCStore(name, cfg.Entries)
	if err != nil {
		return gcResult{}, err
	}
	defer store.Close()
	r := rand.New(rand.NewPCG(cfg.Seed, 0x6763))
	key := make([]byte, 0, 32)
	value := bytes.Repeat([]byte{0xA5}, 1024)
	dst := make([]byte, 0, 1024)

	start := time.Now()
	for id := range uint64(cfg.Entries) {
		if err := store.Set(gcKey(key, id), value[:gcValueSize(r)]); err != nil {
			return gcResult{}, err
		}
	}
	res := gcResult{Store: name, Entries: cfg.Entries, LoadSeconds: time.Since(start).Seconds()}
	runtime.GC() // start the churn phase from a collected heap, for both stores

	before := readGCMetrics()
	var spent [3]time.Duration
	var count [3]int
	for done := 0; done < cfg.Ops; done += gcBatch {
		kind := 2 // delete
		if p := r.Float64(); p < cfg.Get {
			kind = 0
		} else if p < cfg.Get+cfg.Set {
			kind = 1
		}
		n := min(gcBatch, cfg.Ops-done)
		// The request handlers' garbage, made outside the timed window so
		// that ns/op is the cache's own; it still drives the GC cycles
		// whose marking and assists the timed ops run through.
		for range n {
			if cfg.Garbage > 0 {
				gcSink = make([]byte, cfg.Garbage)
			}
		}
		t0 := time.Now()
		for range n {
			k := gcKey(key, r.Uint64N(uint64(cfg.Entries)))
			switch kind {
			case 0:
				var ok bool
				if dst, ok = store.Get(k, dst[:0]); ok {
					res.Hits++
				}
			case 1:
				if err := store.Set(k, value[:gcValueSize(r)]); err != nil {
					return res, err
				}
			case 2:
				store.Delete(k)
			}
		}
		spent[kind] += time.Since(t0)
		count[kind] += n
	}
	after := readGCMetrics()
	gcSink = nil

	perOp := func(k int) float64 {
		if count[k] == 0 {
			return 0
		}
		return float64(spent[k].Nanoseconds()) / float64(count[k])
	}
	res.GetNs, res.SetNs, res.DeleteNs = perOp(0), perOp(1), perOp(2)
	if dt := after.totalCPU - before.totalCPU; dt > 0 {
		res.GCFraction = (after.gcCPU - before.gcCPU) / dt
	}
	res.GCCycles = after.cycles - before.cycles
	pauses := histDelta(after.pauses, before.pauses)
	res.Pauses = pauses.total()
	res.PauseP50, res.PauseP99, res.PauseMax = pauses.quantile(0.50), pauses.quantile(0.99), pauses.max()
	res.HeapObjects, res.HeapLive = after.heapObjects, after.heapLive
	if c, ok := store.(*offheapcache.Cache); ok {
		res.OffHeap = c.Allocator().Stats().Resident
	}
	res.RSS, res.PeakRSS, err = processRSS()
	runtime.KeepAlive(store)
	return res, err
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

// processRSS reads the process's resident and peak resident bytes.
func processRSS() (rss, peak uint64, err error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/self/status %s: %w", name, err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	if rss == 0 {
		return 0, 0, errors.New("no VmRSS in /proc/self/status")
	}
	return rss, peak, nil
}

// printGCTable prints the medians of each store side by side, with the
// ratio off-heap / heap.
func printGCTable(w io.Writer, cfg gcConfig, runs int, results []gcResult) error {
	by := map[string][]gcResult{}
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
		f    func(gcResult) float64
		fmt  func(float64) string
	}{
		{"get ns/op", func(r gcResult) float64 { return r.GetNs }, fmtF(1)},
		{"set ns/op", func(r gcResult) float64 { return r.SetNs }, fmtF(1)},
		{"delete ns/op", func(r gcResult) float64 { return r.DeleteNs }, fmtF(1)},
		{"load s", func(r gcResult) float64 { return r.LoadSeconds }, fmtF(2)},
		{"gc cpu fraction", func(r gcResult) float64 { return r.GCFraction }, fmtF(4)},
		{"gc cycles", func(r gcResult) float64 { return float64(r.GCCycles) }, fmtF(0)},
		{"gc pauses", func(r gcResult) float64 { return float64(r.Pauses) }, fmtF(0)},
		{"pause p50 µs", func(r gcResult) float64 { return r.PauseP50 * 1e6 }, fmtF(1)},
		{"pause p99 µs", func(r gcResult) float64 { return r.PauseP99 * 1e6 }, fmtF(1)},
		{"pause max µs", func(r gcResult) float64 { return r.PauseMax * 1e6 }, fmtF(1)},
		{"go heap objects MiB", func(r gcResult) float64 { return float64(r.HeapObjects) / (1 << 20) }, fmtF(0)},
		{"go heap live MiB", func(r gcResult) float64 { return float64(r.HeapLive) / (1 << 20) }, fmtF(0)},
		{"off-heap resident MiB", func(r gcResult) float64 { return float64(r.OffHeap) / (1 << 20) }, fmtF(0)},
		{"process RSS MiB", func(r gcResult) float64 { return float64(r.RSS) / (1 << 20) }, fmtF(0)},
		{"peak RSS MiB", func(r gcResult) float64 { return float64(r.PeakRSS) / (1 << 20) }, fmtF(0)},
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

func median(rs []gcResult, f func(gcResult) float64) float64 {
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
