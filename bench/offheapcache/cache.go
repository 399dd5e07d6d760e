// Package offheapcache is a key/value cache whose keys and values live in
// an alloc.Allocator, off the Go heap, bounded by a byte budget: the
// allocator's Config.Limit.
//
// It is the cache of the GC benchmark (`go run ./bench gc`), written as a
// type a service can import rather than a loop inside the benchmark. What
// it shows is the shape that takes a large working set out of the garbage
// collector's work:
//
//   - Each entry is one block of the allocator holding the key followed by
//     the value. The Go heap holds only the index: a map[uint64]uint32 from
//     the key's hash to a slot, and a slice of slots. Neither holds a Go
//     pointer (a slot keeps its block's address as a uintptr), so the
//     collector neither scans nor marks anything per entry, however many
//     millions there are: both are "noscan" objects to it.
//   - The key is stored and compared, so a hash collision never returns
//     another key's value; two keys with the same 64-bit hash cannot both
//     be cached (the later Set replaces the earlier), which costs nothing
//     measurable at 2^-64 a pair.
//   - Eviction is by the byte budget. Set allocates; when the allocator
//     answers ErrOutOfMemory (its Limit is reached), the cache frees the
//     least recently used entry of the same size class — the block it gives
//     back is exactly one the retry can reuse — and tries again. Only when
//     that class holds nothing does it evict the oldest entry of any class,
//     as memcached's per-slab-class LRUs do. Every value dropped (evicted,
//     deleted, replaced, or at Close) is freed.
//   - Recency is kept the CLOCK way ("second chance"): a Get only marks
//     its entry, in the slot it has just read, instead of relinking the
//     list (three more cache misses on every hit); eviction moves a marked
//     tail back to the front, unmarked, and looks at the next.
//   - Get copies the value out under the lock (appending to a buffer the
//     caller passes and may reuse). No slice into off-heap memory ever
//     leaves the cache, so a caller can never hold one past its Free.
//
// Concurrency: every method takes the one mutex; a Cache is safe for
// concurrent use. A service that needs more parallelism shards keys over
// several caches.
package offheapcache

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"unsafe"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/slab"
)

// numLists is one LRU list per slab size class, and one for everything
// larger (served by page runs or mappings).
const numLists = slab.NumClasses + 1

// Cache maps byte-string keys to byte-string values held off the Go heap.
// The zero Cache is not usable: make one with New.
type Cache struct {
	mu      sync.Mutex
	a       *alloc.Allocator
	seed    maphash.Seed
	index   map[uint64]uint32 // key hash -> slot in entries
	entries []entry           // slot 0 is never used: 0 means "none" in links
	free    []uint32          // slots not in use
	lists   [numLists]list    // least recently used at tail
	clock   uint32            // ticks once per Set and Get: the age of an entry
	st      Stats
}

// entry is one cached pair: where its block is and its place in its LRU
// list. No Go pointers, so a []entry of millions is one noscan object.
type entry struct {
	hash       uint64
	addr       uintptr // the block: key bytes, then value bytes
	klen, vlen uint32
	prev, next uint32 // slots in the same list, 0 = none
	used       uint32 // clock at the last Set or Get
	list       uint8
	ref        bool // read since it was last put at the front of its list
}

type list struct{ head, tail uint32 }

// Stats are the cache's counters.
type Stats struct {
	Entries   int
	Bytes     uint64 // keys plus values held
	Hits      uint64
	Misses    uint64
	Evictions uint64 // entries dropped to make room under the budget
}

// New makes a cache over a new Allocator with the given Config; its Limit
// is the cache's byte budget (0: no budget, Set fails only when the kernel
// refuses). The cache owns the allocator and closes it in Close.
func New(cfg alloc.Config) (*Cache, error) {
	a, err := alloc.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("offheapcache: %w", err)
	}
	return &Cache{
		a:       a,
		seed:    maphash.MakeSeed(),
		index:   make(map[uint64]uint32),
		entries: make([]entry, 1),
	}, nil
}

// ptrAt turns a block address kept as a uintptr back into a pointer. The
// memory is the allocator's, not the Go heap's, so the collector neither
// moves nor frees it: the conversion is safe while the block is live.
func ptrAt(addr uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&addr)) }

func (e *entry) block() []byte {
	return unsafe.Slice((*byte)(ptrAt(e.addr)), int(e.klen)+int(e.vlen))
}

// listOf returns the LRU list of a block of n bytes: its slab class.
func listOf(n int) uint8 {
	if n <= slab.MaxSize {
		return uint8(slab.SizeClass(uintptr(n)))
	}
	return slab.NumClasses
}

// Set stores a copy of value under a copy of key, replacing what the key
// held, and makes it the most recently used. When the budget is reached it
// evicts least recently used entries until the allocation succeeds; it
// fails with an error wrapping alloc.ErrOutOfMemory only if the pair does
// not fit even in an empty cache. After a failed Set the key is not
// cached.
func (c *Cache) Set(key, value []byte) error {
	n := len(key) + len(value)
	h := maphash.Bytes(c.seed, key)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.a == nil {
		return alloc.ErrClosed
	}
	if s, ok := c.index[h]; ok {
		c.drop(s) // the old value of this key (or of a colliding one)
	}
	l := listOf(n)
	var b []byte
	for {
		var err error
		if b, err = c.a.Malloc(n); err == nil {
			break
		}
		if !errors.Is(err, alloc.ErrOutOfMemory) || !c.evictFor(l) {
			return fmt.Errorf("offheapcache: set %d bytes: %w", n, err)
		}
	}
	copy(b, key)
	copy(b[len(key):], value)
	s := c.slot()
	c.clock++
	c.entries[s] = entry{hash: h, addr: uintptr(unsafe.Pointer(unsafe.SliceData(b))),
		klen: uint32(len(key)), vlen: uint32(len(value)), used: c.clock, list: l}
	c.pushFront(s)
	c.index[h] = s
	c.st.Entries++
	c.st.Bytes += uint64(n)
	return nil
}

// Get appends the value stored under key to dst and returns it, and
// whether the key was found; a hit marks the entry as recently used.
// Pass a reused buffer as dst (dst[:0]) to read without allocating.
func (c *Cache) Get(key, dst []byte) ([]byte, bool) {
	h := maphash.Bytes(c.seed, key)
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.index[h]
	if !ok {
		c.st.Misses++
		return dst, false
	}
	e := &c.entries[s]
	b := e.block()
	if !bytes.Equal(b[:e.klen], key) {
		c.st.Misses++
		return dst, false
	}
	c.st.Hits++
	c.clock++
	e.used, e.ref = c.clock, true
	return append(dst, b[e.klen:]...), true
}

// Delete removes key and frees its value. It reports whether the key was
// there.
func (c *Cache) Delete(key []byte) bool {
	h := maphash.Bytes(c.seed, key)
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.index[h]
	if !ok {
		return false
	}
	e := &c.entries[s]
	if !bytes.Equal(e.block()[:e.klen], key) {
		return false
	}
	c.drop(s)
	return true
}

// Len returns the number of entries.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Entries
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

// Allocator returns the allocator holding the entries, for its Stats and
// heap profile. Allocating from it counts against the cache's budget.
func (c *Cache) Allocator() *alloc.Allocator { return c.a }

// Close frees every entry and closes the allocator. Later calls find
// nothing and Set returns alloc.ErrClosed.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.a == nil {
		return nil
	}
	var err error
	for _, s := range c.index {
		err = errors.Join(err, c.a.Free(c.entries[s].block()))
	}
	err = errors.Join(err, c.a.Close())
	c.a = nil
	c.index = map[uint64]uint32{}
	c.entries, c.free, c.lists, c.st = make([]entry, 1), nil, [numLists]list{}, Stats{}
	return err
}

// evictFor frees the least recently used entry of list l, or if it is
// empty the oldest entry of any list. It reports whether it freed one.
func (c *Cache) evictFor(l uint8) bool {
	s := c.secondChance(l)
	if s == 0 {
		var oldest uint32
		for i := range c.lists {
			t := c.secondChance(uint8(i))
			// Ages compare by distance from now, so the clock may wrap.
			if t != 0 && (s == 0 || c.clock-c.entries[t].used > c.clock-oldest) {
				s, oldest = t, c.entries[t].used
			}
		}
		if s == 0 {
			return false
		}
	}
	c.drop(s)
	c.st.Evictions++
	return true
}

// secondChance returns the tail of list l after moving every marked
// entry at the tail back to the front, unmarked (0 if l is empty).
func (c *Cache) secondChance(l uint8) uint32 {
	for {
		s := c.lists[l].tail
		if s == 0 || !c.entries[s].ref {
			return s
		}
		c.entries[s].ref = false
		c.unlink(s)
		c.pushFront(s)
	}
}

// drop unlinks slot s, frees its block and its slot.
func (c *Cache) drop(s uint32) {
	e := &c.entries[s]
	if err := c.a.Free(e.block()); err != nil {
		panic(fmt.Sprintf("offheapcache: freeing an entry's block: %v", err)) // the index is corrupt
	}
	c.unlink(s)
	delete(c.index, e.hash)
	c.st.Entries--
	c.st.Bytes -= uint64(e.klen) + uint64(e.vlen)
	*e = entry{}
	c.free = append(c.free, s)
}

func (c *Cache) slot() uint32 {
	if n := len(c.free); n > 0 {
		s := c.free[n-1]
		c.free = c.free[:n-1]
		return s
	}
	c.entries = append(c.entries, entry{})
	return uint32(len(c.entries) - 1)
}

func (c *Cache) pushFront(s uint32) {
	e := &c.entries[s]
	l := &c.lists[e.list]
	e.prev, e.next = 0, l.head
	if l.head != 0 {
		c.entries[l.head].prev = s
	} else {
		l.tail = s
	}
	l.head = s
}

func (c *Cache) unlink(s uint32) {
	e := &c.entries[s]
	l := &c.lists[e.list]
	if e.prev != 0 {
		c.entries[e.prev].next = e.next
	} else {
		l.head = e.next
	}
	if e.next != 0 {
		c.entries[e.next].prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = 0, 0
}
