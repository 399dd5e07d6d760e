package alloc

import (
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/brkmap/alloc/slab"
	"github.com/brkmap/alloc/stats"
)

// ProfileRate is the default of Config.ProfileRate: the mean number of
// bytes allocated between two allocations recorded in the heap profile,
// as runtime.MemProfileRate is for the Go heap, 512 KiB unless changed.
// New reads it when Config.ProfileRate is 0, so set it before making an
// Allocator (for example at the start of main). 0 turns profiling off for
// such allocators, and then it costs nothing but one predictable branch;
// 1 records every allocation.
var ProfileRate = stats.DefaultProfileRate

// maxStack is the deepest call stack recorded, as the Go runtime's.
const maxStack = 32

// profileSampler keeps the heap profile's records: the root's part of the
// one sampling unit, whose countdowns and random draw are slab's
// (slab.NextSample). The hot path never touches it unless a block is
// sampled:
//
//   - Small blocks are sampled by the slab pool (slab.Options.ProfileRate):
//     a countdown per P's cache and per class, and a bit in the block's
//     state. Free sees that bit where it already reads the state, and only
//     then comes here (freedSmall, the pool's OnSampledFree).
//   - Page runs and mappings, whose allocation takes the region's lock or
//     a system call anyway, share one atomic countdown; their Free looks
//     the block up here only while some sampled one is live.
//
// Recording a sample costs a runtime.Callers and a map update under mu.
// A nil *profileSampler is profiling off: every method is then a no-op.
type profileSampler struct {
	rate    int64
	large   atomic.Int64 // bytes until the next sampled run or mapping
	nonSlab atomic.Int64 // sampled runs and mappings still live

	mu      sync.Mutex
	buckets map[bucketKey]*bucket // one per stack and size
	order   []*bucket             // buckets in creation order, for a stable profile
	live    map[uintptr]*bucket   // sampled blocks still live
	done    bool                  // closed: the allocator's memory is gone
}

type bucketKey struct {
	stack [maxStack]uintptr
	size  int
}

type bucket struct {
	rec  stats.HeapRecord
	size int64
}

// newProfileSampler returns the sampler for Config.ProfileRate rate (0:
// the package's ProfileRate), or nil with profiling off.
func newProfileSampler(rate int) *profileSampler {
	if rate == 0 {
		rate = ProfileRate
	}
	if rate <= 0 {
		return nil
	}
	s := &profileSampler{rate: int64(rate), buckets: map[bucketKey]*bucket{}, live: map[uintptr]*bucket{}}
	s.large.Store(slab.NextSample(s.rate))
	return s
}

// rateOrZero returns the sampling rate, 0 with profiling off: the slab
// pool's ProfileRate.
func (s *profileSampler) rateOrZero() int64 {
	if s == nil {
		return 0
	}
	return s.rate
}

// sampleLarge counts n bytes down and reports whether the run or mapping
// just allocated is to be sampled.
func (s *profileSampler) sampleLarge(n uintptr) bool {
	if s == nil {
		return false
	}
	if s.large.Add(-int64(n)) >= 0 {
		return false
	}
	s.large.Store(slab.NextSample(s.rate))
	s.nonSlab.Add(1) // recorded by alloc before anyone can free it
	return true
}

// sampledLarge counts a block outside the slabs that another countdown
// than sampleLarge's sampled (a best-fit heap's front's, or the heap's
// own, under its lock): recorded by alloc before anyone can free it.
func (s *profileSampler) sampledLarge() { s.nonSlab.Add(1) }

// record notes a sampled block at p of n bytes, with the stack that asked
// for it. The block is not yet handed out, so nothing can free it
// meanwhile.
//
//go:noinline
func (s *profileSampler) record(p unsafe.Pointer, n int) {
	var k bucketKey
	depth := runtime.Callers(2, k.stack[:]) // from alloc up: Hide cuts the allocator's frames
	k.size = n
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[k]
	if b == nil {
		b = &bucket{rec: stats.HeapRecord{Stack: slices.Clone(k.stack[:depth])}, size: int64(n)}
		s.buckets[k] = b
		s.order = append(s.order, b)
	}
	b.rec.AllocObjects++
	b.rec.AllocBytes += int64(n)
	s.live[uintptr(p)] = b
	if s.done {
		// a block handed out by a call outside the gate (a front's, the
		// best-fit heap's) that Close overtook: gone with the memory, as
		// closed counts every live one
		s.drop(uintptr(p))
	}
}

// freedSmall notes that the sampled small block at addr is freed: the slab
// pool's OnSampledFree, called before the block can be handed out again.
func (s *profileSampler) freedSmall(addr uintptr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop(addr)
}

// drop moves a live sampled block to the freed counts of its bucket (mu
// held) and reports whether addr was one.
func (s *profileSampler) drop(addr uintptr) bool {
	b := s.live[addr]
	if b == nil {
		return false
	}
	b.rec.FreeObjects++
	b.rec.FreeBytes += b.size
	delete(s.live, addr)
	return true
}

// freeingLarge is called for a run or a mapping about to be freed (still
// owned by the caller, so no one can be recording a new block there):
// while no sampled one is live, it costs an atomic load.
func (s *profileSampler) freeingLarge(addr uintptr) {
	if s == nil || s.nonSlab.Load() == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drop(addr) {
		s.nonSlab.Add(-1)
	}
}

// moved follows a mapping that mremap moved.
func (s *profileSampler) moved(from, to uintptr) {
	if s == nil || from == to || s.nonSlab.Load() == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.live[from]; b != nil {
		delete(s.live, from)
		s.live[to] = b
	}
}

// closed counts every block still live as freed: Close frees them all.
func (s *profileSampler) closed() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for addr := range s.live {
		s.drop(addr)
	}
	s.done = true
	s.nonSlab.Store(0)
}

// hideAllocator is the profile's Hide: the allocator's own methods (a
// Local's too) and typed helpers, so that a sample's leaf is the function that asked.
func hideAllocator(fn string) bool {
	const root = "github.com/brkmap/alloc."
	rest, ok := strings.CutPrefix(fn, root)
	if !ok {
		return false
	}
	return strings.HasPrefix(rest, "(*Allocator).") || strings.HasPrefix(rest, "(*Local).") || strings.HasPrefix(rest, "(*profileSampler).") ||
		strings.HasPrefix(rest, "NewObject[") || strings.HasPrefix(rest, "MakeSlice[")
}

// HeapProfile returns the heap profile of this allocator's sampled
// allocations (see ProfileRate): what is live now, and everything
// allocated since New, by call stack. Write it with its Write method and
// read it with `go tool pprof`, or serve it with statshttp.Handler. With
// profiling off it holds no records.
func (a *Allocator) HeapProfile() *stats.HeapProfile {
	h := &stats.HeapProfile{Hide: hideAllocator}
	s := a.prof
	if s == nil {
		return h
	}
	h.Rate = s.rate
	s.mu.Lock()
	defer s.mu.Unlock()
	h.Records = make([]stats.HeapRecord, len(s.order))
	for i, b := range s.order {
		h.Records[i] = b.rec // the stack is never changed: sharing it is safe
	}
	return h
}
