package gcbench

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/brkmap/alloc/cache"
)

// gcStore is the cache interface both stores implement, in the cache
// package's conventions (dst first). HasGet appends the value to dst in
// both, as a cache shared by concurrent requests must (handing out the
// stored slice would race with the next Set).
type gcStore interface {
	Set(key, value []byte)
	HasGet(dst, key []byte) ([]byte, bool)
	Del(key []byte)
	Close() error
}

// heapCache is the baseline: values on the Go heap, behind the same lock.
type heapCache struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (c *heapCache) Set(key, value []byte) {
	v := make([]byte, len(value))
	copy(v, value)
	c.mu.Lock()
	c.m[string(key)] = v
	c.mu.Unlock()
}

func (c *heapCache) HasGet(dst, key []byte) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[string(key)]
	if !ok {
		return dst, false
	}
	return append(dst, v...), true
}

func (c *heapCache) Del(key []byte) {
	c.mu.Lock()
	delete(c.m, string(key))
	c.mu.Unlock()
}

func (c *heapCache) Close() error { return nil }

// gcEntryBudget is the off-heap store's budget per entry: more than the
// largest entry takes (a 32-byte key, a 1 KiB value, the entry header,
// rounded up to its block's size class, and its share of the index), so
// that like the map it holds every entry and evicts none — the benchmark
// measures the GC, not a cache's hit ratio.
const gcEntryBudget = 2048

// newGCStore returns the store called name, empty, sized for entries.
func newGCStore(name string, entries int) (gcStore, error) {
	switch name {
	case "heap":
		return &heapCache{m: make(map[string][]byte)}, nil
	case "offheap":
		return cache.New(max(entries, 1) * gcEntryBudget)
	}
	return nil, fmt.Errorf("gc: unknown store %q (heap or offheap)", name)
}

// gcKey writes key id into buf: 8 to 32 bytes, the id's 8 bytes first (so
// keys are distinct) and a length chosen by a hash of the id.
func gcKey(buf []byte, id uint64) []byte {
	h := id * 0x9E3779B97F4A7C15
	n := 8 + int(h>>59)%25
	buf = binary.LittleEndian.AppendUint64(buf[:0], id)
	for len(buf) < n {
		buf = append(buf, 'a'+byte(len(buf)))
	}
	return buf
}

// gcValueSize draws a value size: 45% 32–128 B, 35% 128–512 B, 20%
// 512 B–1 KiB (mean about 300 B) — small values dominate, as in the
// memcached and Redis workload studies, with a long tail.
func gcValueSize(r *rand.Rand) int {
	switch p := r.IntN(100); {
	case p < 45:
		return 32 + r.IntN(96)
	case p < 80:
		return 128 + r.IntN(384)
	}
	return 512 + r.IntN(513)
}
