package cache_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/brkmap/alloc/cache"
)

// FuzzOperations runs a stream of operations, decoded from the fuzzer's
// bytes, against the cache and a map with expiry times. The budget holds
// everything the stream can store, so every lookup must agree with the
// map exactly: Set, SetWithTTL, Get/HasGet, Has, Del, GetOrSet, the clock
// moving on, Reset; small values and big (chunked) ones.
func FuzzOperations(f *testing.F) {
	f.Add([]byte{0, 1, 5, 3, 1, 4, 1, 0, 2, 1, 3, 1, 6, 9, 3, 1})
	f.Add([]byte{1, 2, 200, 5, 0, 3, 2, 0, 7, 0, 0, 2, 5, 1, 1, 2, 255, 3, 2, 4})
	f.Add([]byte{0, 3, 250, 0, 3, 10, 2, 3, 0, 4, 3, 0, 8, 0, 0, 3, 3, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		now := time.Unix(1_800_000_000, 0)
		c, err := cache.New(256<<20, cache.WithShards(4), cache.WithClock(func() time.Time { return now }))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		type entry struct {
			v      []byte
			expire time.Time // zero: never
		}
		model := map[string]entry{}
		live := func(k string) (entry, bool) {
			e, ok := model[k]
			if ok && !e.expire.IsZero() && !now.Before(e.expire) {
				return entry{}, false
			}
			return e, ok
		}
		next := func() byte {
			if len(ops) == 0 {
				return 0
			}
			b := ops[0]
			ops = ops[1:]
			return b
		}
		// sizes up to 255*300 bytes: past one chunk (16 KiB) from 55 on
		valueOf := func(k string, n int) []byte {
			size := int(next()) * 300
			if size < 16<<10 {
				size /= 30
			}
			v := make([]byte, size)
			for i := range v {
				v[i] = byte(n + i*7)
			}
			return v
		}
		for n := 0; len(ops) > 0; n++ {
			op, k := next()%8, fmt.Sprint("k", next()%16)
			var buf []byte
			switch op {
			case 0:
				v := valueOf(k, n)
				c.Set([]byte(k), v)
				model[k] = entry{v: v}
			case 1:
				v := valueOf(k, n)
				ttl := time.Duration(next()) * time.Second
				c.SetWithTTL([]byte(k), v, ttl)
				e := entry{v: v}
				if ttl > 0 {
					e.expire = now.Add(ttl)
				}
				model[k] = e
			case 2:
				got, ok := c.HasGet([]byte("dst"), []byte(k))
				e, want := live(k)
				if ok != want || (ok && !bytes.Equal(got, append([]byte("dst"), e.v...))) || (!ok && string(got) != "dst") {
					t.Fatalf("op %d: HasGet(%s) = %d bytes, %v; model: %d bytes, %v", n, k, len(got), ok, len(e.v), want)
				}
			case 3:
				_, want := live(k)
				if got := c.Has([]byte(k)); got != want {
					t.Fatalf("op %d: Has(%s) = %v, model %v", n, k, got, want)
				}
			case 4:
				c.Del([]byte(k))
				delete(model, k)
			case 5:
				v := valueOf(k, n)
				got, found := c.GetOrSet(buf, []byte(k), v)
				e, want := live(k)
				if found != want {
					t.Fatalf("op %d: GetOrSet(%s) found %v, model %v", n, k, found, want)
				}
				if !want {
					e = entry{v: v}
					model[k] = e
				}
				if !bytes.Equal(got, e.v) {
					t.Fatalf("op %d: GetOrSet(%s) = %d bytes, model %d", n, k, len(got), len(e.v))
				}
			case 6:
				now = now.Add(time.Duration(next()) * time.Second / 4)
			case 7:
				if next()%8 == 0 {
					c.Reset()
					clear(model)
				}
			}
			if st := c.Stats(); st.Evictions != 0 || st.Dropped != 0 || st.Bytes > st.MaxBytes {
				t.Fatalf("op %d: %d evictions, %d dropped, %d of %d bytes", n, st.Evictions, st.Dropped, st.Bytes, st.MaxBytes)
			}
		}
		n := 0
		for k := range model {
			if _, ok := live(k); ok {
				n++
			}
		}
		if st := c.Stats(); st.Entries < n {
			t.Fatalf("%d entries, model %d live", st.Entries, n)
		}
	})
}
