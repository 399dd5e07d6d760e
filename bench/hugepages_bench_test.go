package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/libc"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/brkmap/alloc/internal/sys"
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
// a child process — the test binary itself, re-executed with the
// environment set and -test.bench narrowed to that one benchmark — whose
// figures the parent reports as its own. Besides ns/op each reports
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
					if impl.tunables != nil && os.Getenv(hugeChildEnv) == "" {
						runBenchChild(b, *impl.tunables)
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
	hugeBytes, err := sys.HugeResident([]sys.Range{{Start: start, End: start + uintptr(n)}}, &scratch)
	free(p, n)
	if err == nil {
		b.ReportMetric(100*float64(hugeBytes)/float64(n), "huge-%")
	}
}

// hugeChildEnv marks a child process started by runBenchChild.
const hugeChildEnv = "BRKMAP_HUGE_BENCH_CHILD"

// runBenchChild runs the benchmark b in a child process (this test binary) with
// GLIBC_TUNABLES set, and reports the child's figures as b's. Only the
// first call for a run (b.N == 1) starts the child; if the framework calls
// again with a larger b.N, the figures of that child stand.
var childFigures = map[string]map[string]float64{}

func runBenchChild(b *testing.B, glibcTunables string) {
	if b.N == 1 {
		figures, err := childBench(b.Name(), glibcTunables)
		if err != nil {
			b.Fatal(err)
		}
		childFigures[b.Name()] = figures
	}
	figures := childFigures[b.Name()]
	for unit, v := range figures {
		b.ReportMetric(v, unit)
	}
}

func childBench(name, glibcTunables string) (map[string]float64, error) {
	levels := strings.Split(name, "/")
	for i, l := range levels {
		levels[i] = "^" + regexp.QuoteMeta(l) + "$"
	}
	args := []string{"-test.run=^$", "-test.bench=" + strings.Join(levels, "/"), "-test.count=1"}
	for _, f := range []string{"test.benchtime", "test.cpu"} {
		if v := flagValue(f); v != "" {
			args = append(args, "-"+f+"="+v)
		}
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "GLIBC_TUNABLES="+glibcTunables, hugeChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("child %v: %w\n%s", args, err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], name) {
			continue
		}
		figures := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("child output %q: %w", sc.Text(), err)
			}
			figures[f[i+1]] = v
		}
		return figures, nil
	}
	return nil, fmt.Errorf("child %v printed no result:\n%s", args, out)
}
