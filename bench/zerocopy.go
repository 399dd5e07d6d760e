package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/brkmap/alloc/bench/internal/zcbench"
)

// zerocopyCommand is `bench zerocopy`: a file sent over loopback TCP each
// way (package zcbench), each run in a child process, the medians side by
// side or every run as JSON lines.
func zerocopyCommand(args []string) error {
	fs := flag.NewFlagSet("zerocopy", flag.ContinueOnError)
	dir := fs.String("dir", os.TempDir(), "folder for the file sent (on disk, not tmpfs)")
	size := fs.Int64("size", 1<<30, "bytes of the file sent")
	block := fs.Int("block", 1<<20, "block size of the off-heap ways")
	runs := fs.Int("runs", 3, "runs of each method; the table shows medians")
	methods := fs.String("methods", strings.Join(zcbench.Methods, ","), "comma-separated methods")
	asJSON := fs.Bool("json", false, "print every run as one JSON object a line instead of the table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *size <= 0 || *block <= 0 || *block%4096 != 0 || *runs < 1 {
		return fmt.Errorf("zerocopy: -size %d, -block %d (a multiple of 4096), -runs %d: must be positive", *size, *block, *runs)
	}
	ms := strings.Split(*methods, ",")
	for _, m := range ms {
		if !slices.Contains(zcbench.Methods, m) {
			return fmt.Errorf("zerocopy: unknown method %q (one of %s)", m, strings.Join(zcbench.Methods, ", "))
		}
	}
	name, sum, fsName, err := zcbench.Prepare(*dir, *size, os.Stderr)
	if err != nil {
		return err
	}
	results, err := zcbench.Run(zcbench.Config{File: name, Size: *size, Block: *block}, ms, *runs, sum, os.Stderr)
	if err != nil {
		return err
	}
	bad := 0
	for _, r := range results {
		if !r.OK {
			bad++
		}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		for _, r := range results {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
	} else if err := zcbench.PrintTable(os.Stdout, *size, fsName, *runs, zcbench.Medians(results, ms)); err != nil {
		return err
	}
	if bad > 0 {
		return fmt.Errorf("zerocopy: %d runs did not deliver the file intact", bad)
	}
	return nil
}
