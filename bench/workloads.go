package main

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/internal/sampler"
)

// workload is one lesson: a program that allocates from a heap, the same
// under every policy, and a paragraph saying what to look at.
//
// To add a lesson, append one to workloads: the command runs it under
// every policy in its own child process, puts it in the table, plots its
// resident memory over time and its region map, and prints its lesson on
// the report page. A lesson that needs a different configuration (huge
// pages, say) sets configure.
type workload struct {
	name   string
	title  string // one line, for the terminal
	lesson string // a paragraph, for the report page
	run    func(h heap, p *probe) error
	// configure, when set, adjusts every policy's Config for this
	// workload (not the libc policy's, which has none).
	configure func(*alloc.Config)
}

var workloads = []workload{
	{name: "pinned-top", run: pinnedTop,
		title: "20 MiB of 512-byte blocks and one block after them that stays live; free the rest, then Trim",
		lesson: "The pinned top. The break can only move down while the top of the region is free, so one " +
			"small block allocated last keeps everything below it resident after it is freed: the region map " +
			"at the moment \"freed\" shows those pages as trapped (free, resident) until Trim releases them with madvise — " +
			"exactly glibc's behaviour until malloc_trim. One mapping per block (mmap) has no such trap, and " +
			"pays for it in system calls."},
	{name: "large-temp", run: largeTemp,
		title: "a 256 KiB buffer allocated, touched page by page and freed 200 times",
		lesson: "Repeated large temporary buffers. Above the 128 KiB threshold every buffer gets a fresh mapping, " +
			"so each one costs mmap, 64 page faults and munmap. glibc's sliding threshold (the dynamic policy, " +
			"and libc with its defaults) raises the threshold when the first buffer is freed, so later buffers " +
			"come from the region and reuse the same, already resident pages: no faults, no system calls."},
	{name: "cache-churn", run: cacheChurn,
		title: "a cache of 4096 values (16 B–64 KiB, 1% 128–512 KiB) replaced at random 16384 times",
		lesson: "A cache with churn of mixed sizes. Values come and go in random order, so the region fills with " +
			"holes of every size: resident memory stays above the live bytes (the fragmentation column), and " +
			"the region map shows free pages between live ones that only Trim could give back. Large values " +
			"under the threshold policy live in their own mappings and leave no holes."},
	{name: "mmap-wall", run: mmapWall,
		title: "many 64-byte objects; every other one freed (under mmap: up to the vm.max_map_count wall)",
		lesson: "Many small objects under PolicyMmap. Each 64-byte object takes a whole page (64 times its size " +
			"in resident memory) and a system call both ways. Worse, the kernel caps the mappings of a process " +
			"(vm.max_map_count, 65530 by default): adjacent mappings merge, but freeing every other object " +
			"splits them, and when the cap is reached munmap itself fails with ENOMEM. The allocator reports " +
			"it (the free fails, the block stays live) instead of crashing; the Go runtime, which needs " +
			"mappings too, would not be so lucky — this workload backs off at once."},
	{name: "service", run: service,
		title: "20000 requests: headers, bodies (1% up to 2 MiB), responses grown by realloc, a session table",
		lesson: "A service-like mix. Short-lived request buffers of every size around a long-lived session " +
			"table: what a Go service moving its buffers off the garbage-collected heap would do. The " +
			"threshold policy keeps small and mid-size buffers in reused region pages and gives large bodies " +
			"back at once; brk keeps the large bodies' pages too; mmap pays a mapping for every buffer."},
}

// findWorkload returns the workload called name.
func findWorkload(name string) (workload, bool) {
	for _, w := range workloads {
		if w.name == name {
			return w, true
		}
	}
	return workload{}, false
}

// probe is what a workload gets besides its heap: the sampler to Tick
// (every few dozen operations) and Mark (at its named moments), a scale
// (1 for the real run; tests shrink workloads), and notes for the report.
type probe struct {
	*sampler.Sampler
	scale float64
	notes []string
}

// n scales a count, never below 1.
func (p *probe) n(x int) int { return max(1, int(float64(x)*p.scale)) }

func (p *probe) note(format string, args ...any) {
	p.notes = append(p.notes, fmt.Sprintf(format, args...))
}

// childWorkload runs one workload under one policy, in this (child) process.
func childWorkload(name string, p policy, scale float64) *result {
	res := &result{Trace: name, Policy: p.name, ResidentFrom: "mincore"}
	w, ok := findWorkload(name)
	if !ok {
		res.Error = "unknown workload " + name
		return res
	}
	in, err := res.instance(p, 0, w.configure)
	if err != nil {
		return res
	}
	defer in.close()
	in.maps = true
	s := sampler.New(2*time.Millisecond, in.probe)
	pr := &probe{Sampler: s, scale: scale}
	if err := in.start(); err != nil {
		res.Error = err.Error()
		return res
	}
	s.Start()
	counted := &countingHeap{heap: in.heap, s: s}
	err = w.run(counted, pr)
	elapsed := s.Elapsed()
	s.Mark("end")
	res.Seconds = elapsed.Seconds()
	res.PeakLiveBytes = counted.peak
	finish(res, in, s)
	if in.a != nil {
		res.PeakMap, res.Moments = &in.peakMap, in.moments
	}
	res.Note = strings.Join(pr.notes, " ")
	res.OK = err == nil
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

// touch writes one byte in every page of b (and its last byte).
func touch(b []byte) {
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	if len(b) > 0 {
		b[len(b)-1] = 1
	}
}

func pinnedTop(h heap, p *probe) error {
	blocks := make([][]byte, 0, p.n(20<<20/512))
	for range cap(blocks) {
		b, err := h.Malloc(512)
		if err != nil {
			return err
		}
		fill(b, 1, 0)
		blocks = append(blocks, b)
		p.Tick()
	}
	pin, err := h.Malloc(512)
	if err != nil {
		return err
	}
	fill(pin, 2, 0)
	p.Mark("allocated")
	for _, b := range blocks {
		if err := h.Free(b); err != nil {
			return err
		}
		p.Tick()
	}
	p.Mark("freed")
	h.Trim()
	p.Mark("trimmed")
	return h.Free(pin)
}

func largeTemp(h heap, p *probe) error {
	for range p.n(200) {
		b, err := h.Malloc(256 << 10)
		if err != nil {
			return err
		}
		touch(b)
		if err := h.Free(b); err != nil {
			return err
		}
		p.Tick()
	}
	p.Mark("done")
	return nil
}

// logUniform returns a size between lo and hi whose logarithm is uniform.
func logUniform(r *rand.Rand, lo, hi int) int {
	return int(math.Exp(math.Log(float64(lo)) + r.Float64()*(math.Log(float64(hi))-math.Log(float64(lo)))))
}

func cacheChurn(h heap, p *probe) error {
	r := rand.New(rand.NewPCG(1, 2))
	size := func() int {
		if r.IntN(100) == 0 {
			return logUniform(r, 128<<10, 512<<10)
		}
		return logUniform(r, 16, 64<<10)
	}
	slots := make([][]byte, p.n(4096))
	put := func(i int) error {
		if slots[i] != nil {
			if err := h.Free(slots[i]); err != nil {
				return err
			}
		}
		b, err := h.Malloc(size())
		if err != nil {
			return err
		}
		fill(b, uint64(i)+1, 0)
		slots[i] = b
		p.Tick()
		return nil
	}
	for i := range slots {
		if err := put(i); err != nil {
			return err
		}
	}
	p.Mark("filled")
	for range 4 * len(slots) {
		if err := put(r.IntN(len(slots))); err != nil {
			return err
		}
	}
	p.Mark("churned")
	for _, b := range slots {
		if err := h.Free(b); err != nil {
			return err
		}
	}
	return nil
}

// mapCount returns the number of lines of /proc/self/maps: the process's
// mappings (VMAs), which vm.max_map_count caps.
func mapCount() int {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return -1
	}
	return bytes.Count(b, []byte("\n"))
}

// maxMapCount returns vm.max_map_count, or -1.
func maxMapCount() int {
	b, err := os.ReadFile("/proc/sys/vm/max_map_count")
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil {
		return -1
	}
	return n
}

// wallObjects is the most objects mmap-wall allocates: enough to reach the
// default vm.max_map_count (65530) by splitting, and no more — a system
// with a much higher cap is reported as such, not pushed into swapping.
const wallObjects = 2*65530 + 4096

func mmapWall(h heap, p *probe) error {
	limit, start := maxMapCount(), mapCount()
	n := wallObjects
	if limit > 0 && 2*(limit-start)+4096 < n {
		n = 2*(limit-start) + 4096
	}
	n = p.n(n)
	// Warm the Go heap now, so that near the wall the runtime has spans to
	// spare and no reason to map more memory.
	blocks := make([][]byte, n)
	runtime.GC()

	allocated := n
	for i := range blocks {
		b, err := h.Malloc(64)
		if err != nil {
			if errors.Is(err, alloc.ErrOutOfMemory) {
				p.note("The kernel refused mapping %d: %v.", i+1, err)
				allocated = i
				break
			}
			return err
		}
		fill(b, uint64(i)+1, 0)
		blocks[i] = b
		p.Tick()
	}
	blocks = blocks[:allocated]
	vmas := mapCount()
	p.Mark("allocated")

	// Free every other object: under mmap each free splits a mapping in
	// two, up to the cap. No sampling here: the sampler allocates, and
	// near the wall the runtime must not need a new mapping.
	wall, wallErr := -1, error(nil)
	for i := 1; i < len(blocks); i += 2 {
		if err := h.Free(blocks[i]); err != nil {
			// The refusal is ENOMEM from munmap; accept it whether or not
			// the allocator wraps it as ErrOutOfMemory.
			if errors.Is(err, alloc.ErrOutOfMemory) || errors.Is(err, syscall.ENOMEM) {
				wall, wallErr = i, err
				break
			}
			return err
		}
		blocks[i] = nil
	}
	// Back off: freeing the objects between the holes removes mappings.
	for i := 0; i < len(blocks); i += 2 {
		if err := h.Free(blocks[i]); err != nil {
			return err
		}
		blocks[i] = nil
	}
	switch {
	case wall >= 0:
		p.note("After %d objects (%d mappings at the start, %d once they were allocated), "+
			"freeing object %d was refused (%v): munmap would split a mapping past vm.max_map_count = %d. "+
			"The free failed cleanly and the block stayed live; freeing its neighbours first then worked.",
			allocated, start, vmas, wall, wallErr, limit)
	case limit > 0:
		p.note("%d objects, %d mappings at the start, %d once allocated; no refusal "+
			"(vm.max_map_count = %d).", allocated, start, vmas, limit)
	}
	p.Mark("split")
	for _, b := range blocks {
		if b != nil {
			if err := h.Free(b); err != nil {
				return err
			}
		}
	}
	return nil
}

func service(h heap, p *probe) error {
	r := rand.New(rand.NewPCG(3, 4))
	sessions := make([][]byte, 2000)
	newSession := func(i int) error {
		if sessions[i] != nil {
			if err := h.Free(sessions[i]); err != nil {
				return err
			}
		}
		b, err := h.Malloc(200 + r.IntN(1300))
		if err != nil {
			return err
		}
		fill(b, uint64(i)+1, 0)
		sessions[i] = b
		return nil
	}
	for i := range sessions {
		if err := newSession(i); err != nil {
			return err
		}
	}
	var scratch [16][]byte
	requests := p.n(20000)
	for req := range requests {
		header, err := h.Malloc(256 + r.IntN(1792))
		if err != nil {
			return err
		}
		fill(header, 7, 0)
		var body int
		switch x := r.IntN(100); {
		case x == 0:
			body = logUniform(r, 256<<10, 2<<20)
		case x < 10:
			body = logUniform(r, 16<<10, 120<<10)
		default:
			body = logUniform(r, 1<<10, 16<<10)
		}
		bb, err := h.Malloc(body)
		if err != nil {
			return err
		}
		fill(bb, 8, 0)
		k := 4 + r.IntN(12)
		for j := range k {
			if scratch[j], err = h.Malloc(32 + r.IntN(480)); err != nil {
				return err
			}
			fill(scratch[j], 9, 0)
		}
		// The response grows by doubling as it is written, like a bytes.Buffer.
		resp, err := h.Malloc(4 << 10)
		if err != nil {
			return err
		}
		want := body + body/2
		for n := len(resp); n < want; {
			n = min(2*n, want)
			if resp, err = h.Realloc(resp, n); err != nil {
				return err
			}
		}
		touch(resp)
		if r.IntN(10) < 3 {
			if err := newSession(r.IntN(len(sessions))); err != nil {
				return err
			}
		}
		for _, b := range append(scratch[:k:k], header, bb, resp) {
			if err := h.Free(b); err != nil {
				return err
			}
		}
		if req == requests/10 {
			p.Mark("warm")
		}
		p.Tick()
	}
	p.Mark("served")
	for _, b := range sessions {
		if err := h.Free(b); err != nil {
			return err
		}
	}
	return nil
}
