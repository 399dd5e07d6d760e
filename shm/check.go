package shm

import (
	"fmt"
	"math/bits"
	"runtime/debug"
)

// Report is what Check found: the pool's pages by kind, and its blocks.
type Report struct {
	FreeRuns, FreePages   uint64
	LargeBlocks, LargePgs uint64
	Slabs, SlabPages      uint64
	SmallBlocks           uint64 // live blocks in slabs
	LiveBlocks, LiveBytes uint64
	Recovered             bool // Check rolled back a dead process's operation first
}

// Check takes the pool's lock (rolling back a dead holder's operation, as
// any lock does) and verifies every invariant of the metadata: the page
// table tiles the data pages with runs whose boundary tags agree, no two
// free runs are adjacent, every free run is in the right bin and every bin
// holds only free runs, every slab's bitmap, free list and counts agree
// and it is on its class's partial list exactly when it has room, and the
// header's counters add up. It changes nothing (beyond the rollback), and
// returns an error wrapping ErrCorrupt naming the first broken invariant.
func (p *Pool) Check() (rep Report, err error) {
	if !p.use() {
		return rep, fmt.Errorf("shm: check: %w", ErrClosed)
	}
	defer p.done()
	var held opState
	defer p.unguard(debug.SetPanicOnFault(true), &held, &err)
	before := p.h.Recoveries
	if err := p.lock(&held); err != nil {
		return rep, fmt.Errorf("shm: check: %w", err)
	}
	rep.Recovered = p.h.Recoveries != before
	err = p.checkLocked(&rep)
	p.unlock(&held)
	if err != nil {
		return rep, fmt.Errorf("shm: check: %w", err)
	}
	return rep, nil
}

func (p *Pool) checkLocked(rep *Report) error {
	h := p.h
	bad := func(format string, a ...any) error {
		return fmt.Errorf(format+": %w", append(a, ErrCorrupt)...)
	}
	if h.Log.N != 0 {
		return bad("undo log holds %d entries after the lock was taken", h.Log.N)
	}
	freeRuns := map[uint64]uint64{} // first page -> pages
	partial := map[uint64]uint64{}  // slab -> class, for slabs with room
	prevFree := false
	pg := h.FirstData
	for pg < h.NPages {
		t := p.ent(pg).Tag
		n := tagValue(t)
		if n == 0 || pg+n > h.NPages {
			return bad("page %d: tag %#x, a run of %d pages", pg, t, n)
		}
		switch tagKind(t) {
		case kindFree:
			if t&flagHead == 0 || (n == 1) != (t&flagTail != 0) {
				return bad("page %d: free run head tag %#x", pg, t)
			}
			if prevFree {
				return bad("page %d: a free run follows a free run (not coalesced)", pg)
			}
			if n > 1 {
				if tt := p.ent(pg + n - 1).Tag; tt != makeTag(kindFree, flagTail, 0, n) {
					return bad("page %d: free run of %d pages ends with tag %#x", pg, n, tt)
				}
			}
			if err := p.checkZero(pg+1, pg+n-1); err != nil {
				return err
			}
			freeRuns[pg] = n
			rep.FreeRuns++
			rep.FreePages += n
		case kindLarge:
			if t != makeTag(kindLarge, flagHead, 0, n) {
				return bad("page %d: large block tag %#x", pg, t)
			}
			if err := p.checkZero(pg+1, pg+n); err != nil {
				return err
			}
			rep.LargeBlocks++
			rep.LargePgs += n
			rep.LiveBytes += n * PageSize
		case kindSlab:
			c, ok := slabTag(t)
			if !ok {
				return bad("page %d: slab tag %#x", pg, t)
			}
			used, err := p.checkSlab(pg, c)
			if err != nil {
				return err
			}
			if used < classes[c].nblocks {
				partial[pg] = c
			}
			rep.Slabs++
			rep.SlabPages += n
			rep.SmallBlocks += used
			rep.LiveBytes += used * classes[c].size
		default:
			return bad("page %d: tag %#x begins no run", pg, t)
		}
		prevFree = tagKind(t) == kindFree
		pg += n
	}
	// Every bin holds exactly the free runs of its lengths.
	for b := uint64(1); b < numBins; b++ {
		fits := func(n uint64) bool { return binOf(n) == b }
		if err := p.checkList(fmt.Sprintf("bin %d", b), "a free run of its lengths", h.Bins[b], freeRuns, fits); err != nil {
			return err
		}
	}
	if len(freeRuns) != 0 {
		return bad("%d free runs are in no bin", len(freeRuns))
	}
	// Every partial list holds exactly its class's slabs with room.
	for c := uint64(0); c < numClasses; c++ {
		fits := func(sc uint64) bool { return sc == c }
		if err := p.checkList(fmt.Sprintf("partial list of class %d", c), "a slab of it with room", h.Partial[c], partial, fits); err != nil {
			return err
		}
	}
	if len(partial) != 0 {
		return bad("%d slabs with room are on no partial list", len(partial))
	}
	rep.LiveBlocks = rep.LargeBlocks + rep.SmallBlocks
	if h.FreePages != rep.FreePages {
		return bad("header counts %d free pages, the runs hold %d", h.FreePages, rep.FreePages)
	}
	if rep.FreePages+rep.LargePgs+rep.SlabPages != h.NPages-h.FirstData {
		return bad("the runs cover %d pages of %d", rep.FreePages+rep.LargePgs+rep.SlabPages, h.NPages-h.FirstData)
	}
	return nil
}

// checkList checks the list whose first page is head (a bin, a partial
// list; what names it): every page on it is a key of members whose value
// fits, and links back to the page before it. Each page met is deleted
// from members, so a page listed twice, or a list that loops, is not
// found the second time; what is left in members is on no list.
func (p *Pool) checkList(what, member string, head uint64, members map[uint64]uint64, fits func(v uint64) bool) error {
	prev := uint64(0)
	for r := head; r != 0; r = p.ent(r).Next {
		v, ok := members[r]
		if !ok || !fits(v) {
			return fmt.Errorf("%s holds page %d, not %s: %w", what, r, member, ErrCorrupt)
		}
		if back := p.ent(r).Prev; back != prev {
			return fmt.Errorf("%s: page %d links back to %d, not %d: %w", what, r, back, prev, ErrCorrupt)
		}
		delete(members, r)
		prev = r
	}
	return nil
}

// checkZero checks that the entries of pages [from, to) are 0: the inside
// of a run.
func (p *Pool) checkZero(from, to uint64) error {
	for i := from; i < to; i++ {
		if t := p.ent(i).Tag; t != 0 {
			return fmt.Errorf("page %d inside a run has tag %#x: %w", i, t, ErrCorrupt)
		}
	}
	return nil
}

// checkSlab checks the slab at page s, of class c, and returns its live
// blocks.
func (p *Pool) checkSlab(s, c uint64) (uint64, error) {
	k := &classes[c]
	e := p.ent(s)
	bad := func(format string, a ...any) error {
		return fmt.Errorf("slab at page %d (%d-byte blocks): "+format+": %w", append([]any{s, k.size}, append(a, ErrCorrupt)...)...)
	}
	for i := uint64(1); i < k.pages; i++ {
		if t := p.ent(s + i).Tag; t != makeTag(kindSlabInner, 0, c, s) {
			return 0, bad("page %d has tag %#x", s+i, t)
		}
	}
	if e.Carved > k.nblocks || e.Used > e.Carved {
		return 0, bad("%d used, %d carved of %d", e.Used, e.Carved, k.nblocks)
	}
	var live uint64
	for w := uint64(0); w < k.dataOff/8; w++ {
		word := *p.word(s*PageSize + w*8)
		// No bit for a block never carved (nor past the last block).
		if lo := w * 64; lo+64 > e.Carved {
			keep := uint64(0)
			if e.Carved > lo {
				keep = e.Carved - lo
			}
			if keep < 64 && word>>keep != 0 {
				return 0, bad("live bits past block %d", e.Carved)
			}
		}
		live += uint64(bits.OnesCount64(word))
	}
	if live != e.Used {
		return 0, bad("bitmap has %d live blocks, the entry %d", live, e.Used)
	}
	seen := make([]bool, e.Carved)
	var free uint64
	for off := e.Free; off != 0; off = *p.word(off) {
		i, ok := p.blockIndex(s, k, off)
		if !ok {
			return 0, bad("free list holds %#x", off)
		}
		if seen[i] {
			return 0, bad("free list loops at block %d", i)
		}
		if bm, bit := p.liveBit(s, i); *bm&bit != 0 {
			return 0, bad("block %d is on the free list and live", i)
		}
		seen[i] = true
		free++
	}
	if e.Used+free != e.Carved {
		return 0, bad("%d live + %d free != %d carved", e.Used, free, e.Carved)
	}
	return e.Used, nil
}
