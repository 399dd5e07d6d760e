package cachebench

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// spec is one child's job: one store on one workload.
type spec struct {
	Store      string `json:"store"`
	Workload   string `json:"workload"`
	Entries    int    `json:"entries"`
	Ops        int    `json:"ops"` // per phase (each goroutine count, get and set)
	Goroutines []int  `json:"goroutines"`
	Seed       uint64 `json:"seed"`
}

// result is what the child measured. Times are ns per operation of the
// whole phase (wall time × 1 / operations, all goroutines together).
type result struct {
	Store      string             `json:"store"`
	Workload   string             `json:"workload"`
	Entries    int                `json:"entries"`
	Budget     int                `json:"budget_bytes"`
	GetNs      map[string]float64 `json:"get_ns_per_op"` // by goroutine count
	SetNs      map[string]float64 `json:"set_ns_per_op"`
	HitRatio   float64            `json:"hit_ratio"`
	GCFraction float64            `json:"gc_cpu_fraction"`
	GoHeap     uint64             `json:"go_heap_bytes"` // live heap after a collection
	RSS        uint64             `json:"rss_bytes"`     // growth over the child's start
	Held       int                `json:"entries_held"`  // estimated from a sample
	RSSEntry   float64            `json:"rss_per_entry"`
	Kept32K    float64            `json:"kept_last_32768,omitempty"` // shift
	KeptFit    float64            `json:"kept_last_fit,omitempty"`   // shift
	Stale      uint64             `json:"stale_hits,omitempty"`      // ttl: hits past their TTL
	Seconds    float64            `json:"seconds"`
	Skipped    string             `json:"skipped,omitempty"`
}

// Keys are 8–32 bytes, the id first; values 32 B–1 KiB (mean ≈ 528 B),
// the id in their first 8 bytes and, for the TTL workload, the expiry
// time in the next 8.
func key(buf []byte, id uint64) []byte {
	n := 8 + int((id*0x9E3779B97F4A7C15)>>59)%25
	buf = binary.LittleEndian.AppendUint64(buf[:0], id)
	for len(buf) < n {
		buf = append(buf, 'a'+byte(len(buf)))
	}
	return buf
}

func valueSize(id uint64) int { return 32 + int((id*0xBF58476D1CE4E5B9)>>40)%993 }

const meanEntry = 20 + 528 // key + value

// zipf draws ranks 0..n-1 with P(rank) ∝ 1/(rank+1)^theta, theta < 1
// (Gray et al., "Quickly generating billion-record synthetic databases",
// as YCSB does), scrambled over the ids by a bijection so hot keys are
// spread over shards.
type zipf struct {
	n                        uint64
	theta, alpha, zetan, eta float64
	half                     float64
}

func newZipf(n int, theta float64) *zipf {
	z := &zipf{n: uint64(n), theta: theta, alpha: 1 / (1 - theta)}
	for i := 1; i <= n; i++ {
		z.zetan += 1 / math.Pow(float64(i), theta)
	}
	zeta2 := 1 + 1/math.Pow(2, theta)
	z.eta = (1 - math.Pow(2/float64(n), 1-theta)) / (1 - zeta2/z.zetan)
	z.half = 1 + math.Pow(0.5, theta)
	return z
}

func (z *zipf) next(r *rand.Rand) uint64 {
	u := r.Float64()
	uz := u * z.zetan
	var rank uint64
	switch {
	case uz < 1:
		rank = 0
	case uz < z.half:
		rank = 1
	default:
		rank = min(uint64(float64(z.n)*math.Pow(z.eta*u-z.eta+1, z.alpha)), z.n-1)
	}
	return rank * 2654435761 % z.n // 2654435761 is a prime not dividing n
}

// run is the child: it makes the store, runs the workload, measures.
func run(sp spec) result {
	res := result{Store: sp.Store, Workload: sp.Workload, Entries: sp.Entries,
		GetNs: map[string]float64{}, SetNs: map[string]float64{}}
	start := time.Now()
	rss0 := rss()
	switch sp.Workload {
	case "shift":
		shift(sp, &res, rss0)
	case "ttl":
		if !ttlCapable(sp.Store) {
			res.Skipped = "no expiry"
			return res
		}
		steady(sp, &res, rss0)
	default:
		steady(sp, &res, rss0)
	}
	if res.Held > 0 {
		res.RSSEntry = float64(res.RSS) / float64(res.Held)
	}
	res.Seconds = time.Since(start).Seconds()
	return res
}

const ttl = time.Second

// steady: fill, then for each goroutine count a cache-aside get phase (a
// miss sets the value) and a set phase, keys uniform or Zipf(0.99). The
// budget holds half the keys (a quarter for Zipf's hit-ratio question is
// no fairer to anyone: all stores get the same bytes). The TTL workload is
// the uniform one on a quarter of the keys, every entry living one second.
func steady(sp spec, res *result, rss0 uint64) {
	n := sp.Entries
	var lifetime time.Duration
	if sp.Workload == "ttl" {
		n, lifetime = max(n/4, 1000), ttl
	}
	res.Budget = n * meanEntry / 2
	if sp.Workload == "ttl" {
		res.Budget = n * meanEntry * 5 / 4
	}
	s, err := newStore(sp.Store, res.Budget, n, lifetime)
	if err != nil {
		res.Skipped = err.Error()
		return
	}
	defer s.close()
	var z *zipf
	if sp.Workload == "zipf" {
		z = newZipf(n, 0.99)
	}
	pick := func(r *rand.Rand) uint64 {
		if z != nil {
			return z.next(r)
		}
		return r.Uint64N(uint64(n))
	}
	val := make([]byte, 1024)
	// setOne stores id's value; buf is the goroutine's scratch: the key
	// goes at its start, a TTL value (its expiry inside) at buf[1088:].
	setOne := func(id uint64, buf []byte) {
		v := val[:valueSize(id)]
		if lifetime > 0 {
			b := buf[1088 : 1088+len(v)]
			binary.LittleEndian.PutUint64(b, id)
			binary.LittleEndian.PutUint64(b[8:], uint64(time.Now().Add(lifetime).UnixNano()))
			s.setTTL(key(buf, id), b, lifetime)
			return
		}
		s.set(key(buf, id), v)
	}
	parallel(2, n, func(_ int, r *rand.Rand, i int, buf []byte) { setOne(uint64(i), buf) }, sp.Seed)
	if rs, ok := s.(*rist); ok {
		rs.c.Wait()
	}
	runtime.GC() // the fill's garbage is not the phases'
	before := readMetrics()
	var hits, gets, stale atomic.Uint64
	for _, g := range sp.Goroutines {
		d := parallel(g, sp.Ops, func(_ int, r *rand.Rand, _ int, buf []byte) {
			id := pick(r)
			k := key(buf[:0], id)
			got, ok := s.get(buf[64:64:1088], k)
			if ok {
				hits.Add(1)
				// the store starts its TTL clock a little after the value's
				// expiry was written: 50 ms of slack for a preempted setter
				if lifetime > 0 && len(got) >= 16 && int64(binary.LittleEndian.Uint64(got[8:])) < time.Now().UnixNano()-int64(50*time.Millisecond) {
					stale.Add(1)
				}
			} else {
				setOne(id, buf)
			}
			gets.Add(1)
		}, sp.Seed+uint64(g))
		res.GetNs[strconv.Itoa(g)] = float64(d.Nanoseconds()) / float64(sp.Ops)
		d = parallel(g, sp.Ops, func(_ int, r *rand.Rand, _ int, buf []byte) { setOne(pick(r), buf) }, sp.Seed+100+uint64(g))
		res.SetNs[strconv.Itoa(g)] = float64(d.Nanoseconds()) / float64(sp.Ops)
	}
	after := readMetrics()
	if dt := after.total - before.total; dt > 0 {
		res.GCFraction = (after.gc - before.gc) / dt
	}
	res.HitRatio = float64(hits.Load()) / float64(max(gets.Load(), 1))
	res.Stale = stale.Load()
	res.Held = held(s, n, sp.Seed)
	runtime.GC()
	res.GoHeap = readMetrics().heap
	res.RSS = rss() - min(rss0, rss()) // while the store is still open
	runtime.KeepAlive(s)
}

// held estimates the entries a store holds from 20,000 sampled keys.
func held(s store, n int, seed uint64) int {
	r := rand.New(rand.NewPCG(seed, 7))
	const sample = 20000
	found := 0
	kb, vb := make([]byte, 0, 64), make([]byte, 0, 2048)
	for range sample {
		if _, ok := s.get(vb[:0], key(kb, r.Uint64N(uint64(n)))); ok {
			found++
		}
	}
	return int(float64(found) / sample * float64(n))
}

// shift is issue 14's calcification workload: a 64 MiB store filled with
// 1.5 million 32-byte values, then written with 150,000 values of 1 KiB.
// It reports the share kept of the last 32,768 large keys and of the last
// large keys that fill 90% of the budget at 1,100 bytes each.
func shift(sp spec, res *result, rss0 uint64) {
	const budget, small, large = 64 << 20, 1_500_000, 150_000
	res.Budget = budget
	s, err := newStore(sp.Store, budget, small, 0)
	if err != nil {
		res.Skipped = err.Error()
		return
	}
	defer s.close()
	buf := make([]byte, 0, 64)
	v := make([]byte, 1024)
	before := readMetrics()
	for i := range small {
		s.set(key(buf, uint64(i)), v[:32])
	}
	t := time.Now()
	for i := range large {
		s.set(key(buf, uint64(small+i)), v)
	}
	res.SetNs["1"] = float64(time.Since(t).Nanoseconds()) / large
	if rs, ok := s.(*rist); ok {
		rs.c.Wait()
	}
	kept := func(last int) float64 {
		n := 0
		dst := make([]byte, 0, 2048)
		for i := large - last; i < large; i++ {
			if _, ok := s.get(dst[:0], key(buf, uint64(small+i))); ok {
				n++
			}
		}
		return float64(n) / float64(last)
	}
	fit := budget * 9 / 10 / 1100
	res.Kept32K, res.KeptFit = kept(32768), kept(fit)
	res.HitRatio = res.KeptFit
	res.Held = int(res.KeptFit * float64(fit))
	after := readMetrics()
	if dt := after.total - before.total; dt > 0 {
		res.GCFraction = (after.gc - before.gc) / dt
	}
	runtime.GC()
	res.GoHeap = readMetrics().heap
	res.RSS = rss() - min(rss0, rss()) // while the store is still open
	runtime.KeepAlive(s)
}

// parallel runs ops calls of f over g goroutines and returns the wall time.
func parallel(g, ops int, f func(w int, r *rand.Rand, i int, buf []byte), seed uint64) time.Duration {
	var wg sync.WaitGroup
	start := time.Now()
	for w := range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			buf := make([]byte, 64, 4096) // key at 0, get's dst at 64, TTL value at 1088
			for i := w; i < ops; i += g {
				f(w, r, i, buf)
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

type sample struct {
	gc, total float64
	heap      uint64
}

func readMetrics() sample {
	m := []metrics.Sample{
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/cpu/classes/total:cpu-seconds"},
		{Name: "/memory/classes/heap/objects:bytes"},
	}
	metrics.Read(m)
	return sample{gc: m[0].Value.Float64(), total: m[1].Value.Float64(), heap: m[2].Value.Uint64()}
}

// rss reads the process's resident set from /proc/self/statm.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}
