package main

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/internal/sampler"
	"github.com/brkmap/alloc/bench/libc"
	"github.com/brkmap/alloc/internal/procfs"
	"github.com/brkmap/alloc/internal/sys"
	"github.com/brkmap/alloc/stats"
)

// heap is what a replay or a workload allocates from: this allocator
// under one policy, or glibc's malloc.
type heap interface {
	Malloc(n int) ([]byte, error)
	Realloc(b []byte, n int) ([]byte, error)
	Free(b []byte) error
	Trim() int
}

// policy is one way of serving requests, compared side by side with the
// others.
type policy struct {
	name  string
	cfg   alloc.Config
	libc  bool // glibc's malloc through cgo instead of this allocator
	about string
}

var policies = []policy{
	{name: "threshold", cfg: alloc.Config{},
		about: "glibc's policy with the threshold pinned at 128 KiB: small from the region, large in their own mappings"},
	{name: "dynamic", cfg: alloc.Config{DynamicThreshold: true},
		about: "the same with glibc's sliding threshold: freeing a mapped block raises the threshold to its size"},
	{name: "brk", cfg: alloc.Config{Policy: alloc.PolicyBrk},
		about: "everything from the brk-like region"},
	{name: "mmap", cfg: alloc.Config{Policy: alloc.PolicyMmap},
		about: "every block its own mapping"},
	{name: "libc", libc: true,
		about: "glibc's malloc through cgo, with its defaults (sliding threshold on); resident is the process's RSS growth"},
}

// policyNames returns the names accepted by -policy, "all" last.
func policyNames() []string {
	var names []string
	for _, p := range policies {
		names = append(names, p.name)
	}
	return append(names, "all")
}

// selectPolicies returns the policies that name selects ("all": every one).
func selectPolicies(name string) ([]policy, error) {
	if name == "all" {
		return policies, nil
	}
	for _, p := range policies {
		if p.name == name {
			return []policy{p}, nil
		}
	}
	return nil, fmt.Errorf("unknown policy %q (want one of %v)", name, policyNames())
}

// errLibcMissing says why the libc policy is skipped.
var errLibcMissing = errors.New("the libc policy needs cgo (this binary was built with CGO_ENABLED=0): skipped")

// libcHeap is glibc's malloc. Blocks are slices over C memory.
type libcHeap struct{}

var errLibcNull = fmt.Errorf("libc: malloc returned NULL: %w", alloc.ErrOutOfMemory)

func (libcHeap) Malloc(n int) ([]byte, error) {
	p := libc.Malloc(n)
	if p == nil {
		return nil, errLibcNull
	}
	return unsafe.Slice((*byte)(p), n), nil
}

func (libcHeap) Realloc(b []byte, n int) ([]byte, error) {
	var old unsafe.Pointer
	if b != nil {
		old = unsafe.Pointer(unsafe.SliceData(b))
	}
	p := libc.Realloc(old, max(n, 1)) // realloc(p, 0) would free p
	if p == nil {
		return nil, errLibcNull
	}
	return unsafe.Slice((*byte)(p), n), nil
}

func (libcHeap) Free(b []byte) error {
	if b != nil {
		libc.Free(unsafe.Pointer(unsafe.SliceData(b)))
	}
	return nil
}

func (libcHeap) Trim() int { return libc.Trim() }

// instance is one policy set up for one run: the heap, what measures it,
// and how to read its system calls at the end.
type instance struct {
	policy    policy
	heap      heap
	a         *alloc.Allocator // nil for libc
	counter   *countingHeap    // libc: glibc does not tell its live bytes
	threshold int              // the configured mmap threshold (0: none)
	baseRSS   uint64           // the process's RSS before the run (libc)

	// peakMap is the region map at the sample of highest Resident, lastMap
	// the latest one (taken by the probe).
	peakMap      stats.RegionMap
	moments      []moment // region maps at the named moments
	peakResident uint64
	maps         bool // take region maps with every sample
}

// newInstance sets p up. threshold > 0 overrides the mmap threshold (for
// threshold and libc; the others have no fixed threshold to set).
func newInstance(p policy, threshold int, configure func(*alloc.Config)) (*instance, error) {
	in := &instance{policy: p}
	if p.libc {
		if !libc.Available {
			return nil, errLibcMissing
		}
		in.threshold = alloc.DefaultMmapThreshold
		if threshold > 0 {
			if libc.Mallopt(libc.MmapThreshold, threshold) != 1 {
				return nil, fmt.Errorf("mallopt(M_MMAP_THRESHOLD, %d) refused", threshold)
			}
			in.threshold = threshold
		}
		in.counter = &countingHeap{heap: libcHeap{}}
		in.heap = in.counter
		return in, nil
	}
	cfg := p.cfg
	if threshold > 0 && p.name == "threshold" {
		cfg.MmapThreshold = threshold
	}
	if configure != nil {
		configure(&cfg)
	}
	a, err := alloc.New(cfg)
	if err != nil {
		return nil, err
	}
	in.a, in.heap = a, a
	if cfg.Policy == alloc.PolicyThreshold {
		in.threshold = cmpOr(cfg.MmapThreshold, alloc.DefaultMmapThreshold)
	}
	return in, nil
}

func cmpOr(v, def int) int {
	if v != 0 {
		return v
	}
	return def
}

// start records the process's RSS before the run, for the libc figures.
func (in *instance) start() error {
	m, err := procfs.ReadProcMemory()
	if err != nil {
		return fmt.Errorf("reading /proc/self/status: %w", err)
	}
	in.baseRSS = m.RSS
	if err := procfs.ResetPeakRSS(); err != nil {
		return fmt.Errorf("resetting the peak RSS: %w", err)
	}
	return nil
}

// probe fills in a sample: from the allocator's own measurements, or, for
// glibc, from the process's accounting (RSS growth over the start).
func (in *instance) probe(s *sampler.Sample) {
	if in.a == nil {
		s.Resident = sat(s.RSS, in.baseRSS)
		s.LiveBytes = in.counter.live
		s.MinorFaults = sys.MinorFaults()
		return
	}
	st := in.a.Stats()
	s.Resident = st.Resident
	s.LiveBytes = st.LiveBytes
	s.ArenaBytes = st.ArenaBytes
	s.MmapBytes = st.MmapBytes
	s.Syscalls = st.Syscalls()
	s.MinorFaults = st.MinorFaults
	if in.maps || st.DirtyBytes > 0 {
		m := in.a.RegionMap()
		s.Trapped = m.Trapped()
		if in.maps {
			if s.Label != "" && s.Label != "start" {
				in.moments = append(in.moments, moment{Label: s.Label, Map: m})
			}
			if s.Resident > in.peakResident || len(in.peakMap.Extents) == 0 {
				in.peakResident, in.peakMap = s.Resident, m
			}
		}
	}
}

// moment is the region map at a named moment of a run.
type moment struct {
	Label string          `json:"label"`
	Map   stats.RegionMap `json:"map"`
}

// sat returns a-b, or 0 if b > a.
func sat(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

func (in *instance) close() {
	if in.a != nil {
		in.a.Close()
	}
}

// callCounts returns the allocator's system-call counters, or nils for
// glibc, whose calls this process cannot count.
func (in *instance) callCounts() (mmap, munmap, madvise, mprotect *uint64) {
	if in.a == nil {
		return nil, nil, nil, nil
	}
	s := in.a.Stats()
	return &s.Mmap, &s.Munmap, &s.Madvise, &s.Mprotect
}

func warn(format string, args ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...) }

// countingHeap counts the bytes live in a heap — glibc cannot say, and
// a workload's peak must not depend on when samples fall — and, given a
// sampler, makes it sample each time the live bytes pass their previous
// peak by 1/32 (at least 16 KiB), so that short peaks are measured too.
// The sample is taken at the next call, once the caller has written the
// block that made the peak (an untouched block is not resident yet).
type countingHeap struct {
	heap
	live, peak, nextMark uint64
	s                    *sampler.Sampler
	pending              bool
}

func (c *countingHeap) before() {
	if c.pending {
		c.pending = false
		c.s.Mark("")
	}
}

func (c *countingHeap) grew(n uint64) {
	c.live += n
	if c.live > c.peak {
		c.peak = c.live
		if c.s != nil && c.live >= c.nextMark {
			c.pending = true
			c.nextMark = c.live + max(c.live/32, 16<<10)
		}
	}
}

func (c *countingHeap) Malloc(n int) ([]byte, error) {
	c.before()
	b, err := c.heap.Malloc(n)
	if err == nil {
		c.grew(uint64(n))
	}
	return b, err
}

func (c *countingHeap) Realloc(b []byte, n int) ([]byte, error) {
	c.before()
	nb, err := c.heap.Realloc(b, n)
	if err == nil {
		c.grew(uint64(n) - uint64(len(b)))
	}
	return nb, err
}

func (c *countingHeap) Free(b []byte) error {
	c.before()
	err := c.heap.Free(b)
	if err == nil {
		c.live -= uint64(len(b))
	}
	return err
}

func (c *countingHeap) Trim() int {
	c.before()
	return c.heap.Trim()
}

// instance makes the heap for a child run and notes in res what it is: the
// threshold, and where resident memory comes from (mincore, or the
// process's RSS for glibc). A failure is recorded in res too.
func (res *result) instance(p policy, threshold int, configure func(*alloc.Config)) (*instance, error) {
	in, err := newInstance(p, threshold, configure)
	if err != nil {
		res.Error = err.Error()
		return nil, err
	}
	res.Threshold = in.threshold
	if in.a == nil {
		res.ResidentFrom = "rss"
	}
	return in, nil
}
