package cache_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/brkmap/alloc/cache"
)

// The benchmarks run at 1, 2, 8 and 32 goroutines: one loop for 1, and
// b.RunParallel with SetParallelism for the others (goroutines =
// parallelism × GOMAXPROCS, so the names say the real count). Keys are
// 8 bytes, values 32 B–1 KiB; the cache holds 100,000 entries.
const benchKeys = 100_000

func benchCache(b *testing.B) *cache.Cache {
	c, err := cache.New(256 << 20)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	v := make([]byte, 1024)
	for i := range benchKeys {
		c.Set(benchKey(i), v[:32+i%992])
	}
	return c
}

func benchKey(i int) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(i)) }

func goroutineCounts(b *testing.B, body func(b *testing.B, rng *rand.Rand, key []byte, buf []byte)) {
	procs := runtime.GOMAXPROCS(0)
	for _, g := range []int{1, 2, 8, 32} {
		p := max(g/procs, 1)
		name := fmt.Sprintf("g=%d", max(p*procs, 1))
		if g == 1 {
			name = "g=1"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			if g == 1 {
				rng := rand.New(rand.NewPCG(1, 1))
				key, buf := make([]byte, 8), make([]byte, 0, 1024)
				for b.Loop() {
					body(b, rng, key, buf)
				}
				return
			}
			b.SetParallelism(p)
			var seed uint64
			b.RunParallel(func(pb *testing.PB) {
				seed++
				rng := rand.New(rand.NewPCG(seed, 2))
				key, buf := make([]byte, 8), make([]byte, 0, 1024)
				for pb.Next() {
					body(b, rng, key, buf)
				}
			})
		})
	}
}

func BenchmarkGet(b *testing.B) {
	c := benchCache(b)
	goroutineCounts(b, func(b *testing.B, rng *rand.Rand, key, buf []byte) {
		binary.LittleEndian.PutUint64(key, uint64(rng.IntN(benchKeys)))
		if _, ok := c.HasGet(buf[:0], key); !ok {
			b.Error("miss")
		}
	})
}

func BenchmarkSet(b *testing.B) {
	c := benchCache(b)
	v := make([]byte, 1024)
	goroutineCounts(b, func(b *testing.B, rng *rand.Rand, key, buf []byte) {
		i := rng.IntN(benchKeys)
		binary.LittleEndian.PutUint64(key, uint64(i))
		c.Set(key, v[:32+i%992])
	})
}

// BenchmarkMixed is 80% gets and 20% sets, as the GC benchmark's cache.
func BenchmarkMixed(b *testing.B) {
	c := benchCache(b)
	v := make([]byte, 1024)
	goroutineCounts(b, func(b *testing.B, rng *rand.Rand, key, buf []byte) {
		i := rng.IntN(benchKeys)
		binary.LittleEndian.PutUint64(key, uint64(i))
		if rng.IntN(5) == 0 {
			c.Set(key, v[:32+i%992])
		} else {
			c.Get(buf[:0], key)
		}
	})
}

// BenchmarkSetEvicting: a full cache (the budget holds about a fifth of
// the keys), so every Set also runs the clock hand.
func BenchmarkSetEvicting(b *testing.B) {
	c, err := cache.New(16 << 20)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	v := make([]byte, 1024)
	goroutineCounts(b, func(b *testing.B, rng *rand.Rand, key, buf []byte) {
		i := rng.IntN(benchKeys)
		binary.LittleEndian.PutUint64(key, uint64(i))
		c.Set(key, v[:32+i%992])
	})
}
