package cachebench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/VictoriaMetrics/fastcache"
	"github.com/allegro/bigcache/v3"
	"github.com/coocood/freecache"
	"github.com/dgraph-io/ristretto/v2"

	"github.com/brkmap/alloc/cache"
)

// store is what the workloads drive: one adapter per cache, each used the
// way its documentation recommends, all copying values in and out.
type store interface {
	get(dst, k []byte) ([]byte, bool)
	set(k, v []byte)
	// setTTL stores with a time to live; ttlOK says whether the store
	// supports per-entry (or, for bigcache, uniform) expiry.
	setTTL(k, v []byte, ttl time.Duration)
	close()
}

// storeNames are the stores in table order.
var storeNames = []string{"cache", "fastcache", "freecache", "bigcache", "ristretto", "map"}

// ttlCapable: fastcache has no expiry, so it sits out the TTL workload.
func ttlCapable(name string) bool { return name != "fastcache" }

// newStore makes a store holding about maxBytes of entries; entries is the
// number of keys the workload uses (for the stores that size by count);
// ttl is the uniform lifetime of the TTL workload (bigcache's LifeWindow),
// 0 elsewhere.
func newStore(name string, maxBytes, entries int, ttl time.Duration) (store, error) {
	switch name {
	case "cache":
		c, err := cache.New(maxBytes)
		return ours{c}, err
	case "fastcache":
		return fast{fastcache.New(maxBytes)}, nil
	case "freecache":
		return free{freecache.NewCache(maxBytes)}, nil
	case "bigcache":
		cfg := bigcache.DefaultConfig(10 * time.Minute)
		cfg.Shards = 1024
		cfg.MaxEntriesInWindow = entries
		cfg.MaxEntrySize = 1100
		cfg.HardMaxCacheSize = max(maxBytes>>20, 1)
		cfg.Verbose = false
		if ttl > 0 {
			cfg.LifeWindow, cfg.CleanWindow = ttl, ttl/2
		}
		c, err := bigcache.New(context.Background(), cfg)
		return big{c}, err
	case "ristretto":
		c, err := ristretto.NewCache(&ristretto.Config[string, []byte]{
			NumCounters:        int64(10 * entries),
			MaxCost:            int64(maxBytes),
			BufferItems:        64,
			IgnoreInternalCost: true,
		})
		return &rist{c: c}, err
	case "map":
		return &mapStore{m: make(map[string]mapEntry, entries), max: maxBytes}, nil
	}
	return nil, fmt.Errorf("cachebench: unknown store %q", name)
}

type ours struct{ c *cache.Cache }

func (s ours) get(dst, k []byte) ([]byte, bool)      { return s.c.HasGet(dst, k) }
func (s ours) set(k, v []byte)                       { s.c.Set(k, v) }
func (s ours) setTTL(k, v []byte, ttl time.Duration) { s.c.SetWithTTL(k, v, ttl) }
func (s ours) close()                                { _ = s.c.Close() }

type fast struct{ c *fastcache.Cache }

func (s fast) get(dst, k []byte) ([]byte, bool)      { return s.c.HasGet(dst, k) }
func (s fast) set(k, v []byte)                       { s.c.Set(k, v) }
func (s fast) setTTL(k, v []byte, ttl time.Duration) { s.c.Set(k, v) }
func (s fast) close()                                { s.c.Reset() }

type free struct{ c *freecache.Cache }

func (s free) get(dst, k []byte) ([]byte, bool) {
	err := s.c.GetFn(k, func(v []byte) error { dst = append(dst, v...); return nil })
	return dst, err == nil
}
func (s free) set(k, v []byte) { _ = s.c.Set(k, v, 0) }
func (s free) setTTL(k, v []byte, ttl time.Duration) {
	_ = s.c.Set(k, v, int((ttl+time.Second-1)/time.Second))
}
func (s free) close() { s.c.Clear() }

type big struct{ c *bigcache.BigCache }

func (s big) get(dst, k []byte) ([]byte, bool) {
	v, err := s.c.Get(string(k))
	if err != nil {
		return dst, false
	}
	return append(dst, v...), true
}
func (s big) set(k, v []byte)                       { _ = s.c.Set(string(k), v) }
func (s big) setTTL(k, v []byte, ttl time.Duration) { _ = s.c.Set(string(k), v) } // LifeWindow = ttl
func (s big) close()                                { _ = s.c.Close() }

type rist struct {
	c *ristretto.Cache[string, []byte]
}

func (s *rist) get(dst, k []byte) ([]byte, bool) {
	v, ok := s.c.Get(string(k))
	if !ok {
		return dst, false
	}
	return append(dst, v...), true
}
func (s *rist) set(k, v []byte) {
	s.c.Set(string(k), append([]byte(nil), v...), int64(len(k)+len(v)))
}
func (s *rist) setTTL(k, v []byte, ttl time.Duration) {
	s.c.SetWithTTL(string(k), append([]byte(nil), v...), int64(len(k)+len(v)), ttl)
}
func (s *rist) close() { s.c.Close() }

// mapStore is the baseline: a map behind one RWMutex, values on the Go
// heap, evicting whichever key the map's iteration yields first when over
// its byte budget (keys and values).
type mapStore struct {
	mu    sync.RWMutex
	m     map[string]mapEntry
	bytes int
	max   int
}

type mapEntry struct {
	v      []byte
	expire int64
}

func (s *mapStore) get(dst, k []byte) ([]byte, bool) {
	s.mu.RLock()
	e, ok := s.m[string(k)]
	if ok && e.expire != 0 && time.Now().UnixNano() >= e.expire {
		ok = false
	}
	if ok {
		dst = append(dst, e.v...)
	}
	s.mu.RUnlock()
	return dst, ok
}

func (s *mapStore) set(k, v []byte) { s.put(k, v, 0) }
func (s *mapStore) setTTL(k, v []byte, ttl time.Duration) {
	s.put(k, v, time.Now().Add(ttl).UnixNano())
}

func (s *mapStore) put(k, v []byte, expire int64) {
	e := mapEntry{v: append([]byte(nil), v...), expire: expire}
	s.mu.Lock()
	if old, ok := s.m[string(k)]; ok {
		s.bytes -= len(k) + len(old.v)
	}
	s.m[string(k)] = e
	s.bytes += len(k) + len(v)
	for key, old := range s.m {
		if s.bytes <= s.max {
			break
		}
		delete(s.m, key)
		s.bytes -= len(key) + len(old.v)
	}
	s.mu.Unlock()
}

func (s *mapStore) close() {}
