package workloads

import (
	"math/rand/v2"
	"time"

	"github.com/brkmap/alloc/bench/internal/harness"
)

// spikeLesson is the purge's lesson.
func spikeLesson() Workload {
	return Workload{Name: "spike", Run: spike,
		Title: "a spike of 64 MiB of short-lived blocks (64 B–16 KiB) among a few long-lived ones, all freed, then 300 ms idle",
		Lesson: "Memory that goes back by itself. A service takes a burst of work, then goes quiet. The burst's " +
			"blocks are freed, but a few long-lived ones allocated during it sit above them, so the top of the " +
			"heap is not free and moving the break down gives nothing back. glibc keeps the freed pages " +
			"resident until malloc_trim; so does this allocator with PurgeDelay set to PurgeNever. With the " +
			"default purge, free pages anywhere in the region are released (madvise MADV_DONTNEED) once they " +
			"have been free for PurgeDelay (10 ms), with no call from the program: watch resident memory fall to " +
			"the long-lived bytes during the idle time. mmap gives every block back at once, and pays a system " +
			"call for each."}
}

func spike(h harness.Heap, m *Meter) error {
	r := rand.New(rand.NewPCG(5, 6))
	var short, long [][]byte
	total := 0
	for total < m.n(64<<20) {
		n := logUniform(r, 64, 16<<10)
		b, err := h.Malloc(n)
		if err != nil {
			return err
		}
		harness.Fill(b, 1, 0)
		total += n
		if r.IntN(200) == 0 {
			long = append(long, b)
		} else {
			short = append(short, b)
		}
		m.Tick()
	}
	m.Mark("spike")
	for _, b := range short {
		if err := h.Free(b); err != nil {
			return err
		}
		m.Tick()
	}
	m.Mark("freed")
	// idle: no call to the heap, only the sampler looking
	for range 60 {
		time.Sleep(5 * time.Millisecond)
		m.Tick()
	}
	m.Mark("idle")
	for _, b := range long {
		if err := h.Free(b); err != nil {
			return err
		}
	}
	return nil
}
