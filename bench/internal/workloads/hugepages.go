package workloads

import (
	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/internal/harness"
)

// The lesson "the price of a page fault, and huge pages", for the report:
// the same run three times, with huge pages off, for large blocks, and for
// everything (hugePagesPolicies), each under every policy. hugePagesText
// is its paragraph. Its figures: go test ./bench/internal/workloads -run TestHugePagesLesson -v.

const hugePagesTitle = "an 8 MiB buffer allocated, written a byte per 4 KiB and freed 16 times; " +
	"then 32 MiB of 64 KiB blocks written one byte each, all freed but the last, then Trim"

// hugePagesPolicies are the three settings the lesson's test compares,
// with the threshold pinned (the lesson is about fresh mappings; a sliding
// threshold would serve the later buffers from the region).
var hugePagesPolicies = []harness.Policy{
	{Name: "huge-off", Cfg: alloc.Config{MmapThreshold: alloc.DefaultMmapThreshold}},
	{Name: "huge-large", Cfg: alloc.Config{MmapThreshold: alloc.DefaultMmapThreshold, HugePages: alloc.HugePagesLarge}},
	{Name: "huge-all", Cfg: alloc.Config{MmapThreshold: alloc.DefaultMmapThreshold, HugePages: alloc.HugePagesAll}},
}

// hugePagesLessons returns the lesson three times: huge pages off, for
// large blocks (HugePagesLarge) and for everything (HugePagesAll).
func hugePagesLessons() []Workload {
	off := Workload{Name: "huge-pages", Title: hugePagesTitle + " (huge pages off)",
		Lesson: hugePagesText, Run: hugePages}
	large, all := off, off
	large.Name, large.Title = "huge-pages-large", hugePagesTitle+" (huge pages for large blocks)"
	large.Lesson = "The same run with Config.HugePages = HugePagesLarge."
	large.Configure = func(c *alloc.Config) { c.HugePages = alloc.HugePagesLarge }
	all.Name, all.Title = "huge-pages-all", hugePagesTitle+" (huge pages for everything)"
	all.Lesson = "The same run with Config.HugePages = HugePagesAll."
	all.Configure = func(c *alloc.Config) { c.HugePages = alloc.HugePagesAll }
	return []Workload{off, large, all}
}

const hugePagesText = `The price of a page fault, and huge pages. Memory fresh from the kernel
costs a page fault at its first touch — the trap plus the kernel zeroing
the page — so writing a fresh 8 MiB buffer a byte per 4 KiB costs one
fault per page, 2048 of them, and the plain policies pay that for each of
the 16 buffers (the faults and time columns). With huge pages for large
blocks, each buffer is mapped on a 2 MiB boundary and advised
MADV_HUGEPAGE: a fault per 2 MiB, and what is left is mostly the kernel
zeroing 2 MiB at a time. The price shows in the second half. One byte
written per 64 KiB block makes only the touched small pages of a 32 MiB
region resident, but, with huge pages for everything, every 2 MiB page
that holds a touched byte: a huge page is resident, and zeroed, as a whole
once any byte of it is touched. Trim still gives it all back (releasing
part of a huge page splits it), and huge pages for large blocks only leave
the region alone, so its resident memory is the same as with huge pages
off. The sentence under each table gives this run's figures.`

func hugePages(a harness.Heap, m *Meter) error {
	mark := m.Mark
	for range 16 {
		b, err := a.Malloc(8 << 20)
		if err != nil {
			return err
		}
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		if err := a.Free(b); err != nil {
			return err
		}
	}
	mark("16 buffers")
	var blocks [][]byte
	for n := 0; n < 32<<20; n += 64 << 10 {
		b, err := a.Malloc(64 << 10)
		if err != nil {
			return err
		}
		b[0] = 1
		blocks = append(blocks, b)
	}
	mark("sparse")
	last := len(blocks) - 1
	for _, b := range blocks[:last] {
		if err := a.Free(b); err != nil {
			return err
		}
	}
	mark("freed")
	a.Trim()
	mark("trimmed")
	return a.Free(blocks[last])
}
