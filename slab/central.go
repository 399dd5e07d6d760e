package slab

import (
	"fmt"
	"math/rand/v2"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/lock"
)

// central is one size class: its slabs, and what was handed out under its
// lock. Every field after mu is guarded by mu, except the constants set by
// New (size, slabPages, nelems, batch, class). Helpers named …Locked must
// be called with mu held (asserted in race builds). The lock order is
// class, then region.
type central struct {
	mu        lock.Mutex
	size      uintptr
	slabPages uintptr // the largest slab's pages (a class's slabs grow to it: slabPagesLocked)
	minPages  uintptr // the first slabs' pages
	nelems    uint32  // blocks in a largest slab
	batch     int
	binMax    int32 // the capacity a P cache's bin of this class grows to (binCap)
	class     uint8
	partial   *Slab // slabs with at least one block to hand out
	empty     *Slab // one slab with every block free, kept for reuse: the lowest
	// emptyIdle: the kept empty slab has not changed since the last
	// ReleaseIdle, which releases it if it still has not at the next
	emptyIdle bool
	slabs     uint64
	// freeBlocks: blocks in the slabs (free lists and never handed out),
	// the kept empty slab's included
	freeBlocks uint64
	// slabBytes and tailBytes: the slabs' pages, and their ends too short
	// for a block (slabs differ in size: slabPagesLocked)
	slabBytes, tailBytes uint64
	elems                uint64 // blocks in all the slabs
	// nextSample: the heap-profile countdown for blocks handed out under
	// the lock (no P cache, Debug)
	nextSample countdown
	// blocks handed out, net, by goroutines without a P cache and by
	// caches that drain has retired
	counts
	bad []badLink // damaged links found, reported once mu is let go
}

// takeLocked pops up to len(out) blocks from the class's slabs into out and
// returns how many. It fails only if no block can be had. Each block's
// state says where it came from: stateCached (a slab's free list),
// stateZero or stateFresh (never handed out).
func (p *Pool) takeLocked(cl *central, out []entry) (int, error) {
	cl.mu.AssertHeld()
	if p.closed.Load() {
		return 0, errs.ErrClosed
	}
	k := 0
	for k < len(out) {
		s := cl.partial
		if s == nil {
			if k > 0 {
				// The refill has its block: the rest of a batch is not
				// worth a new slab (more of the heap for blocks that
				// would only be parked).
				return k, nil
			}
			var err error
			if s, err = p.newSlabLocked(cl); err != nil {
				return 0, err
			}
		}
		for k < len(out) && s.nfree > 0 {
			var idx uint32
			state := uint16(stateCached)
			if s.free != 0 {
				idx = s.free - 1
				// The link lives in the free block itself, where a write
				// after free or past the end of the block next to it can
				// reach it: it must decode to a block of this slab that was
				// handed out before and is on the free list now.
				next := *(*uint32)(p.region.Ptr(s.addr(idx))) ^ s.key
				if checks && next != 0 && (next > s.bump || next == idx+1 || loadState(&s.states[next-1]) != stateFree) {
					p.corruptLocked(cl, s, idx, next)
					next = 0 // drop the rest of the list: never follow a bad link
				}
				s.free = next
			} else if s.bump < s.nelems {
				idx = s.bump
				s.bump++
				state = stateFresh
				if s.zero {
					state = stateZero
				}
			} else {
				break // only after a damaged list was dropped
			}
			storeState(&s.states[idx], state)
			s.nfree--
			cl.freeBlocks--
			out[k] = entry{p: p.region.Ptr(s.addr(idx)), st: &s.states[idx]}
			k++
		}
		if s.nfree == 0 || s.free == 0 && s.bump == s.nelems {
			cl.unlistLocked(s)
		}
	}
	return k, nil
}

// corruptLocked records a damaged free-list link, to be reported once the
// class lock is let go (reportBad).
func (p *Pool) corruptLocked(cl *central, s *Slab, idx, next uint32) {
	cl.mu.AssertHeld()
	msg := fmt.Sprintf("free-list link of a free %d-byte block decodes to %d, not a free block of its slab "+
		"(a write after free, or past the end of the block before it); the rest of the list is dropped", cl.size, int64(next)-1)
	cl.bad = append(cl.bad, badLink{addr: s.addr(idx), detail: msg})
}

// badLink is a damaged free-list link found under the class lock.
type badLink struct {
	addr   uintptr
	detail string
}

// takeBadLocked returns the damaged links found and not yet reported.
func (cl *central) takeBadLocked() []badLink {
	cl.mu.AssertHeld()
	bad := cl.bad
	cl.bad = nil
	return bad
}

// reportBad reports damaged links through Options.OnCorruption, or panics,
// with no lock held. taken are blocks the caller took from the class and
// has not handed out: if a report panics, they go back first, so nothing
// is lost but the dropped lists.
func (p *Pool) reportBad(cl *central, bad []badLink, taken []entry) {
	done := false
	defer func() {
		if !done {
			p.giveBack(cl, taken)
		}
	}()
	for _, b := range bad {
		if p.opts.OnCorruption == nil {
			panic(fmt.Sprintf("slab: block %#x: %s", b.addr, b.detail))
		}
		p.opts.OnCorruption(b.addr, cl.size, b.detail)
	}
	done = true
}

// newSlabLocked finds or makes a slab with room for class cl.
func (p *Pool) newSlabLocked(cl *central) (*Slab, error) {
	cl.mu.AssertHeld()
	if s := cl.empty; s != nil {
		cl.empty, cl.emptyIdle = nil, false
		cl.listLocked(s)
		return s, nil
	}
	pages := cl.slabPagesLocked()
	bytes := pages * p.region.PageSize()
	nelems := uint32(bytes / cl.size)
	s := &Slab{Run: arena.NewRun(arena.KindSlab), class: cl.class, nelems: nelems, nfree: nelems,
		size: uint64(cl.size), magic: classDivMagic[cl.class], key: rand.Uint32() | 1, pages: uint32(pages)}
	s.states = make([]uint16, nelems)
	run, zero, err := p.region.AllocRun(&s.Run, pages, 0, 0)
	if err != nil {
		return nil, err
	}
	s.start, s.zero = run.Start(), zero
	cl.slabs++
	cl.freeBlocks += uint64(nelems)
	cl.slabBytes += uint64(bytes)
	cl.elems += uint64(nelems)
	cl.tailBytes += uint64(bytes - uintptr(nelems)*cl.size)
	cl.listLocked(s)
	return s, nil
}

// slabPagesLocked is the size of the class's next slab: the slab size
// grows with the class's demand, from minPages (the fewest pages that
// hold a block with little left over: minSlabPages) doubling every 4 slabs
// the class holds, up to slabPages. A class little
// used then holds little free memory in its partly used slabs: with the
// largest slabs from the first, the ~40 classes a program touches each
// held a mostly free 16 KiB or more.
func (cl *central) slabPagesLocked() uintptr {
	cl.mu.AssertHeld()
	if cl.size > noGrowAbove {
		return cl.minPages
	}
	return min(cl.slabPages, cl.minPages<<min(cl.slabs/4, 16))
}

// noGrowAbove: the slabs of classes of bigger blocks stay at minPages, a
// block or two each: such blocks are few, and a slab of several holds
// whole free blocks that no other class can use (random-bal: 2 MB of a
// 17 MB peak) — one or two a slab, an empty slab goes back to the region
// at once.
const noGrowAbove = 4096

func (cl *central) listLocked(s *Slab) {
	cl.mu.AssertHeld()
	s.listed = true
	s.prev = nil
	s.next = cl.partial
	if s.next != nil {
		s.next.prev = s
	}
	cl.partial = s
}

func (cl *central) unlistLocked(s *Slab) {
	cl.mu.AssertHeld()
	if !s.listed {
		return
	}
	s.listed = false
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		cl.partial = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	}
	s.prev, s.next = nil, nil
}

// giveBackLocked returns blocks (free, out of any cache) to their slabs'
// free lists. A slab whose blocks are all back goes to the arena, but one
// per class, if small (keepSlabMax), is kept for the next refill:
// the lowest, so that the one kept never pins the top of the region above
// free pages.
func (p *Pool) giveBackLocked(cl *central, es []entry) {
	cl.mu.AssertHeld()
	for _, e := range es {
		addr := uintptr(e.p)
		run := p.region.Lookup(addr)
		if run == nil || run.Kind() != arena.KindSlab {
			continue // the region was closed under us
		}
		s := slabOf(run)
		idx, _ := s.index(addr)
		storeState(e.st, stateFree)
		*(*uint32)(e.p) = s.free ^ s.key
		s.free = uint32(idx) + 1
		s.nfree++
		cl.freeBlocks++
		if s.nfree == s.nelems {
			cl.unlistLocked(s)
			switch {
			case uintptr(s.pages)*p.region.PageSize() > keepSlabMax:
				p.releaseLocked(cl, s)
			case cl.empty == nil:
				cl.empty, cl.emptyIdle = s, false
			case s.start < cl.empty.start:
				old := cl.empty
				cl.empty, cl.emptyIdle = s, false
				p.releaseLocked(cl, old)
			default:
				p.releaseLocked(cl, s)
			}
		} else if !s.listed {
			cl.listLocked(s)
		}
	}
}

// giveBack is giveBackLocked under the class lock, for blocks a cache or a
// free sends back.
func (p *Pool) giveBack(cl *central, es []entry) {
	if len(es) == 0 {
		return
	}
	cl.mu.Lock()
	p.giveBackLocked(cl, es)
	cl.mu.Unlock()
}

// releaseLocked gives an empty slab back to the arena.
func (p *Pool) releaseLocked(cl *central, s *Slab) {
	cl.mu.AssertHeld()
	cl.slabs--
	cl.freeBlocks -= uint64(s.nelems)
	bytes := uint64(s.pages) * uint64(p.region.PageSize())
	cl.slabBytes -= bytes
	cl.elems -= uint64(s.nelems)
	cl.tailBytes -= bytes - uint64(s.nelems)*uint64(cl.size)
	_ = p.region.Free(&s.Run) // the run is live: it cannot fail but for Close
}

// keepSlabMax: an empty slab is kept by its class only if it is at most
// this big (one page: a class's first slabs are small, minSlabPages). A
// bigger empty slab goes back to the region at once, where any class or
// mid-size block can use its pages (and the purge releases them): kept,
// the big classes' empty slabs were most of the peak's free memory on
// traces that move through many sizes (realloc-bal: 1.7 MB of 2.6 MB
// committed). Keeping any slab of a class whose largest slabs are 16 KiB
// (as before) held 16–70 KB more at cc1's peak (3.895 MB against 3.854,
// medians of 3, with coldMisses at 8) and 37 KB more on realloc-bal.
const keepSlabMax = 4 << 10
