// Command bench compares the allocator's policies — the threshold between
// the brk-like region and one mapping per block, the region only, a
// mapping for everything, glibc's sliding threshold — with each other and
// with glibc's malloc, on the same workloads.
//
//	go run ./bench [-out DIR] [-traces DIR] [-policy P] [-no-shm]
//
// runs the built-in workloads (and the traces of -traces, when that folder
// exists) under every policy, each pair in a fresh child process, prints a
// table — time, system calls, page faults, peak and final resident memory,
// fragmentation — and writes a report to a folder: plots of resident
// memory over time, maps of the region at its peak and at the end, and one
// HTML page putting them together with a paragraph per lesson. Then, unless
// -no-shm, the shared pool's lesson: payloads handed to a worker process
// through a socket and through a shared pool (package shmbench).
//
//	go run ./bench replay [-policy P] [-threshold BYTES] [-json] FILE.rep…
//
// replays malloc-lab traces, checking every byte of every block, and
// prints a table or, with -json, one JSON object a line (the fields are a
// contract: see harness.Result).
//
//	go run ./bench gc [-entries N] [-ops N] [-garbage BYTES] [-runs N] [-json]
//	go run ./bench soak [-ops N] [-goroutines G] [-policy P]
//
// measure what an off-heap cache saves the garbage collector (package
// gcbench), and soak the allocator under every policy against a model
// (package soak).
//
//	go run ./bench zerocopy [-dir DIR] [-size BYTES] [-runs N] [-methods a,b] [-json]
//
// sends a file (1 GiB) over loopback TCP with read+write through a 64 KiB
// buffer and with each zero-copy way of package zerocopy, and compares
// throughput and the sender's CPU time (package zcbench).
//
//	go run ./bench scratch [-count N] [-no-goarena]
//
// measures request arenas (alloc.Scratch) against the Go heap and Go's
// arena experiment, in `go test -bench` lines for benchstat (package
// scratchbench).
//
// The command is this file's dispatch and one file per subcommand (run.go,
// replay.go, gc.go, soak.go, zerocopy.go, scratch.go); the work is in the packages
// under internal/.
// Every measured run is a child process of this same binary (package
// child): main looks for a child's job before anything else.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/brkmap/alloc/bench/internal/cachebench"
	"github.com/brkmap/alloc/bench/internal/child"
)

// commands are the subcommands (`go run ./bench NAME args…`); with no
// name, or flags first, the command is run.
var commands = map[string]func(args []string) error{
	"replay":   replayCommand,
	"gc":       gcCommand,
	"soak":     soakCommand,
	"zerocopy": zerocopyCommand,
	"scratch":  scratchCommand,
}

func main() {
	child.ServeIfChild(handlers)
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
