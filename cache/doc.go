// Package cache is an off-heap key/value cache with a byte budget: the
// keys and values live in the blocks of an alloc.Allocator, out of the
// garbage collector's sight, and the index is made of integers only, so
// the collector's work does not grow with the number of entries. It takes
// fastcache's conventions (Set(k, v), Get(dst, k) appending to dst) and
// adds what a service replacing fastcache, freecache or bigcache needs:
// per-entry TTLs, GetOrSet, eviction by age across all value sizes, and
// values of any size.
//
// # Layout
//
// The cache is cut into shards (a power of two, one per MiB of budget
// up to 512); a key's 64-bit hash (hash/maphash, seeded per cache) picks
// its shard by its top bits. Each shard has its own sync.RWMutex: gets
// take it for reading, so gets of keys in different shards never touch a
// common cache line, and gets in one shard share only the read lock.
//
// Each entry is one block of the cache's Allocator: an 8-byte header (a
// word holding the read counter, the flags and the entry's ring position;
// the key's and the value's lengths as uint16), an 8-byte expiry time
// when the entry has a TTL, the key, the value. Set allocates and fills
// the block before it takes the shard's lock; the lock covers only the
// index and the ring. Keys are at most 65,535 bytes.
//
// A shard's index is an open-addressing table of 8-byte slots: the low 20
// bits of the key's hash (the tag, which also gives the slot's home) above
// the block's address divided by 16. Linear probing, backward-shift
// deletion (no tombstones), doubling at three quarters full, halving when
// an eighth full. A probe whose tag matches compares the key in the block,
// so two keys with the same hash are both kept. The table and the ring
// (below) are arrays of integers in the cache's own allocator, off the Go
// heap like the entries (only the minimal 16-cell ones of an empty shard
// are Go slices): the collector has nothing to mark or scan per entry, and
// the Go heap does not grow with the cache, so neither does GOGC's pacing.
// (At most 2^20 slots a shard: with 512 shards, 400 million entries.)
//
// # Eviction
//
// Each shard keeps a ring of its entries in the order they were stored,
// over every size: the clock. A ring cell is the entry's index slot, so
// the hand finds an evicted entry's slot without hashing its key again. A read adds one to the entry's read
// counter, up to 3 (one compare-and-swap while below 3, then only a load,
// so a hot key's cache line stays shared). When a shard is over its
// budget, the hand takes the oldest entry of the ring: if its counter is
// above zero, the counter drops by one and the entry goes back to the tail
// (another turn); if it is zero, or its TTL has passed, the entry is
// evicted. So eviction is by age across size classes — after the workload
// moves from small values to large ones the small ones age out, and the
// last written entries that fit the budget are the ones kept — and the
// entries read often survive up to three more turns: a one-time scan does
// not flush them. A deleted or replaced entry leaves a zero in the ring,
// squeezed out when zeros are half of it. A Set of a key whose new entry
// fits its old block's size class rewrites that block in place (no Malloc,
// no Free) and moves it to the ring's tail, as a new entry would go.
//
// # Budget
//
// maxBytes counts the memory the cache holds, not address space: the
// usable size of every entry's block (its size class, Allocator.BlockSize)
// plus the usable size of the blocks of the index tables and rings. Each shard holds maxBytes divided by
// the number of shards. What the process pays on top is the allocator's
// own slack (partly used slabs, free pages not yet given back; Reset
// returns them) and a few hundred bytes per shard.
//
// # Big values
//
// A pair whose block would exceed 16 KiB is stored in chunks of 16 KiB
// blocks spread over the shards, and its key holds a descriptor; Set and
// Get do this by themselves, so no value is too large that fits the
// budget (see big.go). A key is never chunked: a key longer than 65,535
// bytes, or whose entry is larger than half a shard's budget, is not
// stored.
//
// # Concurrency and lifetime
//
// All methods are safe for concurrent use, except Close, which must run
// after every other call has returned. No slice into off-heap memory ever
// leaves the cache: Get copies the value out.
package cache
