package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/brkmap/alloc/bench/internal/scratchbench"
)

// BenchmarkScratch is `bench scratch`'s in-process half as Go benchmarks
// (the Go arena's half needs its own build: TestScratchGoArenaChild, or
// `go run ./bench scratch`). free1M fills an arena of 1M objects for every
// release it times: give it a -benchtime of a few runs.
//
//	go test ./bench -run '^$' -bench 'BenchmarkScratch/(object64|request)' -count 6 | benchstat -
//	go test ./bench -run '^$' -bench 'BenchmarkScratch/free1M' -benchtime 10x -count 6 | benchstat -
func BenchmarkScratch(b *testing.B) {
	for _, bench := range scratchbench.InProcess {
		b.Run(strings.TrimPrefix(bench.Name, "Scratch/"), bench.F)
	}
}

// TestScratchGoArenaChild builds and runs the Go arena child once, and
// checks it printed its three benchmarks (skipped where it cannot be built).
func TestScratchGoArenaChild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a child with GOEXPERIMENT=arenas and runs it")
	}
	lines, err := scratchbench.GoArena(1)
	if errors.Is(err, scratchbench.ErrNoGoArena) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	var want = []string{"Scratch/object64/goarena", "Scratch/free1M/goarena", "Scratch/request/goarena"}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d: %q", len(lines), len(want), lines)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], "Benchmark"+w+"-") || !strings.Contains(lines[i], "ns/op") {
			t.Errorf("line %d: %q, want %s", i, lines[i], w)
		}
	}
}

// TestScratchSummary reads benchmark lines as benchstat would: medians,
// and each target met or not.
func TestScratchSummary(t *testing.T) {
	lines := []string{
		"BenchmarkScratch/object64/scratch-2\t100\t2.5 ns/op\t0 B/op\t0 allocs/op",
		"BenchmarkScratch/object64/scratch-2\t100\t2.0 ns/op\t0 B/op\t0 allocs/op",
		"BenchmarkScratch/object64/scratch-2\t100\t9.0 ns/op\t0 B/op\t0 allocs/op",
		"BenchmarkScratch/free1M/scratch-2\t20\t2000000 ns/op\t50000 p50-ns/op\t30000 cpu-ns/op",
		"BenchmarkScratch/request/goheap-2\t10\t5000 ns/op\t0.25 gc-cpu-frac\t3 gc/1000ops",
	}
	var out strings.Builder
	scratchbench.Summary(&out, lines)
	s := out.String()
	for _, want := range []string{
		"target Scratch/object64/scratch ≤ 3 ns/object: 2.5 (0.83× the target) met",
		"target Scratch/free1M/scratch ≤ 1e+06 ns/release: 2e+06 (2.00× the target) NOT met; the median release 5e+04 (0.05×); in CPU time 3e+04 (0.03×)",
		"0.250",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
}
