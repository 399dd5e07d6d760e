// Package gcbench is what taking a cache's values off the Go heap does to
// the garbage collector (`go run ./bench gc`).
//
// The same cache workload runs in two stores, each in a fresh child
// process (so neither store's heap, RSS or GC pacing bleeds into the
// other): once with the values on the Go heap (map[string][]byte), once
// in the module's cache package, whose index holds no Go pointers. Each process loads
// the entries, collects once, then runs the churn phase — Get/Set/Delete
// batches in a random mix, plus the garbage a request handler makes — and
// reports what the runtime measured over that phase alone.
package gcbench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/brkmap/alloc/bench/internal/child"
	"github.com/brkmap/alloc/cache"
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

// gcSink keeps the request garbage reachable for a moment, as a handler's
// buffers are, so the compiler cannot drop it.
//
//lint:ignore U1000 written, never read: the point is the allocation escaping to the heap
var gcSink []byte

const gcBatch = 256 // ops of one kind between two clock reads

// RunStore loads cfg.Entries entries into the store called name, runs the
// churn phase, and returns what the runtime measured over it. It runs in
// this process: Run calls it in a child per store.
func RunStore(name string, cfg Config) (Result, error) {
	store, err := newGCStore(name, cfg.Entries)
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
	w.churn()
	after := readGCMetrics()
	gcSink = nil
	res.Hits = w.hits
	res.GetNs, res.SetNs, res.DeleteNs = w.perOp(opGet), w.perOp(opSet), w.perOp(opDelete)
	res.setGCFigures(before, after)
	if c, ok := store.(*cache.Cache); ok {
		res.OffHeap = c.Allocator().Stats().Resident
		if st := c.Stats(); st.Dropped > 0 || st.Evictions > 0 {
			return res, fmt.Errorf("gc: %s: %d sets dropped, %d entries evicted: %w", name, st.Dropped, st.Evictions, errEvicted)
		}
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

// errEvicted: the off-heap store lost entries, so it did not run the
// same workload as the map (its budget is meant to hold them all).
var errEvicted = errors.New("the store lost entries")

// load sets every entry once.
func (w *gcWorkload) load() error {
	for id := range uint64(w.cfg.Entries) {
		w.store.Set(gcKey(w.key, id), w.value[:gcValueSize(w.r)])
	}
	if c, ok := w.store.(*cache.Cache); ok {
		if st := c.Stats(); st.Entries != w.cfg.Entries {
			return fmt.Errorf("gc: loaded %d of %d entries (%d dropped, %d evicted): %w",
				st.Entries, w.cfg.Entries, st.Dropped, st.Evictions, errEvicted)
		}
	}
	return nil
}

// churn runs cfg.Ops operations in batches of one kind, drawn by the mix.
func (w *gcWorkload) churn() {
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
		w.batch(kind, n)
	}
}

// batch runs n operations of one kind on random keys, timed together.
func (w *gcWorkload) batch(kind, n int) {
	t0 := time.Now()
	for range n {
		k := gcKey(w.key, w.r.Uint64N(uint64(w.cfg.Entries)))
		switch kind {
		case opGet:
			var ok bool
			if w.dst, ok = w.store.HasGet(w.dst[:0], k); ok {
				w.hits++
			}
		case opSet:
			w.store.Set(k, w.value[:gcValueSize(w.r)])
		case opDelete:
			w.store.Del(k)
		}
	}
	w.spent[kind] += time.Since(t0)
	w.count[kind] += n
}

// perOp returns the mean nanoseconds of an operation of kind k, or 0.
func (w *gcWorkload) perOp(k int) float64 {
	if w.count[k] == 0 {
		return 0
	}
	return float64(w.spent[k].Nanoseconds()) / float64(w.count[k])
}
