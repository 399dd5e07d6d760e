package main

// The benchmark suite against the peers. Every allocator is driven through
// the same small interface, so each pays the same call overhead:
//
//	go test ./bench -run '^$' -bench . -count 10 | tee new.txt
//	benchstat -col /peer new.txt
//
// Peers: this allocator ("brkmap"; "brkmap-local" through a Local in the
// single-goroutine benchmarks), Go's make with the GC running normally
// ("gomake"), glibc's malloc through cgo ("glibc", only with cgo),
// modernc.org/memory ("modernc", behind a mutex in the parallel runs since
// it has no locking of its own), and raw mmap/munmap for the large sizes.
// Minor page faults per op (getrusage) are reported beside ns/op.

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"unsafe"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/internal/libc"
	"github.com/brkmap/alloc/internal/alloctest"
	"golang.org/x/sys/unix"
	"modernc.org/memory"
)

// allocator is what every peer implements.
type allocator interface {
	Malloc(n int) ([]byte, error)
	Free(b []byte) error
}

type peer struct {
	name string
	make func(tb testing.TB) allocator
	// serial: not goroutine-safe; the parallel runs wrap it in a mutex
	serial bool
}

// peers is the list every benchmark runs over (glibc when cgo is on).
var peers = withGlibc([]peer{
	{name: "brkmap", make: func(tb testing.TB) allocator { return newBrkmap(tb, alloc.Config{}) }},
	{name: "gomake", make: func(testing.TB) allocator { return goMake{} }},
	{name: "modernc", make: func(tb testing.TB) allocator {
		m := new(memory.Allocator)
		tb.Cleanup(func() { _ = m.Close() })
		return m
	}, serial: true},
})

// local is this allocator through a Local (Allocator.NewLocal): the
// benchmark's goroutine owns it, so only the single-goroutine benchmarks
// (Pair, LiveSet) run it.
var local = peer{name: "brkmap-local", make: func(tb testing.TB) allocator {
	l := newBrkmap(tb, alloc.Config{}).NewLocal()
	tb.Cleanup(func() { _ = l.Close() }) // before the Allocator's Close (cleanups run last first)
	return l
}}

// withLocal returns ps with the Local peer after brkmap.
func withLocal(ps []peer) []peer {
	out := append([]peer{}, ps[:1]...)
	return append(append(out, local), ps[1:]...)
}

// glibc is the system malloc through cgo (libc.Heap), a peer only when
// this binary has cgo.
var glibc = peer{name: "glibc", make: func(testing.TB) allocator { return libc.Heap{} }}

// withGlibc returns ps with glibc added when cgo is on.
func withGlibc(ps []peer) []peer {
	if libc.Available {
		return append(ps, glibc)
	}
	return ps
}

func newBrkmap(tb testing.TB, cfg alloc.Config) *alloc.Allocator {
	a, err := alloc.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = a.Close() })
	return a
}

// goMake is the Go heap: make, and let the GC free.
type goMake struct{}

var sink []byte

func (goMake) Malloc(n int) ([]byte, error) { b := make([]byte, n); sink = b; return b, nil }
func (goMake) Free([]byte) error            { return nil }

// rawMmap is one mmap per block, one munmap per free: the floor of the
// mmap policy.
type rawMmap struct{}

func (rawMmap) Malloc(n int) ([]byte, error) {
	p, err := unix.MmapPtr(-1, 0, nil, uintptr(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*byte)(p), n), nil
}

func (rawMmap) Free(b []byte) error {
	return unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b)))
}

// locked wraps a peer that is not goroutine-safe.
type locked struct {
	mu sync.Mutex
	a  allocator
}

func (l *locked) Malloc(n int) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.a.Malloc(n)
}

func (l *locked) Free(b []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.a.Free(b)
}

// faults reports minor page faults per op when the returned func runs.
func faults(b *testing.B) func() {
	start := alloctest.MinorFaults()
	return func() { b.ReportMetric(float64(alloctest.MinorFaults()-start)/float64(b.N), "faults/op") }
}

func must(tb testing.TB, err error) {
	if err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkPair: allocate, write one byte, free, at one size.
func BenchmarkPair(b *testing.B) {
	for _, size := range []int{16, 64, 256, 1024, 4096, 32768} {
		for _, p := range withLocal(peers) {
			b.Run(fmt.Sprintf("size=%d/peer=%s", size, p.name), func(b *testing.B) {
				a := p.make(b)
				b.ReportAllocs()
				done := faults(b)
				for b.Loop() {
					x, err := a.Malloc(size)
					if err != nil {
						b.Fatal(err)
					}
					x[0] = 1
					if err := a.Free(x); err != nil {
						b.Fatal(err)
					}
				}
				done()
			})
		}
	}
}

// liveOps is a pre-generated stream for BenchmarkLiveSet: which slot to
// replace and the new block's size.
type liveOp struct {
	slot uint32
	size uint32
}

const liveBlocks = 100_000

var liveStream = func() []liveOp {
	r := rand.New(rand.NewPCG(1, 2))
	ops := make([]liveOp, 1<<20)
	for i := range ops {
		ops[i] = liveOp{slot: uint32(r.IntN(liveBlocks)), size: uint32(16 + r.IntN(2048-16+1))}
	}
	return ops
}()

// BenchmarkLiveSet: 100k live blocks of 16 B–2 KiB; each op frees a random
// block and allocates a new random size in its place.
func BenchmarkLiveSet(b *testing.B) {
	for _, p := range withLocal(peers) {
		b.Run("peer="+p.name, func(b *testing.B) {
			a := p.make(b)
			live := make([][]byte, liveBlocks)
			for i := range live {
				x, err := a.Malloc(int(liveStream[i].size))
				must(b, err)
				live[i] = x
			}
			b.ReportAllocs()
			done := faults(b)
			i := 0
			for b.Loop() {
				op := liveStream[i&(len(liveStream)-1)]
				i++
				must(b, a.Free(live[op.slot]))
				x, err := a.Malloc(int(op.size))
				must(b, err)
				x[0] = 1
				live[op.slot] = x
			}
			done()
			b.StopTimer()
			for _, x := range live {
				must(b, a.Free(x))
			}
		})
	}
}

// BenchmarkCoalesce: coalescing-bal's cycle (a malloc-lab trace), one
// operation in six: two blocks of 4095 bytes, both freed (merged into
// one chunk), then one of 8190 in their place, freed. Blocks too big for
// a P's cache or front: every call takes the medium heap's lock.
func BenchmarkCoalesce(b *testing.B) {
	for _, p := range withLocal(peers) {
		b.Run("peer="+p.name, func(b *testing.B) {
			a := p.make(b)
			b.ReportAllocs()
			for b.Loop() {
				x, err := a.Malloc(4095)
				must(b, err)
				y, err := a.Malloc(4095)
				must(b, err)
				x[0], y[0] = 1, 1
				must(b, a.Free(x))
				must(b, a.Free(y))
				z, err := a.Malloc(8190)
				must(b, err)
				z[0] = 1
				must(b, a.Free(z))
			}
		})
	}
}

// BenchmarkLarge: allocate, write one byte in every 4 KiB page, free.
func BenchmarkLarge(b *testing.B) {
	large := []peer{
		{name: "brkmap-threshold", make: func(tb testing.TB) allocator { return newBrkmap(tb, alloc.Config{}) }},
		{name: "brkmap-dynamic", make: func(tb testing.TB) allocator {
			return newBrkmap(tb, alloc.Config{DynamicThreshold: true})
		}},
		{name: "mmap", make: func(testing.TB) allocator { return rawMmap{} }},
	}
	large = withGlibc(large)
	for _, size := range []int{256 << 10, 1 << 20, 8 << 20} {
		for _, p := range large {
			b.Run(fmt.Sprintf("size=%d/peer=%s", size, p.name), func(b *testing.B) {
				a := p.make(b)
				done := faults(b)
				for b.Loop() {
					x, err := a.Malloc(size)
					must(b, err)
					for i := 0; i < len(x); i += 4096 {
						x[i] = 1
					}
					must(b, a.Free(x))
				}
				done()
			})
		}
	}
}

// BenchmarkParallel: the small pair on every P at once (b.RunParallel).
func BenchmarkParallel(b *testing.B) {
	for _, size := range []int{64, 1024, 1500} {
		for _, p := range peers {
			b.Run(fmt.Sprintf("size=%d/peer=%s", size, p.name), func(b *testing.B) {
				a := p.make(b)
				if p.serial {
					a = &locked{a: a}
				}
				done := faults(b)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						x, err := a.Malloc(size)
						if err != nil {
							panic(err)
						}
						x[0] = 1
						if err := a.Free(x); err != nil {
							panic(err)
						}
					}
				})
				done()
			})
		}
	}
}

// BenchmarkProducerConsumer: one goroutine allocates, another frees. Blocks
// cross in batches of 64 over a channel, so the channel's cost is spread
// thin; compare with BenchmarkPair at the same size.
func BenchmarkProducerConsumer(b *testing.B) {
	const batch = 64
	for _, p := range peers {
		b.Run("size=64/peer="+p.name, func(b *testing.B) {
			a := p.make(b)
			if p.serial {
				a = &locked{a: a}
			}
			ch := make(chan *[batch][]byte, 4)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for bs := range ch {
					for _, x := range bs {
						if err := a.Free(x); err != nil {
							panic(err)
						}
					}
				}
			}()
			pool := sync.Pool{New: func() any { return new([batch][]byte) }}
			done := faults(b)
			b.ResetTimer()
			for n := 0; n < b.N; n += batch {
				bs := pool.Get().(*[batch][]byte)
				for i := range bs {
					x, err := a.Malloc(64)
					if err != nil {
						b.Fatal(err)
					}
					x[0] = 1
					bs[i] = x
				}
				ch <- bs
			}
			close(ch)
			wg.Wait()
			done()
		})
	}
}
