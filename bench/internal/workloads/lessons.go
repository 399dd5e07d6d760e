package workloads

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"syscall"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/internal/harness"
	"github.com/brkmap/alloc/internal/procfs"
)

// lessons are the workloads of the policy comparison.
func lessons() []Workload {
	return []Workload{
		{Name: "pinned-top", Run: pinnedTop,
			Title: "20 MiB of 512-byte blocks and one block after them that stays live; free the rest, then Trim",
			Lesson: "The pinned top. The break can only move down while the top of the region is free, so one " +
				"small block allocated last keeps everything below it resident after it is freed: the region map " +
				"at the moment \"freed\" shows those pages as trapped (free, resident) until Trim releases them with madvise — " +
				"exactly glibc's behaviour until malloc_trim. (The purge, on by default, releases them too once " +
				"they have been free for PurgeDelay; the spike lesson shows it.) One mapping per block (mmap) has " +
				"no such trap, and pays for it in system calls."},
		{Name: "large-temp", Run: largeTemp,
			Title: "a 256 KiB buffer allocated, touched page by page and freed 200 times",
			Lesson: "Repeated large temporary buffers. Above the 128 KiB threshold every buffer gets a fresh mapping, " +
				"so each one costs mmap, 64 page faults and munmap. glibc's sliding threshold (the dynamic policy, " +
				"and libc with its defaults) raises the threshold when the first buffer is freed, so later buffers " +
				"come from the region and reuse the same, already resident pages: no faults, no system calls."},
		{Name: "cache-churn", Run: cacheChurn,
			Title: "a cache of 4096 values (16 B–64 KiB, 1% 128–512 KiB) replaced at random 16384 times",
			Lesson: "A cache with churn of mixed sizes. Values come and go in random order, so the region fills with " +
				"holes of every size: resident memory stays above the live bytes (the fragmentation column), and " +
				"the region map shows free pages between live ones that only Trim could give back. Large values " +
				"under the threshold policy live in their own mappings and leave no holes."},
		{Name: "mmap-wall", Run: mmapWall,
			Title: "many 64-byte objects; every other one freed (under mmap: up to the vm.max_map_count wall), then the rest",
			Lesson: "Many small objects under PolicyMmap. Each 64-byte object takes a whole page (64 times its size " +
				"in resident memory) and a system call both ways. Worse, the kernel caps the mappings of a process " +
				"(vm.max_map_count, 65530 by default): adjacent mappings merge, but freeing every other object " +
				"splits them, and when the cap is reached munmap itself fails with ENOMEM. The allocator reports " +
				"it (the free fails, the block stays live) instead of crashing; the Go runtime, which needs " +
				"mappings too, would not be so lucky — this workload backs off at once."},
		{Name: "service", Run: service,
			Title: "20000 requests: headers, bodies (1% up to 2 MiB), responses grown by realloc, a session table",
			Lesson: "A service-like mix. Short-lived request buffers of every size around a long-lived session " +
				"table: what a Go service moving its buffers off the garbage-collected heap would do. The " +
				"threshold policy keeps small and mid-size buffers in reused region pages and gives large bodies " +
				"back at once; brk keeps the large bodies' pages too; mmap pays a mapping for every buffer."},
	}
}

func pinnedTop(h harness.Heap, m *Meter) error {
	blocks := make([][]byte, 0, m.n(20<<20/512))
	for range cap(blocks) {
		b, err := h.Malloc(512)
		if err != nil {
			return err
		}
		harness.Fill(b, 1, 0)
		blocks = append(blocks, b)
		m.Tick()
	}
	pin, err := h.Malloc(512)
	if err != nil {
		return err
	}
	harness.Fill(pin, 2, 0)
	m.Mark("allocated")
	for _, b := range blocks {
		if err := h.Free(b); err != nil {
			return err
		}
		m.Tick()
	}
	m.Mark("freed")
	h.Trim()
	m.Mark("trimmed")
	return h.Free(pin)
}

func largeTemp(h harness.Heap, m *Meter) error {
	for range m.n(200) {
		b, err := h.Malloc(256 << 10)
		if err != nil {
			return err
		}
		touch(b)
		if err := h.Free(b); err != nil {
			return err
		}
		m.Tick()
	}
	m.Mark("done")
	return nil
}

func cacheChurn(h harness.Heap, m *Meter) error {
	r := rand.New(rand.NewPCG(1, 2))
	size := func() int {
		if r.IntN(100) == 0 {
			return logUniform(r, 128<<10, 512<<10)
		}
		return logUniform(r, 16, 64<<10)
	}
	slots := make([][]byte, m.n(4096))
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
		harness.Fill(b, uint64(i)+1, 0)
		slots[i] = b
		m.Tick()
		return nil
	}
	for i := range slots {
		if err := put(i); err != nil {
			return err
		}
	}
	m.Mark("filled")
	for range 4 * len(slots) {
		if err := put(r.IntN(len(slots))); err != nil {
			return err
		}
	}
	m.Mark("churned")
	for _, b := range slots {
		if err := h.Free(b); err != nil {
			return err
		}
	}
	return nil
}

// wallObjects is the most objects mmap-wall allocates: enough to reach the
// default vm.max_map_count (65530) by splitting, and no more — a system
// with a much higher cap is reported as such, not pushed into swapping.
const wallObjects = 2*65530 + 4096

func mmapWall(h harness.Heap, m *Meter) error {
	m.CountMaps = true
	limit, start := procfs.MaxMapCount(), procfs.MapCount()
	n := wallObjects
	if limit > 0 && 2*(limit-start)+4096 < n {
		n = 2*(limit-start) + 4096
	}
	n = m.n(n)
	// Warm the Go heap now, so that near the wall the runtime has spans to
	// spare and no reason to map more memory.
	blocks := make([][]byte, n)
	runtime.GC()

	allocated := n
	for i := range blocks {
		b, err := h.Malloc(64)
		if err != nil {
			if errors.Is(err, alloc.ErrOutOfMemory) {
				m.note("The kernel refused mapping %d: %v.", i+1, err)
				allocated = i
				break
			}
			return err
		}
		harness.Fill(b, uint64(i)+1, 0)
		blocks[i] = b
		m.Tick()
	}
	blocks = blocks[:allocated]
	vmas := procfs.MapCount()
	m.Mark("allocated")

	// Free every other object: under mmap each free splits a mapping in
	// two, up to the cap. The sampler counts the mappings as it goes (it
	// allocates nothing itself; the probe's few small objects come from the
	// Go heap warmed above), but stops within headroom of the cap: there,
	// the Go runtime (or the race detector) needing a mapping would die.
	const headroom = 512
	wall, wallErr, since := -1, error(nil), 0
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
		// Each free adds at most one mapping to the last count sampled.
		since++
		if n := len(m.Samples); limit <= 0 || n == 0 || m.Samples[n-1].Mappings+since < limit-headroom {
			m.Tick()
			if n < len(m.Samples) {
				since = 0
			}
		}
	}
	if wall >= 0 {
		// At the wall: give back headroom mappings (objects between holes,
		// each one mapping) before the sample, so the sample can allocate.
		for i := 0; i < 2*headroom && i < len(blocks); i += 2 {
			if err := h.Free(blocks[i]); err != nil {
				return err
			}
			blocks[i] = nil
		}
	}
	// The state the lesson is about: every other object freed, or, under
	// mmap, as many as the cap allows — recorded at the wall (less the
	// headroom just given back).
	m.Mark("split")
	// Back off: freeing the objects between the holes removes mappings.
	for i := 0; i < len(blocks); i += 2 {
		if blocks[i] == nil {
			continue
		}
		if err := h.Free(blocks[i]); err != nil {
			return err
		}
		blocks[i] = nil
		m.Tick()
	}
	switch {
	case wall >= 0:
		m.note("After %d objects (%d mappings at the start, %d once they were allocated), "+
			"freeing object %d was refused (%v): munmap would split a mapping past vm.max_map_count = %d. "+
			"The free failed cleanly and the block stayed live; freeing its neighbours first then worked.",
			allocated, start, vmas, wall, wallErr, limit)
	case limit > 0:
		m.note("%d objects, %d mappings at the start, %d once allocated; no refusal "+
			"(vm.max_map_count = %d).", allocated, start, vmas, limit)
	}
	m.Mark("backed off")
	for _, b := range blocks {
		if b != nil {
			if err := h.Free(b); err != nil {
				return err
			}
		}
	}
	return nil
}

// service is the service-like mix: a long-lived session table and, per
// request, a header, a body, a few scratch buffers and a response grown by
// realloc, all freed when the request is served.
func service(h harness.Heap, m *Meter) error {
	sv := &serviceState{h: h, r: rand.New(rand.NewPCG(3, 4)), sessions: make([][]byte, 2000)}
	for i := range sv.sessions {
		if err := sv.newSession(i); err != nil {
			return err
		}
	}
	requests := m.n(20000)
	for req := range requests {
		if err := sv.request(); err != nil {
			return err
		}
		if req == requests/10 {
			m.Mark("warm")
		}
		m.Tick()
	}
	m.Mark("served")
	for _, b := range sv.sessions {
		if err := h.Free(b); err != nil {
			return err
		}
	}
	return nil
}

// serviceState is the service workload's heap, random source and
// session table.
type serviceState struct {
	h        harness.Heap
	r        *rand.Rand
	sessions [][]byte
	scratch  [16][]byte
}

// newSession replaces session i with a new one of 200 B to 1.5 KiB.
func (sv *serviceState) newSession(i int) error {
	if sv.sessions[i] != nil {
		if err := sv.h.Free(sv.sessions[i]); err != nil {
			return err
		}
	}
	b, err := sv.h.Malloc(200 + sv.r.IntN(1300))
	if err != nil {
		return err
	}
	harness.Fill(b, uint64(i)+1, 0)
	sv.sessions[i] = b
	return nil
}

// bodySize draws a request body: 1% 256 KiB–2 MiB, 9% 16–120 KiB, the
// rest 1–16 KiB.
func (sv *serviceState) bodySize() int {
	switch x := sv.r.IntN(100); {
	case x == 0:
		return logUniform(sv.r, 256<<10, 2<<20)
	case x < 10:
		return logUniform(sv.r, 16<<10, 120<<10)
	}
	return logUniform(sv.r, 1<<10, 16<<10)
}

// request serves one request: its buffers are allocated, written and
// freed; three requests in ten replace a session.
func (sv *serviceState) request() error {
	h, r := sv.h, sv.r
	header, err := h.Malloc(256 + r.IntN(1792))
	if err != nil {
		return err
	}
	harness.Fill(header, 7, 0)
	body := sv.bodySize()
	bb, err := h.Malloc(body)
	if err != nil {
		return err
	}
	harness.Fill(bb, 8, 0)
	k := 4 + r.IntN(12)
	for j := range k {
		if sv.scratch[j], err = h.Malloc(32 + r.IntN(480)); err != nil {
			return err
		}
		harness.Fill(sv.scratch[j], 9, 0)
	}
	resp, err := grownResponse(h, body+body/2)
	if err != nil {
		return err
	}
	touch(resp)
	if r.IntN(10) < 3 {
		if err := sv.newSession(r.IntN(len(sv.sessions))); err != nil {
			return err
		}
	}
	for _, b := range append(sv.scratch[:k:k], header, bb, resp) {
		if err := h.Free(b); err != nil {
			return err
		}
	}
	return nil
}

// grownResponse returns a response of want bytes (at least 4 KiB), grown
// by doubling as it is written, like a bytes.Buffer.
func grownResponse(h harness.Heap, want int) ([]byte, error) {
	resp, err := h.Malloc(4 << 10)
	if err != nil {
		return nil, err
	}
	for n := len(resp); n < want; {
		n = min(2*n, want)
		if resp, err = h.Realloc(resp, n); err != nil {
			return nil, err
		}
	}
	return resp, nil
}
