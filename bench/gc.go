package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/brkmap/alloc/bench/internal/gcbench"
)

// gcCommand is `bench gc`: each store, runs times, in a child process of
// its own (gcbench.Run), then the medians side by side or JSON lines.
func gcCommand(args []string) error {
	fs := flag.NewFlagSet("gc", flag.ContinueOnError)
	var cfg gcbench.Config
	fs.IntVar(&cfg.Entries, "entries", 5_000_000, "entries in the cache")
	fs.IntVar(&cfg.Ops, "ops", 5_000_000, "operations in the churn phase")
	fs.IntVar(&cfg.Garbage, "garbage", 1024, "bytes of short-lived Go heap garbage per op (a request handler's)")
	fs.Float64Var(&cfg.Get, "get", 0.80, "share of Gets")
	fs.Float64Var(&cfg.Set, "set", 0.15, "share of Sets (the rest are Deletes)")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed")
	runs := fs.Int("runs", 3, "runs of each store; the table shows medians")
	asJSON := fs.Bool("json", false, "print every run as one JSON object a line instead of the table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// written so that NaN fails: every comparison with it is false
	if cfg.Entries <= 0 || cfg.Ops < 0 || cfg.Garbage < 0 || !(cfg.Get >= 0) || !(cfg.Set >= 0) || !(cfg.Get+cfg.Set <= 1) {
		return fmt.Errorf("gc: bad workload %+v", cfg)
	}
	if *runs < 1 {
		return fmt.Errorf("gc: -runs %d: must be at least 1", *runs)
	}
	results, err := gcbench.Run(cfg, *runs, os.Stderr)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		for _, r := range results {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	return gcbench.PrintTable(os.Stdout, cfg, *runs, results)
}
