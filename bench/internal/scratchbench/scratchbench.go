// Package scratchbench measures request arenas: alloc.Scratch against the
// same objects on the Go heap and in Go's arena experiment (GOEXPERIMENT=arenas,
// built and run as a child: package goarena below this one).
//
// Three figures, each a Go benchmark line that benchstat reads:
//
//   - object64: one 64-byte object allocated and written, in requests of
//     ObjectsPerBatch objects (a Scratch is Reset, a Go arena freed and
//     made anew, Go heap objects dropped, after each): ns per object.
//   - free1M: releasing an arena of 1M such objects (Scratch.Free,
//     arena.Free): ns per release, the filling untimed, FreeRuns releases
//     a line.
//   - request: a steady request loop, ObjectsPerRequest objects a request,
//     each written and read back, then the request's memory let go; beside
//     the program's live heap of LiveHeapNodes pointerful Go objects, which
//     every garbage collection must mark. ns per request, and the share of
//     the process's CPU the collector took (runtime/metrics
//     /cpu/classes/gc/total:cpu-seconds over /cpu/classes/total:cpu-seconds)
//     and its cycles per 1000 requests.
package scratchbench

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/brkmap/alloc"
)

// Object is what every variant allocates: 64 bytes, no pointers.
type Object struct {
	ID   uint64
	Vals [7]uint64
}

// The workload's sizes.
const (
	ObjectsPerBatch   = 1024    // object64: objects a request
	ObjectsPerRequest = 1000    // request: objects a request
	FreeObjects       = 1 << 20 // free1M
	LiveHeapNodes     = 1 << 20 // the program's own live Go heap (about 32 MiB)
	FreeRuns          = "10x"   // free1M: releases timed per line (-benchtime)
)

// node is the live heap's element: the collector follows next.
type node struct {
	next *node
	pad  [3]uint64
}

var liveHeap *node

// BuildLiveHeap makes the program's live Go heap (once): a list of
// LiveHeapNodes nodes, for the collector to mark on every cycle, as a
// service's caches and sessions are.
func BuildLiveHeap() {
	if liveHeap != nil {
		return
	}
	for i := range LiveHeapNodes {
		liveHeap = &node{next: liveHeap, pad: [3]uint64{uint64(i)}}
	}
}

// Touch writes every field of o and returns a checksum of them, so that
// no variant skips the memory.
func Touch(o *Object, i uint64) uint64 {
	o.ID = i
	s := i
	for k := range o.Vals {
		o.Vals[k] = i + uint64(k)
		s += o.Vals[k]
	}
	return s
}

// Sink keeps results alive.
var Sink uint64

// GCStats is what the collector did during a benchmark loop.
type GCStats struct {
	cpuGC, cpuTotal float64
	cycles          uint64
}

var gcNames = []string{"/cpu/classes/gc/total:cpu-seconds", "/cpu/classes/total:cpu-seconds", "/gc/cycles/total:gc-cycles"}

// ReadGC reads the collector's counters.
func ReadGC() GCStats {
	s := make([]metrics.Sample, len(gcNames))
	for i, n := range gcNames {
		s[i].Name = n
	}
	metrics.Read(s)
	return GCStats{s[0].Value.Float64(), s[1].Value.Float64(), s[2].Value.Uint64()}
}

// ReportGC reports, on b, the collector's share of CPU and its cycles per
// 1000 ops since before.
func ReportGC(b *testing.B, before GCStats) {
	after := ReadGC()
	frac := 0.0
	if dt := after.cpuTotal - before.cpuTotal; dt > 0 {
		frac = (after.cpuGC - before.cpuGC) / dt
	}
	b.ReportMetric(frac, "gc-cpu-frac")
	b.ReportMetric(float64(after.cycles-before.cycles)*1000/float64(b.N), "gc/1000ops")
}

// CPUTime returns the CPU time the process has used (user and system, every
// thread), for CPU per op beside wall-clock ns/op: on a shared machine a
// benchmark waits for a CPU, and the wait shows in ns/op, not here.
func CPUTime() time.Duration { return clock(unix.CLOCK_PROCESS_CPUTIME_ID) }

// clock reads a CPU-time clock (clock_gettime: nanoseconds, unlike
// getrusage, whose per-thread figures are tick-sampled and scaled).
func clock(id int32) time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(id, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// ReportCPU reports, on b, the process's CPU time per op since before
// (CPUTime), as cpu-ns/op: the collector's work included.
func ReportCPU(b *testing.B, before time.Duration) {
	b.ReportMetric(float64(CPUTime()-before)/float64(b.N), "cpu-ns/op")
}

// Loop is a timed request loop's starting point: the collector's counters
// and the process's CPU time when its timer started.
type Loop struct {
	gc  GCStats
	cpu time.Duration
}

// StartLoop collects the garbage, reads the collector's counters and the
// CPU time, and starts b's timer afresh, allocations reported.
func StartLoop(b *testing.B) Loop {
	runtime.GC()
	l := Loop{ReadGC(), CPUTime()}
	b.ReportAllocs()
	b.ResetTimer()
	return l
}

// End stops b's timer and reports what the collector did and the CPU per
// op since StartLoop (ReportGC, ReportCPU).
func (l Loop) End(b *testing.B) {
	b.StopTimer()
	ReportGC(b, l.gc)
	ReportCPU(b, l.cpu)
}

// newAllocator is the allocator of the Scratch variants: the zero Config.
func newAllocator(b *testing.B) *alloc.Allocator {
	a, err := alloc.New(alloc.Config{})
	if err != nil {
		b.Fatal(err)
	}
	return a
}

// Object64Scratch is object64 for a Scratch.
func Object64Scratch(b *testing.B) {
	a := newAllocator(b)
	defer a.Close()
	s := a.NewScratch()
	var sum uint64
	b.ReportAllocs()
	b.ResetTimer()
	cpu := CPUTime()
	for i := 0; i < b.N; i++ {
		if i%ObjectsPerBatch == 0 {
			if err := s.Reset(); err != nil {
				b.Fatal(err)
			}
		}
		o, err := alloc.ScratchNew[Object](s)
		if err != nil {
			b.Fatal(err)
		}
		o.ID = uint64(i)
		sum += o.Vals[0]
	}
	b.StopTimer()
	ReportCPU(b, cpu)
	Sink += sum
	if err := s.Free(); err != nil {
		b.Fatal(err)
	}
}

// Object64Heap is object64 on the Go heap: the request's objects are kept
// in a slice until the request ends, as a handler would hold them.
func Object64Heap(b *testing.B) {
	held := make([]*Object, 0, ObjectsPerBatch)
	var sum uint64
	b.ReportAllocs()
	b.ResetTimer()
	cpu := CPUTime()
	for i := 0; i < b.N; i++ {
		if len(held) == ObjectsPerBatch {
			clear(held)
			held = held[:0]
		}
		o := new(Object)
		o.ID = uint64(i)
		sum += o.Vals[0]
		held = append(held, o)
	}
	b.StopTimer()
	ReportCPU(b, cpu)
	Sink += sum
}

// Free1MScratch times Scratch.Free of FreeObjects objects; the filling
// is untimed, and costs far more than the release, so run it a fixed
// number of times (Bench.Benchtime). The release is timed by the clock
// around the call (ReportRelease), not by the benchmark's timer, whose
// StartTimer and StopTimer read the memory statistics, stopping the world.
func Free1MScratch(b *testing.B) {
	a := newAllocator(b)
	defer a.Close()
	TimeReleases(b, func() (release func() error) {
		s := a.NewScratch()
		for i := range FreeObjects {
			o, err := alloc.ScratchNew[Object](s)
			if err != nil {
				b.Fatal(err)
			}
			o.ID = uint64(i)
		}
		return s.Free
	})
}

// TimeReleases runs b.N rounds of fill, untimed, on a thread of its own,
// and times by the clock the release each round returns (wall clock and
// the thread's CPU time); a release's error stops the benchmark. It
// reports them with ReportRelease.
func TimeReleases(b *testing.B, fill func() (release func() error)) {
	var (
		took []time.Duration
		cpu  time.Duration
	)
	b.StopTimer()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for range b.N {
		release := fill()
		t0, c0 := time.Now(), ThreadCPUTime()
		err := release()
		took, cpu = append(took, time.Since(t0)), cpu+ThreadCPUTime()-c0
		if err != nil {
			b.Fatal(err)
		}
	}
	ReportRelease(b, took, cpu)
}

// ReportRelease reports took, the wall-clock time of each of b.N
// releases, as ns/op (their mean) and p50-ns/op (their median: a release
// that waited for the region's lock, held by the purge while it releases
// the pages of an earlier one, or for a CPU, moves the mean, not the
// median), and cpu, their CPU time, as cpu-ns/op.
func ReportRelease(b *testing.B, took []time.Duration, cpu time.Duration) {
	var sum time.Duration
	for _, d := range took {
		sum += d
	}
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	b.ReportMetric(float64(sum.Nanoseconds())/float64(len(took)), "ns/op")
	b.ReportMetric(float64(sorted[len(sorted)/2].Nanoseconds()), "p50-ns/op")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(len(took)), "cpu-ns/op")
}

// ThreadCPUTime returns the CPU time of the calling thread (lock the
// goroutine to its thread around a measurement).
func ThreadCPUTime() time.Duration { return clock(unix.CLOCK_THREAD_CPUTIME_ID) }

// RequestScratch is the request loop with a Scratch owned by the worker,
// Reset after each request.
func RequestScratch(b *testing.B) {
	BuildLiveHeap()
	a := newAllocator(b)
	defer a.Close()
	s := a.NewScratch()
	var sum uint64
	t := StartLoop(b)
	for r := 0; r < b.N; r++ {
		var first *Object
		for i := range ObjectsPerRequest {
			o, err := alloc.ScratchNew[Object](s)
			if err != nil {
				b.Fatal(err)
			}
			sum += Touch(o, uint64(i))
			if first == nil {
				first = o
			}
		}
		sum += first.Vals[6]
		if err := s.Reset(); err != nil {
			b.Fatal(err)
		}
	}
	t.End(b)
	Sink += sum
	if err := s.Free(); err != nil {
		b.Fatal(err)
	}
}

// RequestHeap is the request loop on the Go heap: the request's objects
// are held in a slice until it ends, then dropped for the collector.
func RequestHeap(b *testing.B) {
	BuildLiveHeap()
	held := make([]*Object, 0, ObjectsPerRequest)
	var sum uint64
	t := StartLoop(b)
	for r := 0; r < b.N; r++ {
		for i := range ObjectsPerRequest {
			o := new(Object)
			sum += Touch(o, uint64(i))
			held = append(held, o)
		}
		sum += held[0].Vals[6]
		clear(held)
		held = held[:0]
	}
	t.End(b)
	Sink += sum
}

// Line formats a benchmark result as `go test -bench` prints it, for
// benchstat.
func Line(name string, r testing.BenchmarkResult) string {
	return fmt.Sprintf("Benchmark%s-%d\t%s\t%s", name, runtime.GOMAXPROCS(0), r.String(), r.MemString())
}

// Bench is one benchmark of this package: its name, body, and the
// -benchtime it runs with ("" for the default second).
type Bench struct {
	Name      string
	F         func(*testing.B)
	Benchtime string
}

// Run runs b as testing.Benchmark does, under its Benchtime, and returns
// its line. testing.Init must have been called.
func (b Bench) Run() (string, error) {
	if b.Benchtime != "" {
		old := flag.Lookup("test.benchtime").Value.String()
		if err := flag.Set("test.benchtime", b.Benchtime); err != nil {
			return "", err
		}
		defer flag.Set("test.benchtime", old)
	}
	r := testing.Benchmark(b.F)
	if r.N == 0 {
		return "", fmt.Errorf("scratchbench: %s failed", b.Name)
	}
	return Line(b.Name, r), nil
}

// InProcess are the variants measured in this process (the Go arena's are
// in its child).
var InProcess = []Bench{
	{Name: "Scratch/object64/scratch", F: Object64Scratch},
	{Name: "Scratch/object64/goheap", F: Object64Heap},
	{Name: "Scratch/free1M/scratch", F: Free1MScratch, Benchtime: FreeRuns},
	{Name: "Scratch/request/scratch", F: RequestScratch},
	{Name: "Scratch/request/goheap", F: RequestHeap},
}

// Summary prints, from benchmark lines, the median of each benchmark's
// ns/op and gc-cpu-frac, with the targets of issue 15 beside.
func Summary(w io.Writer, lines []string) {
	type fig struct{ ns, p50, cpu, gc []float64 }
	figs := map[string]*fig{}
	var names []string
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		g := figs[name]
		if g == nil {
			g = &fig{}
			figs[name] = g
			names = append(names, name)
		}
		for i := 2; i+1 < len(f); i += 2 {
			var v float64
			if _, err := fmt.Sscan(f[i], &v); err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				g.ns = append(g.ns, v)
			case "gc-cpu-frac":
				g.gc = append(g.gc, v)
			case "cpu-ns/op":
				g.cpu = append(g.cpu, v)
			case "p50-ns/op":
				g.p50 = append(g.p50, v)
			}
		}
	}
	median := func(v []float64) float64 {
		if len(v) == 0 {
			return 0
		}
		v = append([]float64(nil), v...)
		sort.Float64s(v)
		return v[len(v)/2]
	}
	fmt.Fprintf(w, "%-34s %12s %12s %8s\n", "benchmark (medians)", "ns/op", "cpu-ns/op", "GC CPU")
	for _, n := range names {
		g := figs[n]
		gc := "-"
		if len(g.gc) > 0 {
			gc = fmt.Sprintf("%.3f", median(g.gc))
		}
		cpu := "-"
		if len(g.cpu) > 0 {
			cpu = fmt.Sprintf("%.4g", median(g.cpu))
		}
		fmt.Fprintf(w, "%-34s %12.4g %12s %8s\n", n, median(g.ns), cpu, gc)
	}
	target := func(name string, limit float64, unit string) {
		g := figs[name]
		if g == nil || len(g.ns) == 0 {
			return
		}
		m := median(g.ns)
		verdict := "met"
		if m > limit {
			verdict = "NOT met"
		}
		fmt.Fprintf(w, "target %s ≤ %g %s: %.3g (%.2f× the target) %s", name, limit, unit, m, m/limit, verdict)
		if len(g.p50) > 0 {
			c := median(g.p50)
			fmt.Fprintf(w, "; the median release %.3g (%.2f×)", c, c/limit)
		}
		if len(g.cpu) > 0 {
			c := median(g.cpu)
			fmt.Fprintf(w, "; in CPU time %.3g (%.2f×)", c, c/limit)
		}
		fmt.Fprintln(w)
	}
	target("Scratch/object64/scratch", 3, "ns/object")
	target("Scratch/free1M/scratch", 1e6, "ns/release")
	fmt.Fprintln(w, "(cpu-ns/op: the process's CPU time per op, the thread's for free1M: on a shared machine ns/op also counts waiting for a CPU)")
}

// ErrNoGoArena is returned by GoArena when the Go arena child cannot be
// built (no go command, or a toolchain without GOEXPERIMENT=arenas).
var ErrNoGoArena = errors.New("scratchbench: the Go arena benchmark cannot be built")

// goArenaPackage is the child's package, built by its import path so that
// the build works from any directory of the module.
const goArenaPackage = "github.com/brkmap/alloc/bench/internal/scratchbench/goarena"

// GoArena builds the Go arena child with GOEXPERIMENT=arenas, runs it with
// -count count, and returns its benchmark lines.
func GoArena(count int) ([]string, error) {
	dir, err := os.MkdirTemp("", "goarena")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	exe := filepath.Join(dir, "goarena")
	build := exec.Command("go", "build", "-o", exe, goArenaPackage)
	build.Env = append(os.Environ(), "GOEXPERIMENT=arenas")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%w: GOEXPERIMENT=arenas go build: %v: %s", ErrNoGoArena, err, bytes.TrimSpace(out))
	}
	run := exec.Command(exe, "-count", strconv.Itoa(count))
	run.Stderr = os.Stderr
	out, err := run.Output()
	if err != nil {
		return nil, fmt.Errorf("scratchbench: the Go arena child: %w", err)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Benchmark") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("scratchbench: the Go arena child printed no benchmark: %q", out)
	}
	return lines, nil
}
