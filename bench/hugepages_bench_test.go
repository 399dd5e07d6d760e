package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"unsafe"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/internal/child"
	"github.com/brkmap/alloc/bench/internal/libc"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/brkmap/alloc/internal/procfs"
	"golang.org/x/sys/unix"
)

// BenchmarkLargeTouch is the price of a page fault: a block of 2, 8 or 64
// MiB allocated, written one byte per 4 KiB page, and freed, for
//
//   - alloc-off:  this allocator, Config{} (one mapping per block);
//   - alloc-huge: this allocator, HugePages: HugePagesLarge;
//   - alloc-dynamic-huge: DynamicThreshold and HugePagesAll, the match of
//     glibc's defaults: blocks up to 32 MiB come back to the region after
//     the first free and are reused;
//   - mmap:       raw mmap + munmap, no allocator;
//   - glibc:      malloc/free through cgo, glibc's defaults (its sliding
//     threshold keeps blocks up to 32 MiB in the heap after the first free,
//     so they are reused with no page faults at all);
//   - glibc-mmap: glibc with the threshold pinned at 128 KiB (every block
//     its own mapping, as alloc-off);
//   - and both glibc variants with GLIBC_TUNABLES=glibc.malloc.hugetlb=1.
//
// glibc reads its tunables at process start, so every glibc variant runs in
// a child process — this test binary, through bench's one child protocol
// (package child), with GLIBC_TUNABLES set — which runs the same loop with
// testing.Benchmark and hands back its figures for the parent to report
// as its own. Besides ns/op each reports
// faults/op (minor page faults, getrusage) and huge-% (the share of one
// block, touched, that /proc/self/smaps shows in AnonHugePages).
//
//	go test ./bench -run '^$' -bench LargeTouch -benchtime 20x -count 10 | tee large.txt
//	benchstat -col /impl large.txt
func BenchmarkLargeTouch(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"2MiB", 2 << 20}, {"8MiB", 8 << 20}, {"64MiB", 64 << 20}} {
		b.Run("size="+size.name, func(b *testing.B) {
			for _, impl := range largeImpls {
				b.Run("impl="+impl.name, func(b *testing.B) {
					if impl.tunables != nil {
						runBenchChild(b, touchJob{Impl: impl.name, Size: size.n}, *impl.tunables)
						return
					}
					malloc, free, done := impl.make(b)
					defer done()
					benchTouch(b, size.n, malloc, free)
				})
			}
		})
	}
}

type largeImpl struct {
	name     string
	tunables *string // non-nil: run in a child with GLIBC_TUNABLES set to this
	make     func(b *testing.B) (malloc func(n int) unsafe.Pointer, free func(p unsafe.Pointer, n int), done func())
}

func tunables(s string) *string { return &s }

var largeImpls = []largeImpl{
	{name: "alloc-off", make: allocImpl(alloc.Config{})},
	{name: "alloc-huge", make: allocImpl(alloc.Config{HugePages: alloc.HugePagesLarge})},
	{name: "alloc-dynamic-huge", make: allocImpl(alloc.Config{DynamicThreshold: true, HugePages: alloc.HugePagesAll})},
	{name: "mmap", make: func(b *testing.B) (func(int) unsafe.Pointer, func(unsafe.Pointer, int), func()) {
		return func(n int) unsafe.Pointer {
				p, err := unix.MmapPtr(-1, 0, nil, uintptr(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
				if err != nil {
					b.Fatal(err)
				}
				return p
			}, func(p unsafe.Pointer, n int) {
				if err := unix.MunmapPtr(p, uintptr(n)); err != nil {
					b.Fatal(err)
				}
			}, func() {}
	}},
	{name: "glibc", tunables: tunables(""), make: glibcImpl},
	{name: "glibc-hugetlb", tunables: tunables("glibc.malloc.hugetlb=1"), make: glibcImpl},
	{name: "glibc-mmap", tunables: tunables("glibc.malloc.mmap_threshold=131072"), make: glibcImpl},
	{name: "glibc-mmap-hugetlb", tunables: tunables("glibc.malloc.mmap_threshold=131072:glibc.malloc.hugetlb=1"), make: glibcImpl},
}

func allocImpl(cfg alloc.Config) func(b *testing.B) (func(int) unsafe.Pointer, func(unsafe.Pointer, int), func()) {
	return func(b *testing.B) (func(int) unsafe.Pointer, func(unsafe.Pointer, int), func()) {
		a, err := alloc.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		return func(n int) unsafe.Pointer {
				buf, err := a.Malloc(n)
				if err != nil {
					b.Fatal(err)
				}
				return unsafe.Pointer(unsafe.SliceData(buf))
			}, func(p unsafe.Pointer, n int) {
				if err := a.Free(unsafe.Slice((*byte)(p), n)); err != nil {
					b.Fatal(err)
				}
			}, func() { a.Close() }
	}
}

func glibcImpl(b *testing.B) (func(int) unsafe.Pointer, func(unsafe.Pointer, int), func()) {
	if !libc.Available {
		b.Skip("built without cgo: no glibc baseline")
	}
	return func(n int) unsafe.Pointer { return libc.Malloc(n) },
		func(p unsafe.Pointer, _ int) { libc.Free(p) }, func() {}
}

// benchTouch is the measured loop: allocate n bytes, write a byte per 4
// KiB page, free.
func benchTouch(b *testing.B, n int, malloc func(int) unsafe.Pointer, free func(unsafe.Pointer, int)) {
	f0 := alloctest.MinorFaults()
	ops := 0
	for b.Loop() {
		p := malloc(n)
		buf := unsafe.Slice((*byte)(p), n)
		for i := 0; i < n; i += 4096 {
			buf[i] = 1
		}
		free(p, n)
		ops++
	}
	faults := alloctest.MinorFaults() - f0
	b.ReportMetric(float64(faults)/float64(ops), "faults/op")

	// Once more, outside the timing: how much of a touched block is in huge pages.
	p := malloc(n)
	buf := unsafe.Slice((*byte)(p), n)
	for i := 0; i < n; i += 4096 {
		buf[i] = 1
	}
	var scratch []byte
	start := uintptr(p)
	hugeBytes, err := procfs.HugeResident([]procfs.Range{{Start: start, End: start + uintptr(n)}}, &scratch)
	free(p, n)
	if err == nil {
		b.ReportMetric(100*float64(hugeBytes)/float64(n), "huge-%")
	}
}

// kindTouch is the child.Job kind of one BenchmarkLargeTouch variant.
const kindTouch = "touch"

// touchJob is the Config of a kindTouch job: which variant, which block
// size, and the parent's -test.benchtime and GOMAXPROCS.
type touchJob struct {
	Impl      string `json:"impl"`
	Size      int    `json:"size"`
	Benchtime string `json:"benchtime"`
	Procs     int    `json:"procs"`
}

// runBenchChild runs the benchmark b in a child process with
// GLIBC_TUNABLES set, and reports the child's figures as b's. Only the
// first call for a run (b.N == 1) starts the child; if the framework calls
// again with a larger b.N, the figures of that child stand.
var childFigures = map[string]map[string]float64{}

func runBenchChild(b *testing.B, tj touchJob, glibcTunables string) {
	if !libc.Available {
		b.Skip("built without cgo: no glibc baseline")
	}
	if b.N == 1 {
		tj.Benchtime, tj.Procs = flagValue("test.benchtime"), runtime.GOMAXPROCS(0)
		spec, err := json.Marshal(tj)
		if err != nil {
			b.Fatal(err)
		}
		figures := map[string]float64{}
		j := child.Job{Kind: kindTouch, Config: spec, Environ: []string{"GLIBC_TUNABLES=" + glibcTunables}}
		if err := child.Run(j, &figures); err != nil {
			b.Fatal(err)
		}
		childFigures[b.Name()] = figures
	}
	for unit, v := range childFigures[b.Name()] {
		b.ReportMetric(v, unit)
	}
}

// serveTouch is the child's side of runBenchChild: the variant's loop
// under testing.Benchmark, and its figures by unit (ns/op, faults/op,
// huge-%).
func serveTouch(j child.Job) (any, bool, error) {
	var tj touchJob
	if err := json.Unmarshal(j.Config, &tj); err != nil {
		return nil, false, err
	}
	i := slices.IndexFunc(largeImpls, func(l largeImpl) bool { return l.name == tj.Impl })
	if i < 0 {
		return nil, false, fmt.Errorf("touch: unknown variant %q", tj.Impl)
	}
	if tj.Benchtime != "" {
		if err := flag.Set("test.benchtime", tj.Benchtime); err != nil {
			return nil, false, err
		}
	}
	if tj.Procs > 0 {
		runtime.GOMAXPROCS(tj.Procs)
	}
	r := testing.Benchmark(func(b *testing.B) {
		malloc, free, done := largeImpls[i].make(b)
		defer done()
		benchTouch(b, tj.Size, malloc, free)
	})
	if r.N == 0 {
		return nil, false, fmt.Errorf("touch: %s did not run", tj.Impl)
	}
	figures := map[string]float64{"ns/op": float64(r.T.Nanoseconds()) / float64(r.N)}
	for unit, v := range r.Extra {
		figures[unit] = v
	}
	return figures, true, nil
}
