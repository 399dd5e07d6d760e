package gcbench

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/offheapcache"
)

// gcStore is the cache interface both stores implement. Get copies the
// value out into dst in both, as a cache shared by concurrent requests
// must (handing out the stored slice would race with the next Set).
type gcStore interface {
	Set(key, value []byte) error
	Get(key, dst []byte) ([]byte, bool)
	Delete(key []byte) bool
	Close() error
}

// heapCache is the baseline: values on the Go heap, behind the same lock.
type heapCache struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (c *heapCache) Set(key, value []byte) error {
	v := make([]byte, len(value))
	copy(v, value)
	c.mu.Lock()
	c.m[string(key)] = v
	c.mu.Unlock()
	return nil
}

func (c *heapCache) Get(key, dst []byte) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[string(key)]
	if !ok {
		return dst, false
	}
	return append(dst, v...), true
}

func (c *heapCache) Delete(key []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[string(key)]
	delete(c.m, string(key))
	return ok
}

func (c *heapCache) Close() error { return nil }

// newGCStore returns the store called name, empty.
func newGCStore(name string) (gcStore, error) {
	switch name {
	case "heap":
		return &heapCache{m: make(map[string][]byte)}, nil
	case "offheap":
		return offheapcache.New(alloc.Config{})
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
