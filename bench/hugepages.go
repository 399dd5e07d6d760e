package main

import "github.com/brkmap/alloc"

// The lesson "the price of a page fault, and huge pages", for the report:
// the same run three times, with huge pages off, for large blocks, and for
// everything (hugePagesPolicies), each under every policy. hugePagesText
// is its paragraph. Its figures: go test ./bench -run TestHugePagesLesson -v.

const hugePagesTitle = "an 8 MiB buffer allocated, written a byte per 4 KiB and freed 16 times; " +
	"then 32 MiB of 64 KiB blocks written one byte each, all freed but the last, then Trim"

var hugePagesWorkload = workload{name: "huge-pages", title: hugePagesTitle + " (huge pages off)",
	lesson: hugePagesText, run: hugePages}

var hugePagesPolicies = []policy{
	{name: "huge-off", cfg: alloc.Config{}},
	{name: "huge-large", cfg: alloc.Config{HugePages: alloc.HugePagesLarge}},
	{name: "huge-all", cfg: alloc.Config{HugePages: alloc.HugePagesAll}},
}

// hugePagesRegistered appends the lesson to workloads. It is a variable's
// initializer, not an init function, so that it has run before child.go's
// init starts a child run (init functions run in file order, and package
// variables are all initialized before any of them).
var hugePagesRegistered = func() bool {
	large, all := hugePagesWorkload, hugePagesWorkload
	large.name, large.title = "huge-pages-large", hugePagesTitle+" (huge pages for large blocks)"
	large.lesson = "The same run with Config.HugePages = HugePagesLarge."
	large.configure = func(c *alloc.Config) { c.HugePages = alloc.HugePagesLarge }
	all.name, all.title = "huge-pages-all", hugePagesTitle+" (huge pages for everything)"
	all.lesson = "The same run with Config.HugePages = HugePagesAll."
	all.configure = func(c *alloc.Config) { c.HugePages = alloc.HugePagesAll }
	workloads = append(workloads, hugePagesWorkload, large, all)
	return true
}()

const hugePagesText = `The price of a page fault, and huge pages. Memory fresh from the kernel
costs a page fault at its first touch — on this machine about 1.8 µs per
4 KiB page, the trap plus the kernel zeroing the page — so writing a fresh
8 MiB buffer costs 2048 faults, and 16 of them under the plain mmap policy
took 32 774 faults and 56 ms. With huge pages for large blocks, each
buffer is mapped on a 2 MiB boundary and advised MADV_HUGEPAGE: 77 faults
and 6.7 ms, and what is left is mostly the kernel zeroing 2 MiB at a time.
The price shows in the second half. One byte written per 64 KiB block
makes 2 MiB of a 32 MiB region resident with small pages, but all 32 MiB
with huge pages for everything (and takes 46 ms instead of 1.4 ms): a huge
page is resident, and zeroed, as a whole once any byte of it is touched.
Trim still gives it all back (releasing part of a huge page splits it), and
huge pages for large blocks only leave the region alone, so its resident
memory is the same as with huge pages off.`

func hugePages(a heap, p *probe) error {
	mark := p.Mark
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
	mark("8 MiB x16")
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
