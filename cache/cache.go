package cache

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/brkmap/alloc"
)

// Cache maps byte-string keys to byte-string values held off the Go heap,
// within a byte budget. All methods are safe for concurrent use. The zero
// Cache is not usable: make one with New.
type Cache struct {
	shards   []shard
	shift    uint // a hash's top bits pick its shard: h >> shift
	seed     maphash.Seed
	a        *alloc.Allocator
	now      func() time.Time
	maxBytes int
	bigID    atomic.Uint64 // names the chunks of each big value (big.go)
	dropped  atomic.Uint64 // pairs Set could not store
	closed   atomic.Bool
}

// Option configures a Cache.
type Option func(*config)

type config struct {
	shards int
	now    func() time.Time
	alloc  alloc.Config
}

// WithShards sets the number of shards, rounded up to a power of two. The
// default is one per MiB of budget, at most 512: enough that 32
// goroutines rarely share a lock.
func WithShards(n int) Option { return func(c *config) { c.shards = n } }

// WithClock replaces time.Now as the clock that TTLs are measured with;
// tests pass a fake one.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithAllocatorConfig sets the Config of the cache's own Allocator (the
// zero Config by default). Its Limit, if set, is a second cap, on
// committed memory: a Set that the allocator refuses is dropped.
func WithAllocatorConfig(cfg alloc.Config) Option { return func(c *config) { c.alloc = cfg } }

const (
	minShardBudget = 1 << 20
	maxShards      = 512
)

// New makes a cache holding at most maxBytes: the usable sizes of the
// blocks holding its entries plus its index. It makes its own Allocator,
// closed by Close.
func New(maxBytes int, opts ...Option) (*Cache, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("cache: maxBytes %d: %w", maxBytes, alloc.ErrInvalidSize)
	}
	cfg := config{now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	n := cfg.shards
	if n <= 0 {
		n = min(max(maxBytes/minShardBudget, 1), maxShards)
	}
	n = 1 << bits.Len(uint(n-1)) // a power of two
	a, err := alloc.New(cfg.alloc)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c := &Cache{
		shards:   make([]shard, n),
		shift:    uint(64 - bits.TrailingZeros(uint(n))),
		seed:     maphash.MakeSeed(),
		a:        a,
		now:      cfg.now,
		maxBytes: maxBytes,
	}
	for i := range c.shards {
		c.shards[i].init(a, int64(maxBytes/n))
	}
	return c, nil
}

func (c *Cache) hash(k []byte) uint64 { return maphash.Bytes(c.seed, k) }

func (c *Cache) shardOf(h uint64) *shard {
	if c.shift == 64 {
		return &c.shards[0]
	}
	return &c.shards[h>>c.shift]
}

// Set stores a copy of v under a copy of k, replacing what k held. A value
// too large for one block is stored in chunks (see the package doc), so
// any size fits that the budget holds. A pair that cannot be stored (its
// key alone larger than a shard's budget, the allocator refusing memory,
// a closed cache) is not cached, and Stats.Dropped counts it; k then holds
// nothing.
func (c *Cache) Set(k, v []byte) { c.set(k, v, 0) }

// SetWithTTL is Set for an entry that expires ttl from now (by the
// cache's clock, see WithClock): from then on it is a miss, and the clock
// hand frees it when it comes by. A ttl <= 0 means no expiry.
func (c *Cache) SetWithTTL(k, v []byte, ttl time.Duration) {
	c.set(k, v, c.expiry(ttl))
}

func (c *Cache) expiry(ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	return c.now().Add(ttl).UnixNano()
}

func (c *Cache) set(k, v []byte, expire int64) {
	if entryLen(len(k), len(v), expire != 0) > chunkBlock {
		c.setBig(k, v, expire)
		return
	}
	c.store(k, v, 0, expire, false)
}

// Get appends the value of k to dst and returns it; dst unchanged on a
// miss. Pass a reused buffer (dst[:0]) to read without allocating.
func (c *Cache) Get(dst, k []byte) []byte {
	dst, _ = c.HasGet(dst, k)
	return dst
}

// HasGet is Get that also reports whether k was found (a present key may
// hold an empty value).
func (c *Cache) HasGet(dst, k []byte) ([]byte, bool) {
	h := c.hash(k)
	s := c.shardOf(h)
	s.mu.RLock()
	addr, _ := s.find(h, k, 0)
	if addr == 0 {
		s.mu.RUnlock()
		s.misses.Add(1)
		return dst, false
	}
	e := hdrAt(addr)
	m := atomic.LoadUint32(&e.meta)
	if m&metaTTL != 0 && c.now().UnixNano() >= e.expire() {
		s.mu.RUnlock()
		s.misses.Add(1)
		return dst, false
	}
	if m&metaReads != metaReads {
		atomic.CompareAndSwapUint32(&e.meta, m, m+1) // see touch
	}
	if m&metaBig != 0 {
		var d descriptor
		d.decode(e.valueOf(m))
		s.mu.RUnlock()
		return c.getBig(dst, s, d)
	}
	dst = append(dst, e.valueOf(m)...)
	s.mu.RUnlock()
	s.hits.Add(1)
	return dst, true
}

// touch counts a read of an entry, up to 3 (the hand takes one off each
// time it passes; an entry is evicted when it finds none). One
// compare-and-swap, not retried: a read lost to a concurrent one is one
// read less, and a counter at 3 costs only a load, so a hot key's cache
// line stays shared.
func touch(e *header) {
	if m := atomic.LoadUint32(&e.meta); m&metaReads != metaReads {
		atomic.CompareAndSwapUint32(&e.meta, m, m+1)
	}
}

// expiredAt reports whether the entry at addr has a TTL that has passed.
// The clock is read only for entries that have one.
func (c *Cache) expiredAt(addr uint64) bool {
	e := hdrAt(addr)
	return atomic.LoadUint32(&e.meta)&metaTTL != 0 && c.now().UnixNano() >= e.expire()
}

// Has reports whether k is cached (for a big value: all of its chunks),
// without copying the value. It counts as a read for eviction, not for
// Stats' hits and misses.
func (c *Cache) Has(k []byte) bool {
	h := c.hash(k)
	s := c.shardOf(h)
	s.mu.RLock()
	addr, _ := s.find(h, k, 0)
	if addr == 0 || c.expiredAt(addr) {
		s.mu.RUnlock()
		return false
	}
	e := hdrAt(addr)
	touch(e)
	big := atomic.LoadUint32(&e.meta)&metaBig != 0
	var d descriptor
	if big {
		d.decode(e.value())
	}
	s.mu.RUnlock()
	return !big || c.hasChunks(d)
}

// GetOrSet appends the value of k to dst and returns it with true when k
// is cached; otherwise it stores v under k (as Set) and returns dst with v
// appended, and false. For a value that fits in one block the check and
// the store are one step: of concurrent GetOrSets of one key, one stores
// and the others get its value. A big value is checked and stored in two
// steps.
func (c *Cache) GetOrSet(dst, k, v []byte) ([]byte, bool) {
	return c.GetOrSetWithTTL(dst, k, v, 0)
}

// GetOrSetWithTTL is GetOrSet storing with SetWithTTL's ttl.
func (c *Cache) GetOrSetWithTTL(dst, k, v []byte, ttl time.Duration) ([]byte, bool) {
	if got, ok := c.HasGet(dst, k); ok {
		return got, true
	}
	expire := c.expiry(ttl)
	if entryLen(len(k), len(v), expire != 0) > chunkBlock {
		c.setBig(k, v, expire)
		return append(dst, v...), false
	}
	if old := c.store(k, v, 0, expire, true); old != nil {
		return append(dst, old...), true
	}
	return append(dst, v...), false
}

// Del removes k; a no-op when k is not cached.
func (c *Cache) Del(k []byte) {
	h := c.hash(k)
	s := c.shardOf(h)
	s.mu.Lock()
	addr, i := s.find(h, k, 0)
	var d descriptor
	big := false
	if addr != 0 {
		if big = hdrAt(addr).meta&metaBig != 0; big {
			d.decode(hdrAt(addr).value())
		}
		s.deleteAt(i)
		c.drop(s, addr)
	}
	s.mu.Unlock()
	if big {
		c.delChunks(d)
	}
}

// store puts the entry (k, v) of namespace kind in its shard. With
// ifAbsent, an entry already there stays and store returns a copy of its
// value instead (nil otherwise). The block is made and filled before the
// shard's lock is taken, so the lock covers only the index and the ring.
func (c *Cache) store(k, v []byte, kind uint32, expire int64, ifAbsent bool) []byte {
	n := entryLen(len(k), len(v), expire != 0)
	h := c.hash(k)
	s := c.shardOf(h)
	if len(k) > maxKeyLen || int64(c.a.BlockSize(n)) > s.budget/2 {
		c.dropped.Add(1)
		return nil
	}
	s.mu.Lock()
	old, i := s.find(h, k, kind&metaChunk)
	if old != 0 {
		oe := hdrAt(old)
		// a big value here was a miss for HasGet (a chunk is gone): replace it
		if ifAbsent && !c.expiredAt(old) && oe.meta&metaBig == 0 {
			got := append([]byte{}, oe.value()...)
			touch(oe)
			s.mu.Unlock()
			return got
		}
		if oe.meta&metaBig == 0 && c.a.BlockSize(oe.size()) == c.a.BlockSize(n) {
			c.rewrite(s, h, old, k, v, kind, expire)
			s.mu.Unlock()
			return nil
		}
	}
	// The block is taken under the lock: the slab's fast path is shorter
	// than a second lock and probe would be.
	b, err := c.a.Malloc(n)
	if err != nil {
		s.mu.Unlock()
		c.dropped.Add(1)
		return nil
	}
	addr := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	e := hdrAt(addr)
	*e = header{meta: kind, klen: uint16(len(k)), vlen: uint16(len(v))}
	if expire != 0 {
		e.meta |= metaTTL
		*(*int64)(unsafe.Add(unsafe.Pointer(e), headerSize)) = expire
	}
	copy(e.key(), k)
	copy(e.value(), v)

	var d descriptor
	big := false
	if old != 0 {
		if big = hdrAt(old).meta&metaBig != 0; big {
			d.decode(hdrAt(old).value())
		}
		s.table[i] = makeSlot(h, addr) // same key, same hash: the slot stays
		c.drop(s, old)
	} else {
		size := len(s.table)
		if s.full() { // grows the table and the ring when they need it
			s.mu.Unlock()
			c.free(addr)
			c.dropped.Add(1)
			return nil
		}
		if len(s.table) != size {
			_, i = s.find(h, k, kind&metaChunk) // the table has grown
		}
		s.insertAt(i, h, addr)
	}
	s.push(h, addr)
	s.bytes.Add(int64(c.a.BlockSize(n)))
	if kind&metaChunk == 0 {
		s.entries.Add(1)
	}
	c.evict(s)
	s.mu.Unlock()
	if big {
		c.delChunks(d)
	}
	return nil
}

// rewrite replaces the entry at addr, of key k, with value v in place: its
// block's size class holds the new entry, so the Set costs no Malloc and
// no Free. As a new entry would, it goes to the ring's tail with no reads
// counted. The index slot, the bytes held and the entry count stay. mu
// held for writing, so no reader is looking.
func (c *Cache) rewrite(s *shard, h, addr uint64, k, v []byte, kind uint32, expire int64) {
	s.unring(addr)
	e := hdrAt(addr)
	*e = header{meta: kind, klen: uint16(len(k)), vlen: uint16(len(v))}
	if expire != 0 {
		e.meta |= metaTTL
		*(*int64)(unsafe.Add(unsafe.Pointer(e), headerSize)) = expire
	}
	copy(e.key(), k) // the key moves if the TTL field came or went
	copy(e.value(), v)
	s.push(h, addr)
}

// drop takes the entry at addr, already out of the table, out of the ring
// and the accounting, and frees its block. mu held for writing.
func (c *Cache) drop(s *shard, addr uint64) {
	e := hdrAt(addr)
	s.unring(addr)
	s.bytes.Add(-int64(c.a.BlockSize(e.size())))
	if e.meta&metaChunk == 0 {
		s.entries.Add(-1)
	}
	c.free(addr)
}

func (c *Cache) free(addr uint64) {
	e := hdrAt(addr)
	if err := c.a.Free(unsafe.Slice((*byte)(unsafe.Pointer(e)), e.size())); err != nil {
		panic(fmt.Sprintf("cache: freeing an entry's block: %v", err)) // the index is corrupt
	}
}

// evict runs the clock hand until the shard is within its budget. mu held
// for writing.
func (c *Cache) evict(s *shard) {
	var now int64
	for s.bytes.Load() > s.budget && s.live > 0 {
		mask := uint32(len(s.ring) - 1)
		cell := s.ring[s.head&mask]
		s.ring[s.head&mask] = 0
		s.head++
		if cell == 0 {
			continue
		}
		addr := slotAddr(cell)
		e := hdrAt(addr)
		m := e.meta
		if m&metaTTL != 0 && now == 0 {
			now = c.now().UnixNano()
		}
		expired := m&metaTTL != 0 && now >= e.expire()
		if m&metaReads != 0 && !expired {
			e.meta = m - 1 // one more turn, one read less
			e.setSeq(s.tail)
			s.ring[s.tail&mask] = cell
			s.tail++
			continue
		}
		s.live-- // its ring cell is already cleared
		s.deleteAt(s.indexOf(cell))
		s.bytes.Add(-int64(c.a.BlockSize(e.size())))
		if m&metaChunk == 0 {
			s.entries.Add(-1)
		}
		if expired {
			s.expired.Add(1)
		} else {
			s.evictions.Add(1)
		}
		c.free(addr)
	}
	s.shrink()
}

// Reset removes every entry and gives the memory back to the kernel
// (the allocator's Trim).
func (c *Cache) Reset() {
	c.clear()
	c.a.Trim()
}

// clear frees every entry of every shard.
func (c *Cache) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for _, sl := range s.table {
			if sl != 0 {
				c.free(slotAddr(sl))
			}
		}
		s.release()
		s.init(c.a, s.budget)
		s.mu.Unlock()
	}
}

// Close frees every entry and closes the cache's allocator. It must not
// run concurrently with other calls; afterwards every key is a miss and
// every Set is dropped. Close is idempotent.
func (c *Cache) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.clear()
	if err := c.a.Close(); err != nil && !errors.Is(err, alloc.ErrClosed) {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

// Stats are the cache's counters at one moment (each shard's taken
// separately, so they may not add up exactly under concurrent use).
type Stats struct {
	Hits      uint64 // Get/HasGet/GetOrSet that found their key
	Misses    uint64 // ... that did not
	Evictions uint64 // entries dropped to stay within the budget
	Expired   uint64 // entries freed by the hand after their TTL
	Dropped   uint64 // Sets that could not store their pair
	Entries   int    // keys cached (a big value counts once)
	Bytes     int    // memory held: usable block sizes plus index
	MaxBytes  int    // the budget
	Shards    []ShardStats
}

// ShardStats are one shard's counters.
type ShardStats struct {
	Hits, Misses, Evictions, Expired uint64
	Entries, Bytes, MaxBytes         int
}

// Stats returns the cache's counters, in total and per shard.
func (c *Cache) Stats() Stats {
	st := Stats{Dropped: c.dropped.Load(), MaxBytes: c.maxBytes, Shards: make([]ShardStats, len(c.shards))}
	for i := range c.shards {
		s := &c.shards[i]
		ss := ShardStats{
			Hits: s.hits.Load(), Misses: s.misses.Load(),
			Evictions: s.evictions.Load(), Expired: s.expired.Load(),
			Entries: int(s.entries.Load()), Bytes: int(s.bytes.Load()), MaxBytes: int(s.budget),
		}
		st.Shards[i] = ss
		st.Hits += ss.Hits
		st.Misses += ss.Misses
		st.Evictions += ss.Evictions
		st.Expired += ss.Expired
		st.Entries += ss.Entries
		st.Bytes += ss.Bytes
	}
	return st
}

// Allocator returns the allocator holding the entries, for its Stats
// (resident memory, system calls) and heap profile. Blocks allocated from
// it directly are not counted in the cache's budget.
func (c *Cache) Allocator() *alloc.Allocator { return c.a }
