package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/brkmap/alloc/bench/internal/scratchbench"
)

// scratchCommand is `bench scratch`: request arenas (alloc.Scratch) against
// the Go heap and Go's arena experiment (package scratchbench), -count
// times each, printed as `go test -bench` lines for benchstat, then the
// medians and the targets. The Go arena's benchmarks run in a child built
// with GOEXPERIMENT=arenas; if it cannot be built they are left out, and
// the command says so.
func scratchCommand(args []string) error {
	fs := flag.NewFlagSet("scratch", flag.ContinueOnError)
	count := fs.Int("count", 6, "runs of each benchmark")
	noArena := fs.Bool("no-goarena", false, "leave out Go's arena experiment")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *count < 1 {
		return fmt.Errorf("scratch: -count %d: must be at least 1", *count)
	}
	testing.Init()
	fmt.Printf("goos: %s\ngoarch: %s\npkg: github.com/brkmap/alloc/bench\n", runtime.GOOS, runtime.GOARCH)
	var lines []string
	for range *count {
		for _, b := range scratchbench.InProcess {
			l, err := b.Run()
			if err != nil {
				return err
			}
			fmt.Println(l)
			lines = append(lines, l)
		}
		runtime.GC()
	}
	if !*noArena {
		arena, err := scratchbench.GoArena(*count)
		switch {
		case errors.Is(err, scratchbench.ErrNoGoArena):
			fmt.Fprintln(os.Stderr, "bench scratch: Go's arena left out:", err)
		case err != nil:
			return err
		}
		for _, l := range arena {
			fmt.Println(l)
		}
		lines = append(lines, arena...)
	}
	fmt.Println()
	scratchbench.Summary(os.Stdout, lines)
	return nil
}
