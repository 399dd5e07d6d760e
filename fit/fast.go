package fit

// The fast bins: glibc's fastbins (and, under one lock, what its tcache
// does per thread), for blocks up to 2 KiB (and those of cold classes,
// which the allocator sends here until they are in steady use). A freed block whose
// chunk is below fastLimit goes in the bin of chunks of exactly its
// size, still in use as far as its neighbours know: nothing is
// merged, split or binned, and the next request of that size takes it
// back. Merging and best fit cost a block's neighbours and bin neighbours
// their cache lines, on both sides of the pair: a program that frees and
// allocates the same sizes over and over (most do) pays them once per
// pair instead of twice, or not at all.
//
// What a fast bin holds is bounded (fastCount chunks per size, fastCap
// bytes in all); a chunk whose free would trim its run's top is merged at
// once (trims; not with Options.TrimLater, where the purge's pass trims
// the top); a free that merges into a chunk of purgeMin bytes or more
// empties the fast bins into the heap (glibc's
// FASTBIN_CONSOLIDATION_THRESHOLD: a heap giving back memory in bulk
// merges what they hold too); and a fast bin never makes the heap grow or
// its resident pages rise: before a request finds no free chunk and grows
// the heap, or takes a chunk that reaches pages never touched or given
// back, every fast bin is emptied into the heap, its chunks merged with
// their free neighbours (consolidate, as glibc's malloc_consolidate).
// Trim, Idle and the purge's pass (once the heap saw no operation for a
// whole pass) do the same first, so memory held there goes back with the
// rest.
//
// A held chunk is marked in the bitmap of blocks in use by the two bits
// after its own: its own bit is clear (a Free of it is a double free), the
// next two set. Chunks in use never set two bits side by side (a chunk is
// at least minChunk), so the mark cannot be read as a chunk in use, nor a
// chunk in use as a mark, whatever the user's bytes hold: one bit alone
// would be the bit of a chunk in use 16 bytes further, and a pointer 16
// bytes into a held block, or a link to 16 bytes before a block in use,
// would pass for one. Its neighbours see it in use.
//
// A bin is an array in the heap, not a list linked through the freed
// blocks as glibc's: a write after free into a held block changes nothing
// the heap reads (its header, before the block, is checked when the chunk
// is taken), and a pair touches no cache line of the block but its
// header's. (A list through the blocks cost each pop two chunks' checks,
// the link's target against the bitmap and its header: a medium pair
// 981 instructions with the lists, 850 with the arrays, by cachegrind; a live set of 16 B–2 KiB blocks 917 and 835 an operation.)

const (
	fastFirst = minAlloc / granule // the smallest chunk's size / 16
	// fastLimit is the first chunk size the fast bins (and the fronts) do
	// not hold: blocks up to 2 KiB. A larger chunk is half a page or
	// more, which held unmerged costs more than the cache lines its merge
	// touches, and is likelier to be wanted merged: coalescing-bal frees
	// 4095-byte blocks and asks for their sum, which held chunks made a
	// consolidation a pair (glibc holds none of that size: its tcache
	// stops at 1032 bytes). Measured with the fronts, up to 4 KiB against
	// up to 2 KiB: coalescing-bal 5.39 -> 4.65 ms, random-bal 21.9 ->
	// 20.4 (medians of 21), peak resident random-bal 15,777,792 ->
	// 15,740,928 B, amptjp-bal 2,052,096 -> 2,043,904, the others
	// within a page (before the fronts, random-bal: 15.09 MiB with every
	// medium size held, 15.05 up to 4 KiB, 15.04 with none; 8 KiB: 15.17).
	fastLimit = 2<<10 + overhead + granule
	numFast   = fastLimit/granule - fastFirst
	// fastCount is the most chunks of one size a fast bin holds: a
	// program's steady sizes find theirs, and a size freed in a burst
	// goes to the heap, to be merged, past it.
	fastCount = 8
	// fastCap bounds the bytes all fast bins hold.
	fastCap = 256 << 10
)

// heldChunk is a chunk held in a fast bin, and its run.
type heldChunk struct {
	c uintptr
	r *run
}

// fastIndex returns the fast bin of chunks of s bytes, or -1.
func fastIndex(s uintptr) int {
	i := s/granule - fastFirst
	if s >= fastLimit || i >= numFast {
		return -1
	}
	return int(i)
}

// The three bits of a chunk's place in a run's bitmap, its own and the
// two after it (window): 1 in use, 6 held, 0 free, the third being the
// next chunk's own after a chunk of minChunk bytes (a held chunk is
// larger). A chunk in use never has a bit set beside its own.
const (
	bitsLive = 1
	bitsHeld = 6
)

// window returns the three bits from chunk c's own (c is a chunk's place
// in r). The bitmap ends with a word to spare, so the bits may run into
// the next word without a test.
func (r *run) window(c uintptr) uint64 {
	g := (c - r.start) / granule
	w, b := g/64, g%64
	return (r.live[w]>>b | r.live[w+1]<<(63-b)<<1) & 7
}

// flip toggles the bits x (of a window) at chunk c's place in r: 7 makes
// a chunk in use held (pushFast) and a held one in use (handOut), 6 a
// held one free (consolidate).
func (r *run) flip(c uintptr, x uint64) {
	g := (c - r.start) / granule
	w, b := g/64, g%64
	r.live[w] ^= x << b
	r.live[w+1] ^= x >> (63 - b) >> 1
}

// unmark clears the bits x (of a window, set) at chunk c's place in r:
// flip's clearing, whose second word is written only when x reaches it
// (a mark's bits are at most the window's three).
func (r *run) unmark(c uintptr, x uint64) {
	g := (c - r.start) / granule
	w, b := g/64, g%64
	r.live[w] &^= x << b
	if b > 61 {
		r.live[w+1] &^= x >> (63 - b) >> 1
	}
}

// held reports whether chunk c of run r is in a fast bin.
func held(r *run, c uintptr) bool { return r.window(c) == bitsHeld }

// liveAt reports whether the block at p, a block's place in r, is in
// use: its bit set, and neither bit beside it (half of a held mark: p
// would be 16 or 32 bytes into a held block). The bit before the run's
// first is clear.
func (r *run) liveAt(p uintptr) bool {
	g := (p - r.start) / granule // the bit after the block's own
	if g < 2 {
		return r.live[0]&3 == 1
	}
	g -= 2
	w, b := g/64, g%64
	return (r.live[w]>>b|r.live[w+1]<<(63-b)<<1)&7 == 2
}

// heldOK returns the run of c if c is a chunk of s bytes in a fast bin as
// the heap left it: held in the bitmap, not in use there, its header in
// use with that size; else nil (tests' invariant).
func (h *Heap) heldOK(c, s uintptr) *run {
	r := h.runAt(c)
	if r == nil || c+s > r.end-fenceSize || r.window(c) != bitsHeld {
		return nil
	}
	if hd := h.header(c); sizeOf(hd) != s || hd&flagInUse == 0 {
		return nil
	}
	return r
}

// holds returns the fast bin chunk c of s bytes, in r, whose block is
// being freed, goes on (pushFast), or -1: the bin and the bins' bound
// have room, and its free would not trim the top.
func (h *Heap) holds(r *run, c, s uintptr) int {
	if s >= fastLimit { // (inlined: a chunk above 2 KiB goes to the bins at once)
		return -1
	}
	return h.holdsIn(r, c, s)
}

// holdsIn is holds for a chunk below fastLimit.
func (h *Heap) holdsIn(r *run, c, s uintptr) int {
	i := fastIndex(s)
	if i < 0 || h.fastN[i] >= fastCount || h.fastBytes+s > h.fastCap || h.trims(r, c, s) {
		return -1
	}
	return i
}

// pushFast puts chunk c of s bytes, in r, whose block was just freed, on
// fast bin i (holds said it has room). The block's bit is cleared and the
// held mark set.
func (h *Heap) pushFast(r *run, c, s uintptr, i int) {
	h.fast[i][h.fastN[i]] = heldChunk{c, r}
	h.fastN[i]++
	h.fastBytes += s
	h.freeBytes += s
	r.flip(c, bitsLive|bitsHeld)
	h.armPurge()
}

// trims reports whether freeing chunk c of s bytes, in r, at once would
// trim its run's top: the chunk after it is the run's last free chunk,
// the two reach the trim threshold, and pages past the top pad are
// touched. Such a chunk is merged at once, so the top is trimmed as free
// gives it back, as it would be without fast bins; a chunk freed on a
// clean top (a block taken from the top and given back, over and over)
// is held, and so is any with TrimLater (the free trims nothing).
func (h *Heap) trims(r *run, c, s uintptr) bool {
	if h.trim == 0 || h.opts.TrimLater || alignUp(c+minChunk+h.opts.TopPad, h.page) >= r.clean {
		return false // no page past the pad touched: nothing to trim
	}
	next := c + s
	if inUse(r, next) {
		return false
	}
	ns := sizeOf(h.header(next))
	return next+ns == r.end-fenceSize && s+ns >= h.trim
}

// popFast takes a chunk of s bytes from its fast bin and returns it and
// its run, or 0. The chunk stays marked held (take's caller hands it out:
// handOut). A chunk whose header was overwritten while it was held (a
// write past the end of the block before it) is reported and dropped from
// the bin, still counted free, and 0 returned: the caller looks elsewhere.
func (h *Heap) popFast(s uintptr) (uintptr, *run) {
	i := fastIndex(s)
	if i < 0 || h.fastN[i] == 0 {
		return 0, nil
	}
	k := h.fastN[i] - 1
	e := h.fast[i][k]
	h.fastN[i] = k
	h.fastBytes -= s
	if hd := h.header(e.c); sizeOf(hd) != s || hd&flagInUse == 0 {
		h.damaged(e.c, "a chunk of a fast bin")
		return 0, nil // lost: left held, out of its bin, still counted free
	}
	h.freeBytes -= s
	return e.c, e.r
}

// handOut hands out chunk c of s bytes, popped from its fast bin, for a
// block of n bytes.
func (h *Heap) handOut(r *run, c, s, n uintptr) {
	r.flip(c, bitsLive|bitsHeld)
	hd := h.header(c)
	h.setHeader(r, c, uint64(s)|flagInUse|hd&flagPrevInUse|uint64(s-overhead-n)<<slackShift)
	if h.fronted(r, c, s) {
		h.markFront(r, c, s)
	}
	h.liveChunks++
	h.count(s, 1)
	h.liveBytes += n
	h.chunkBytes += s
}

// settle consolidates the fast bins if a free asked for it (mergeHeld):
// called once the freeing chunk's own state is settled, never within
// release, where the chunk being freed may still be marked in use.
func (h *Heap) settle() {
	if h.mergeHeld { // (inlined)
		h.settleHeld()
	}
}

// settleHeld is settle once a free asked for it.
func (h *Heap) settleHeld() {
	h.drainOwn() // this P's front too: its frees settle within, with the bins still to empty below
	if h.fastBytes != 0 {
		h.consolidate()
	}
	h.mergeHeld = false // (consolidate's own, when there was nothing to empty)
}

// consolidate empties every fast bin into the heap: each chunk is freed
// for real, merged with its free neighbours and binned (or its run given
// back), as glibc's malloc_consolidate.
func (h *Heap) consolidate() {
	for i := 0; i < numFast && h.fastBytes != 0; i++ { // 192 counts: no map of the bins kept on every pair
		s := (uintptr(i) + fastFirst) * granule
		for h.fastN[i] != 0 {
			c, r := h.popFast(s)
			if c == 0 {
				continue // damaged: reported, lost
			}
			if h.checkNext(r, c+s) != nil {
				h.freeBytes += s // lost: left held, out of its bin, still counted free
				continue
			}
			h.release(r, c, s, h.header(c)&flagPrevInUse != 0, bitsHeld)
		}
	}
	h.mergeHeld = false // asked for by the releases above: done
}
