// Command bench compares the allocator's policies — the threshold between
// the brk-like region and one mapping per block, the region only, a
// mapping for everything, glibc's sliding threshold — with each other and
// with glibc's malloc, on the same workloads.
//
//	go run ./bench [-out DIR] [-traces DIR] [-policy P]
//
// runs the built-in workloads (and the traces of -traces, when that folder
// exists) under every policy, each pair in a fresh child process, prints a
// table — time, system calls, page faults, peak and final resident memory,
// fragmentation — and writes a report to a folder: plots of resident
// memory over time, maps of the region at its peak and at the end, and one
// HTML page putting them together with a paragraph per lesson.
//
//	go run ./bench replay [-policy P] [-threshold BYTES] [-json] FILE.rep…
//
// replays malloc-lab traces, checking every byte of every block, and
// prints a table or, with -json, one JSON object a line (the fields are a
// contract: see result).
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/brkmap/alloc/bench/internal/cachebench"
)

// commands holds the subcommands (`go run ./bench NAME args…`). Each file
// that adds one registers it in an init function, so the subcommands stay
// independent of each other.
var commands = map[string]func(args []string) error{}

func main() {
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "cache":
		os.Exit(cachebench.Main(os.Args[2:]))
	case len(os.Args) > 1 && commands[os.Args[1]] != nil:
		err = commands[os.Args[1]](os.Args[2:])
	case len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-"):
		err = fmt.Errorf("unknown command %q", os.Args[1])
	default:
		err = run(os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
