package shm

// The page-run allocator: free runs of pages, each marked in the page
// table at its first page (head) and its last (tail), so that a run being
// freed finds free neighbours in one look each way and coalesces with
// them. Free runs are kept in bins by length: one bin for each length up
// to 32 pages, searched upwards from the length asked for, and one bin of
// longer runs, first fit. Every function here runs with the pool's lock
// held, inside an operation (its changes go through set).

func binOf(pages uint64) uint64 {
	if pages <= exactBins {
		return pages
	}
	return bigBin
}

// allocRunLocked takes a run of n pages, marks its first page tag, and
// returns its first page, or 0 if no free run is long enough.
func (p *Pool) allocRunLocked(n, tag uint64) uint64 {
	r := p.findRunLocked(n)
	if r == 0 {
		return 0
	}
	e := p.ent(r)
	m := tagValue(e.Tag)
	p.unlinkRunLocked(r, m)
	if m > n {
		p.markFreeLocked(r+n, m-n)
		p.linkRunLocked(r+n, m-n)
	} else if m > 1 {
		p.set(&p.ent(r+m-1).Tag, 0) // the old tail is inside the new block now
	}
	p.set(&e.Tag, tag)
	p.set(&p.h.FreePages, p.h.FreePages-n)
	return r
}

// findRunLocked returns the first page of a free run of at least n pages,
// or 0.
func (p *Pool) findRunLocked(n uint64) uint64 {
	if n <= exactBins {
		for b := n; b <= exactBins; b++ {
			if r := p.h.Bins[b]; r != 0 {
				return r
			}
		}
	}
	// A corrupt list could loop: a list holds at most NPages runs.
	for r, i := p.h.Bins[bigBin], uint64(0); r != 0 && i < p.h.NPages; r, i = p.ent(r).Next, i+1 {
		if tagValue(p.ent(r).Tag) >= n {
			return r
		}
	}
	return 0
}

// freeRunLocked gives back the run of n pages at r, whose page-table
// entries other than its head the caller has already cleared, coalescing
// it with free neighbours.
func (p *Pool) freeRunLocked(r, n uint64) {
	start, cnt := r, n
	if r-1 >= p.h.FirstData {
		if t := p.ent(r - 1).Tag; tagKind(t) == kindFree && t&flagTail != 0 {
			l := tagValue(t)
			p.unlinkRunLocked(r-l, l)
			if l > 1 {
				p.set(&p.ent(r-1).Tag, 0)
			}
			start, cnt = r-l, cnt+l
		}
	}
	if r+n < p.h.NPages {
		if t := p.ent(r + n).Tag; tagKind(t) == kindFree && t&flagHead != 0 {
			rn := tagValue(t)
			p.unlinkRunLocked(r+n, rn)
			p.set(&p.ent(r+n).Tag, 0)
			cnt += rn
		}
	}
	if start != r {
		p.set(&p.ent(r).Tag, 0)
	}
	p.markFreeLocked(start, cnt)
	p.linkRunLocked(start, cnt)
	p.set(&p.h.FreePages, p.h.FreePages+n)
}

// markFreeLocked writes the head and tail tags of the free run [s, s+n).
func (p *Pool) markFreeLocked(s, n uint64) {
	if n == 1 {
		p.set(&p.ent(s).Tag, makeTag(kindFree, flagHead|flagTail, 0, 1))
		return
	}
	p.set(&p.ent(s).Tag, makeTag(kindFree, flagHead, 0, n))
	p.set(&p.ent(s+n-1).Tag, makeTag(kindFree, flagTail, 0, n))
}

// linkRunLocked pushes the free run at r (n pages) onto its bin.
func (p *Pool) linkRunLocked(r, n uint64) {
	p.pushLocked(&p.h.Bins[binOf(n)], r)
}

// unlinkRunLocked takes the free run at r (n pages) out of its bin.
func (p *Pool) unlinkRunLocked(r, n uint64) {
	p.removeLocked(&p.h.Bins[binOf(n)], r)
}

// pushLocked puts page r at the front of the list whose first page is
// *head (bins and partial-slab lists are both such lists).
func (p *Pool) pushLocked(head *uint64, r uint64) {
	e := p.ent(r)
	first := *head
	p.set(&e.Next, first)
	p.set(&e.Prev, 0)
	if first != 0 {
		p.set(&p.ent(first).Prev, r)
	}
	p.set(head, r)
}

// removeLocked takes page r out of the list whose first page is *head.
func (p *Pool) removeLocked(head *uint64, r uint64) {
	e := p.ent(r)
	next, prev := e.Next, e.Prev
	if prev != 0 {
		p.set(&p.ent(prev).Next, next)
	} else {
		p.set(head, next)
	}
	if next != 0 {
		p.set(&p.ent(next).Prev, prev)
	}
}
