package cache

import (
	"bytes"
	"fmt"

	"github.com/brkmap/alloc"
	"sync"
	"sync/atomic"
	"unsafe"
)

// An entry is one block of the allocator:
//
//	offset 0  word   uint32  bits 0-1: reads (a saturating counter, set by
//	                         readers with atomics); bits 2-4: flags; bits
//	                         8-31: its position in the shard's ring
//	offset 4  klen   uint16
//	offset 6  vlen   uint16  (an entry holds at most chunkBlock bytes)
//	offset 8  expire int64   unix nanoseconds, only when metaTTL is set
//	then the key, then the value.
//
// Everything but the counter is written before the entry is published
// under the shard's write lock, or (the ring position, the counter's
// decrement by the hand) under the write lock: no reader is looking then.
const (
	headerSize    = 8
	ttlHeaderSize = 16
	maxKeyLen     = 1<<16 - 1
)

// Word bits. metaChunk is a namespace: a key matches an entry only in its
// own namespace, so no caller's key can ever read a chunk.
const (
	metaReads uint32 = 3      // reads since the hand last passed, saturating at 3
	metaTTL   uint32 = 1 << 2 // the header carries an expiry time
	metaBig   uint32 = 1 << 3 // the value is a descriptor of chunks (big.go)
	metaChunk uint32 = 1 << 4 // a chunk of a big value, under an internal key
	seqShift         = 8
	seqMask          = 1<<24 - 1
)

type header struct {
	meta       uint32
	klen, vlen uint16
}

// ptrAt turns a block address kept as an integer back into a pointer. The
// memory is the allocator's, not the Go heap's: the collector neither
// moves nor frees it, so the conversion is safe while the block is live.
func ptrAt(addr uint64) unsafe.Pointer {
	p := uintptr(addr)
	return *(*unsafe.Pointer)(unsafe.Pointer(&p))
}

func hdrAt(addr uint64) *header { return (*header)(ptrAt(addr)) }

func (h *header) size() int {
	return entryLen(int(h.klen), int(h.vlen), h.meta&metaTTL != 0)
}

func (h *header) seq() uint32 { return h.meta >> seqShift }

// setSeq records the entry's ring position (mod 2^24; the ring is never
// longer). mu held for writing.
func (h *header) setSeq(seq uint32) { h.meta = h.meta&(1<<seqShift-1) | (seq&seqMask)<<seqShift }

// entryLen is the length of an entry's block.
func entryLen(klen, vlen int, ttl bool) int {
	if ttl {
		return ttlHeaderSize + klen + vlen
	}
	return headerSize + klen + vlen
}

func (h *header) expire() int64 { return *(*int64)(unsafe.Add(unsafe.Pointer(h), headerSize)) }

// key and value return the entry's bytes in place: never let them leave
// the cache. keyOf and valueOf take the word the caller has loaded.
func (h *header) key() []byte   { return h.keyOf(atomic.LoadUint32(&h.meta)) }
func (h *header) value() []byte { return h.valueOf(atomic.LoadUint32(&h.meta)) }

func (h *header) keyOf(meta uint32) []byte {
	off := headerSize
	if meta&metaTTL != 0 {
		off = ttlHeaderSize
	}
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(h), off)), int(h.klen))
}

func (h *header) valueOf(meta uint32) []byte {
	off := headerSize + int(h.klen)
	if meta&metaTTL != 0 {
		off += ttlHeaderSize - headerSize
	}
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(h), off)), int(h.vlen))
}

// A slot is one cell of a shard's index, 8 bytes: the low 20 bits of the
// key's hash (the tag) above the entry's block address divided by 16
// (blocks are 16-byte aligned; user addresses are below 2^48). 0 is empty.
// The tag gives the slot's home (tag & mask: tables have at most 2^20
// slots) and rules out most non-matching probes without touching the
// block. No Go pointer: the table lives in the allocator (see cells).
type slot = uint64

const (
	tagBits   = 20
	addrBits  = 64 - tagBits
	addrMask  = 1<<addrBits - 1
	tagMask   = 1<<tagBits - 1
	maxTable  = 1 << tagBits
	slotBytes = 8
	minTable  = 16
	minRing   = 16
)

func makeSlot(h, addr uint64) slot { return (h&tagMask)<<addrBits | addr>>4 }
func slotAddr(sl slot) uint64      { return (sl & addrMask) << 4 }

// shard is one lock's worth of the cache. Gets take mu for reading, so
// gets of keys in different shards never touch the same memory and gets in
// the same shard share only the read lock; everything else takes mu for
// writing. The counters read by Stats are atomic.
//
// The index is an open-addressing table with linear probing and
// backward-shift deletion (no tombstones). The ring holds the address of
// every entry in the order it was stored: the clock. Eviction takes the
// ring's head; an entry read since the hand last passed it goes back to
// the tail with its read counter one lower, any other is evicted (see
// Cache.evict). Deleted and replaced entries leave a zero in the ring,
// skipped by the hand and squeezed out when the ring is compacted.
type shard struct {
	mu sync.RWMutex
	// hot for gets: written with atomics under the read lock
	hits, misses atomic.Uint64

	// under mu (written under the write lock; Stats reads them atomically)
	evictions, expired atomic.Uint64
	entries            atomic.Int64 // user entries (chunks of big values not counted)
	bytes              atomic.Int64 // usable sizes of the blocks + table + ring

	table      []slot
	count      int    // occupied slots of table
	ring       []slot // entries (as their index slots) by seq&(len-1); 0 = removed
	head, tail uint32 // seqs of the oldest entry and of the next one
	live       int    // non-zero cells of ring (== count)
	budget     int64
	a          *alloc.Allocator // the cache's, for the table and the ring

	_ [64]byte // keeps the next shard's lock off this one's cache lines
}

func (s *shard) init(a *alloc.Allocator, budget int64) {
	s.a = a
	s.table = s.cells(minTable)
	s.ring = s.cells(minRing)
	s.count, s.live, s.head, s.tail = 0, 0, 0, 0
	s.budget = budget
	s.bytes.Store(s.cellBytes(minTable) + s.cellBytes(minRing))
	s.entries.Store(0)
}

// Tables and rings larger than the minimum live off the Go heap, in the
// cache's allocator: the index costs the collector nothing, not even heap
// size. The minimal ones (128 bytes) are Go slices, so a shard can always
// be reset without asking the allocator for memory.

// cells returns n zeroed cells, or nil when the allocator refuses.
func (s *shard) cells(n int) []slot {
	if n <= minTable {
		return make([]slot, n)
	}
	c, err := alloc.MakeSlice[slot](s.a, n)
	if err != nil {
		return nil
	}
	return c
}

// freeCells gives back cells from cells.
func (s *shard) freeCells(c []slot) {
	if len(c) <= minTable {
		return
	}
	if err := alloc.FreeSlice(s.a, c); err != nil {
		panic(fmt.Sprintf("cache: freeing an index of %d cells: %v", len(c), err))
	}
}

// cellBytes is what n cells take of the budget: their block's usable size.
func (s *shard) cellBytes(n int) int64 {
	if n <= minTable {
		return int64(n * slotBytes)
	}
	return int64(s.a.BlockSize(n * slotBytes))
}

// release frees the shard's index (at Close or Reset).
func (s *shard) release() {
	s.freeCells(s.table)
	s.freeCells(s.ring)
}

// find returns the address of the entry of key k with hash h in namespace
// ns (0 for the caller's keys, metaChunk for the chunks of big values),
// and the table index where it is (or where it would go). Called with mu
// held for reading or writing.
func (s *shard) find(h uint64, k []byte, ns uint32) (uint64, int) {
	mask := uint64(len(s.table) - 1)
	tag := h & tagMask
	for i := h & mask; ; i = (i + 1) & mask {
		sl := s.table[i]
		if sl == 0 {
			return 0, int(i)
		}
		if sl>>addrBits == tag {
			addr := slotAddr(sl)
			e := hdrAt(addr)
			if m := atomic.LoadUint32(&e.meta); m&metaChunk == ns && int(e.klen) == len(k) && bytes.Equal(e.keyOf(m), k) {
				return addr, int(i)
			}
		}
	}
}

// indexOf returns the table index holding the slot sl (from the ring).
func (s *shard) indexOf(sl slot) int {
	mask := uint64(len(s.table) - 1)
	for i := sl >> addrBits & mask; ; i = (i + 1) & mask {
		switch s.table[i] {
		case sl:
			return int(i)
		case 0:
			panic(fmt.Sprintf("cache: entry %#x is not in its shard's index", slotAddr(sl)))
		}
	}
}

// deleteAt empties table[i], shifting back the entries after it that
// probed past i, so no lookup ever needs a tombstone. mu held for writing.
func (s *shard) deleteAt(i int) {
	mask := len(s.table) - 1
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		sl := s.table[j]
		if sl == 0 {
			break
		}
		home := int(sl>>addrBits) & mask
		// sl may move to i when i lies cyclically within [home, j)
		if (j-home)&mask >= (j-i)&mask {
			s.table[i] = sl
			i = j
		}
	}
	s.table[i] = 0
	s.count--
}

// insertAt puts (h, addr) in the empty table[i] found by find. The table
// must have room: see full. mu held for writing.
func (s *shard) insertAt(i int, h, addr uint64) {
	s.table[i] = makeSlot(h, addr)
	s.count++
}

// full makes room for one more entry: in the table, doubling it at three
// quarters full, and in the ring. It reports true when there is none (the
// table at its largest, 2^20 slots, or the allocator refusing the memory
// to grow): the caller then does not insert. mu held for writing.
func (s *shard) full() bool {
	if (s.count+1)*4 > len(s.table)*3 && (len(s.table) >= maxTable || !s.resizeTable(2*len(s.table))) {
		if s.count+1 >= len(s.table) { // a probe needs an empty slot to stop
			return true
		}
	}
	return int(s.tail-s.head) == len(s.ring) && !s.makeRoom()
}

// shrink gives back the index's memory when entries have become few (the
// workload moved to larger values, or deletions): below a quarter full,
// the table and the ring shrink to the smallest power of two at most half
// full, so a budget spent on an index sized for many small entries comes
// back for entries. (The table grows at three quarters: a shrunk table
// must lose or gain half its entries before it is resized again.) mu held
// for writing.
func (s *shard) shrink() {
	if n := len(s.table); n > minTable && s.count*4 < n {
		s.resizeTable(halfFull(s.count, minTable))
	}
	if n := len(s.ring); n > minRing && s.live*4 < n {
		s.resizeRing(halfFull(s.live, minRing))
	}
}

// halfFull is the smallest power of two, at least least, that n fills at
// most half.
func halfFull(n, least int) int {
	size := least
	for size < 2*n {
		size *= 2
	}
	return size
}

// resizeRing moves the live entries to a ring of n cells, in order,
// renumbered from the head; n must hold them all. It reports false when
// the allocator refuses the memory (the ring is unchanged).
func (s *shard) resizeRing(n int) bool {
	ring := s.cells(n)
	if ring == nil {
		return false
	}
	old, mask := s.ring, uint32(len(s.ring)-1)
	s.ring = ring
	nmask := uint32(n - 1)
	to := s.head
	for seq := s.head; seq != s.tail; seq++ {
		if cell := old[seq&mask]; cell != 0 {
			s.ring[to&nmask] = cell
			hdrAt(slotAddr(cell)).setSeq(to)
			to++
		}
	}
	s.tail = to
	s.bytes.Add(s.cellBytes(n) - s.cellBytes(len(old)))
	s.freeCells(old)
	return true
}

// resizeTable rehashes the table into n slots. It reports false when the
// allocator refuses the memory (the table is unchanged).
func (s *shard) resizeTable(n int) bool {
	table := s.cells(n)
	if table == nil {
		return false
	}
	old := s.table
	s.table = table
	mask := uint64(len(s.table) - 1)
	for _, sl := range old {
		if sl == 0 {
			continue
		}
		i := sl >> addrBits & mask
		for s.table[i] != 0 {
			i = (i + 1) & mask
		}
		s.table[i] = sl
	}
	s.bytes.Add(s.cellBytes(n) - s.cellBytes(len(old)))
	s.freeCells(old)
	return true
}

// push appends the entry at addr to the ring's tail; full or a removal
// has made sure there is room. mu held for writing.
func (s *shard) push(h, addr uint64) {
	if int(s.tail-s.head) == len(s.ring) && !s.makeRoom() {
		panic("cache: no room in the ring after a removal")
	}
	hdrAt(addr).setSeq(s.tail)
	s.ring[int(s.tail)&(len(s.ring)-1)] = makeSlot(h, addr)
	s.tail++
	s.live++
}

// unring removes the entry at addr from the ring, leaving a zero.
func (s *shard) unring(addr uint64) {
	s.ring[int(hdrAt(addr).seq())&(len(s.ring)-1)] = 0
	s.live--
}

// makeRoom makes the full ring hold one more: it squeezes out the zeros
// left by deletions when they are at least half of it (each live entry
// moves once per as many deletions), else doubles it (or squeezes, if the
// allocator refuses, and there are zeros). Cells keep their seq modulo
// the new length, so growing rewrites no entry. It reports false when the
// ring is full of live entries and cannot grow.
func (s *shard) makeRoom() bool {
	mask := uint32(len(s.ring) - 1)
	var ring []slot
	if s.live*2 > len(s.ring) {
		ring = s.cells(2 * len(s.ring))
	}
	if ring == nil {
		if s.live == len(s.ring) {
			return false
		}
		to := s.head
		for seq := s.head; seq != s.tail; seq++ {
			cell := s.ring[seq&mask]
			if cell == 0 {
				continue
			}
			if to != seq {
				s.ring[seq&mask] = 0
				s.ring[to&mask] = cell
				hdrAt(slotAddr(cell)).setSeq(to)
			}
			to++
		}
		s.tail = to
		return true
	}
	old := s.ring
	s.ring = ring
	nmask := uint32(len(s.ring) - 1)
	for seq := s.head; seq != s.tail; seq++ {
		s.ring[seq&nmask] = old[seq&mask]
	}
	s.bytes.Add(s.cellBytes(len(ring)) - s.cellBytes(len(old)))
	s.freeCells(old)
	return true
}
