// Command bench compares the allocator's policies on the same workloads.
//
//	go run ./bench
//
// runs the built-in workloads under every policy and prints, side by side,
// what each cost: time, system calls, page faults, and resident memory
// (measured with mincore) after allocating, after freeing, and after Trim.
package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/brkmap/alloc"
)

// workload is one lesson: it runs against an allocator and reports the
// snapshots at its named moments.
type workload struct {
	name, lesson string
	run          func(a *alloc.Allocator, mark func(string)) error
}

var workloads = []workload{
	{"pinned-top", "20 MB of 512-byte blocks, one block allocated after them stays live; free the rest, then Trim",
		pinnedTop},
	{"large-temp", "a 256 KiB buffer allocated, written and freed 200 times",
		largeTemp},
}

func pinnedTop(a *alloc.Allocator, mark func(string)) error {
	var blocks [][]byte
	for n := 0; n < 20<<20; n += 512 {
		b, err := a.Malloc(512)
		if err != nil {
			return err
		}
		b[0], b[511] = 1, 1
		blocks = append(blocks, b)
	}
	pin, err := a.Malloc(512)
	if err != nil {
		return err
	}
	pin[0] = 1
	mark("allocated")
	for _, b := range blocks {
		if err := a.Free(b); err != nil {
			return err
		}
	}
	mark("freed")
	a.Trim()
	mark("trimmed")
	return a.Free(pin)
}

func largeTemp(a *alloc.Allocator, mark func(string)) error {
	for range 200 {
		b, err := a.Malloc(256 << 10)
		if err != nil {
			return err
		}
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		if err := a.Free(b); err != nil {
			return err
		}
	}
	mark("done")
	return nil
}

type policy struct {
	name string
	cfg  alloc.Config
}

var policies = []policy{
	{"threshold", alloc.Config{}},
	{"dynamic", alloc.Config{DynamicThreshold: true}},
	{"brk", alloc.Config{Policy: alloc.PolicyBrk}},
	{"mmap", alloc.Config{Policy: alloc.PolicyMmap}},
}

// commands holds the subcommands (`go run ./bench NAME args…`). Each file
// that adds one registers it in an init function, so the subcommands stay
// independent of each other.
var commands = map[string]func(args []string) error{}

func main() {
	var err error
	if len(os.Args) > 1 && commands[os.Args[1]] != nil {
		err = commands[os.Args[1]](os.Args[2:])
	} else if len(os.Args) > 1 {
		err = fmt.Errorf("unknown command %q", os.Args[1])
	} else {
		err = run()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, w := range workloads {
		fmt.Printf("\n%s: %s\n", w.name, w.lesson)
		fmt.Fprintln(tw, "policy\tmoment\tresident\tarena\tmapped\tsyscalls\tfaults\ttime\t")
		for _, p := range policies {
			a, err := alloc.New(p.cfg)
			if err != nil {
				return err
			}
			start := time.Now()
			s0 := a.Stats()
			mark := func(moment string) {
				elapsed := time.Since(start)
				s := a.Stats().Sub(s0)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%v\t\n", p.name, moment, mib(s.Resident),
					mib(s.ArenaBytes), mib(s.MmapBytes), s.Syscalls(), s.MinorFaults, elapsed.Round(time.Microsecond))
			}
			err = w.run(a, mark)
			a.Close()
			if err != nil {
				return fmt.Errorf("%s under %s: %w", w.name, p.name, err)
			}
		}
		tw.Flush()
	}
	return nil
}

func mib(n uint64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }
