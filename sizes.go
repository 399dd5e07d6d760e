package alloc

import (
	"github.com/brkmap/alloc/fit"
	"github.com/brkmap/alloc/slab"
)

// BlockSize returns the usable size of the block that Malloc(n) would
// return now: what UsableSize reports for it, so a caller can account for
// the memory a request really takes (its size class, its whole pages)
// before making it.
//
//   - A small request: its size class's block size, whether its class is
//     cold (the best-fit heap's chunk then has room for as much) or hot.
//   - A medium request of up to 2 KiB whose class is hot (the program
//     holds a thousand blocks of it at once: served from its slabs from
//     then on): the class's block size too. At the cap, Config.Limit,
//     where its slabs can take no more memory, the heap's block that
//     serves it has room for as much, and UsableSize may say a little
//     more, as below.
//   - A medium class's exact size (2048, 4096, up to 8 KiB): the heap's
//     chunk of that size, 8 bytes more, while the class is cold; the
//     class's block once it has turned hot (see Config.ColdBlocks).
//     16384 and 32768: the class's block at once.
//   - Any other medium request: its chunk less the header (a multiple of
//     16, plus 8). The block UsableSize reports can be 16 bytes more, when
//     the free chunk it came from had just 16 bytes to spare, too few to
//     split off, or up to 48 more, when a P's front held no chunk of the
//     request's size but one a little larger (fit's frontLook).
//   - A mid-size request: its whole pages of the region; a large one, its
//     whole pages of a mapping.
//
// Under Debug it is n (the rest of a debug block is its canary). A
// negative n returns 0. Under DynamicThreshold the answer for a size near
// the threshold can change when the threshold slides; it is always a page
// multiple there.
func (a *Allocator) BlockSize(n int) int {
	switch {
	case n < 0:
		return 0
	case a.debug:
		return n
	}
	u := uintptr(n)
	r := a.route(u)
	switch {
	case r == toFit:
		return int(fit.BlockSize(u))
	case r == toSlab:
		// a slab's block, or a cold class's (Config.ColdBlocks); whatever the
		// smallLimit (a threshold set below it and slid up since sends
		// the request here all the same, past the P caches)
		c := slab.SizeClass(u)
		if u >= fitFrom && a.coldNow(c, u) {
			// a medium class's exact size while the class is cold: the
			// heap's chunk of exactly that size, 8 bytes more
			return int(fit.BlockSize(u))
		}
		return int(slab.ClassSize(c))
	}
	pages := max((u+a.page-1)/a.page, 1)
	return int(pages * a.page)
}
