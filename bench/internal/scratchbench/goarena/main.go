//go:build goexperiment.arenas

// Command goarena is the Go arena experiment's side of bench scratch: the
// same benchmarks as package scratchbench's, with arena.NewArena,
// arena.New and Arena.Free, printed as `go test -bench` lines. bench
// builds it with GOEXPERIMENT=arenas and runs it as a child; built without
// the experiment it only says so (other.go).
//
//	GOEXPERIMENT=arenas go run ./bench/internal/scratchbench/goarena [-count N]
package main

import (
	"arena"
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/brkmap/alloc/bench/internal/scratchbench"
)

// object64: a request of ObjectsPerBatch objects is an arena, freed at
// its end (an arena cannot be reset).
func object64(b *testing.B) {
	a := arena.NewArena()
	var sum uint64
	b.ReportAllocs()
	b.ResetTimer()
	cpu := scratchbench.CPUTime()
	for i := 0; i < b.N; i++ {
		if i%scratchbench.ObjectsPerBatch == 0 && i > 0 {
			a.Free()
			a = arena.NewArena()
		}
		o := arena.New[scratchbench.Object](a)
		o.ID = uint64(i)
		sum += o.Vals[0]
	}
	b.StopTimer()
	scratchbench.ReportCPU(b, cpu)
	a.Free()
	scratchbench.Sink += sum
}

// free1M times Arena.Free of FreeObjects objects, the filling untimed
// (as scratchbench.Free1MScratch).
func free1M(b *testing.B) {
	scratchbench.TimeReleases(b, func() func() error {
		a := arena.NewArena()
		for i := range scratchbench.FreeObjects {
			arena.New[scratchbench.Object](a).ID = uint64(i)
		}
		return func() error { a.Free(); return nil }
	})
}

// request is the request loop with an arena a request.
func request(b *testing.B) {
	scratchbench.BuildLiveHeap()
	var sum uint64
	t := scratchbench.StartLoop(b)
	for r := 0; r < b.N; r++ {
		a := arena.NewArena()
		var first *scratchbench.Object
		for i := range scratchbench.ObjectsPerRequest {
			o := arena.New[scratchbench.Object](a)
			sum += scratchbench.Touch(o, uint64(i))
			if first == nil {
				first = o
			}
		}
		sum += first.Vals[6]
		a.Free()
	}
	t.End(b)
	scratchbench.Sink += sum
}

func main() {
	count := flag.Int("count", 1, "runs of each benchmark")
	testing.Init()
	flag.Parse()
	for range *count {
		for _, bench := range []scratchbench.Bench{
			{Name: "Scratch/object64/goarena", F: object64},
			{Name: "Scratch/free1M/goarena", F: free1M, Benchtime: scratchbench.FreeRuns},
			{Name: "Scratch/request/goarena", F: request},
		} {
			line, err := bench.Run()
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			fmt.Println(line)
		}
	}
}
