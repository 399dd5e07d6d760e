package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/brkmap/alloc/bench/internal/harness"
	"github.com/brkmap/alloc/bench/internal/soak"
)

// soakCommand is `bench soak`: a soak (package soak) under each policy
// asked for, a row of the table as each one ends.
func soakCommand(args []string) error {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	ops := fs.Int64("ops", 10_000_000, "operations per policy, all goroutines together")
	gs := fs.Int("goroutines", 8, "goroutines")
	pol := fs.String("policy", "all", "threshold, brk, mmap, dynamic, low-threshold, debug or all")
	check := fs.Int64("check", 1_000_000, "operations between two full checks at a barrier")
	seed := fs.Uint64("seed", 1, "random seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *gs < 1 || *ops < 1 || *check < 1 {
		return errors.New("soak: -ops, -goroutines and -check must be positive")
	}
	var run []harness.Policy
	for _, p := range soak.Policies {
		if *pol == "all" || *pol == p.Name {
			run = append(run, p)
		}
	}
	if len(run) == 0 {
		return fmt.Errorf("soak: unknown policy %q", *pol)
	}
	soak.PrintHeader(os.Stdout)
	var failed error
	for _, p := range run {
		r, err := soak.Run(p, soak.Params{Ops: *ops, Goroutines: *gs, Check: *check, Seed: *seed})
		r.PrintRow(os.Stdout, p.Name)
		if err != nil {
			failed = errors.Join(failed, fmt.Errorf("soak under %s: %w", p.Name, err))
		}
	}
	return failed
}
