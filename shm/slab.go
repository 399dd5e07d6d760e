package shm

import "fmt"

// Slabs: a run of 1–8 pages cut into blocks of one size class. The slab's
// state is in its head page's entry (Free: the first free block, whose
// first word links to the next; Used; Carved: blocks handed out at least
// once — the rest were never touched, so a new slab costs no pass over its
// blocks) and in a live bitmap at the start of its first page, which
// catches a double free and is what the verifier counts. A class's slabs
// with a free block are on its partial list; a full slab is off it; an
// empty slab goes back to the page runs unless it is its class's only
// partial slab (so one block allocated and freed in a loop does not carve
// and release a slab each time). Every function here runs with the
// pool's lock held, inside an operation.

// allocSmallLocked returns the offset of a free block of class c.
func (p *Pool) allocSmallLocked(c uint64) (uint64, error) {
	k := &classes[c]
	s := p.h.Partial[c]
	if s == 0 {
		if s = p.newSlabLocked(c); s == 0 {
			return 0, fmt.Errorf("no free run of %d pages for a slab of %d-byte blocks: %w", k.pages, k.size, ErrNoMemory)
		}
	}
	e := p.ent(s)
	if tagKind(e.Tag) != kindSlab || tagClass(e.Tag) != c || e.Used >= k.nblocks {
		return 0, fmt.Errorf("page %d on the partial list of class %d is not a slab of it with room: %w", s, c, ErrCorrupt)
	}
	var off uint64
	if e.Free != 0 {
		off = e.Free
		if _, ok := p.blockIndex(s, k, off); !ok {
			return 0, fmt.Errorf("slab at page %d: free list holds %#x: %w", s, off, ErrCorrupt)
		}
		next := *p.word(off)
		if _, ok := p.blockIndex(s, k, next); next != 0 && !ok {
			return 0, fmt.Errorf("slab at page %d: free block %#x links to %#x: %w", s, off, next, ErrCorrupt)
		}
		p.set(&e.Free, next)
	} else {
		if e.Carved >= k.nblocks {
			return 0, fmt.Errorf("slab at page %d: %d used of %d and nothing free: %w", s, e.Used, k.nblocks, ErrCorrupt)
		}
		off = s*PageSize + k.dataOff + e.Carved*k.size
		p.set(&e.Carved, e.Carved+1)
	}
	i, _ := p.blockIndex(s, k, off)
	bm, bit := p.liveBit(s, i)
	if *bm&bit != 0 {
		return 0, fmt.Errorf("slab at page %d: free block %d is marked live: %w", s, i, ErrCorrupt)
	}
	p.set(bm, *bm|bit)
	p.set(&e.Used, e.Used+1)
	if e.Used == k.nblocks {
		p.removeLocked(&p.h.Partial[c], s)
	}
	return off, nil
}

// newSlabLocked carves a slab of class c from the free runs and puts it
// on the class's partial list; 0 if there is no room.
func (p *Pool) newSlabLocked(c uint64) uint64 {
	k := &classes[c]
	s := p.allocRunLocked(k.pages, makeTag(kindSlab, flagHead, c, k.pages))
	if s == 0 {
		return 0
	}
	e := p.ent(s)
	p.set(&e.Free, 0)
	p.set(&e.Used, 0)
	p.set(&e.Carved, 0)
	p.set(&e.Size, 0)
	for i := uint64(1); i < k.pages; i++ {
		p.set(&p.ent(s+i).Tag, makeTag(kindSlabInner, 0, c, s))
	}
	// The bitmap is on pages that were free when this operation began:
	// no log entries (a rollback frees them again).
	for o := uint64(0); o < k.dataOff; o += 8 {
		*p.word(s*PageSize + o) = 0
	}
	p.pushLocked(&p.h.Partial[c], s)
	return s
}

// freeSmallLocked frees the block at off of the slab at page s.
func (p *Pool) freeSmallLocked(s, off uint64) error {
	e := p.ent(s)
	c := slabClass(e.Tag)
	k := &classes[c]
	i, err := p.liveBlockLocked(s, k, off)
	if err != nil {
		return err
	}
	bm, bit := p.liveBit(s, i)
	wasFull := e.Used == k.nblocks
	p.set(bm, *bm&^bit)
	p.set(p.word(off), e.Free)
	p.set(&e.Free, off)
	p.set(&e.Used, e.Used-1)
	if wasFull {
		p.pushLocked(&p.h.Partial[c], s)
	}
	if e.Used == 0 && (p.h.Partial[c] != s || e.Next != 0) {
		p.releaseSlabLocked(s, c)
	}
	return nil
}

// releaseSlabLocked gives the empty slab at s, of class c, back to the
// page runs.
func (p *Pool) releaseSlabLocked(s, c uint64) {
	k := &classes[c]
	p.removeLocked(&p.h.Partial[c], s)
	for i := uint64(1); i < k.pages; i++ {
		p.set(&p.ent(s+i).Tag, 0)
	}
	p.freeRunLocked(s, k.pages)
}

// liveBlockLocked returns the index of the live block at off of the slab
// at page s (class k): the one check of a small block's Ref, for Free and
// Bytes. An off that is not the start of a block handed out is
// ErrInvalidFree; a block that is free, ErrDoubleFree.
func (p *Pool) liveBlockLocked(s uint64, k *class, off uint64) (uint64, error) {
	i, ok := p.blockIndex(s, k, off)
	if !ok {
		return 0, fmt.Errorf("%#x is not the start of a %d-byte block: %w", off, k.size, ErrInvalidFree)
	}
	if bm, bit := p.liveBit(s, i); *bm&bit == 0 {
		return 0, fmt.Errorf("%d-byte block at %#x is free: %w", k.size, off, ErrDoubleFree)
	}
	return i, nil
}

// blockIndex returns which block of the slab at page s (class k) starts at
// off, and false if off is not the start of a block handed out at least
// once.
func (p *Pool) blockIndex(s uint64, k *class, off uint64) (uint64, bool) {
	first := s*PageSize + k.dataOff
	if off < first {
		return 0, false
	}
	rel := off - first
	i := rel / k.size
	if rel%k.size != 0 || i >= k.nblocks || i >= p.ent(s).Carved {
		return 0, false
	}
	return i, true
}

// liveBit returns the bitmap word and bit of block i of the slab at page s.
func (p *Pool) liveBit(s, i uint64) (*uint64, uint64) {
	return p.word(s*PageSize + i/64*8), 1 << (i % 64)
}
