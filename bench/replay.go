package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/brkmap/alloc/bench/internal/child"
	"github.com/brkmap/alloc/bench/internal/harness"
	"github.com/brkmap/alloc/bench/internal/replay"
	"github.com/brkmap/alloc/bench/internal/report"
)

// replayCommand is `bench replay`: every (trace, policy) pair in a child
// process of its own (replay.Measure there), then a table or JSON lines.
func replayCommand(args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	pol := fs.String("policy", "all", fmt.Sprintf("policy: one of %v", harness.PolicyNames()))
	threshold := fs.Int("threshold", 0, "mmap threshold in bytes for the threshold and libc policies (0: 128 KiB; for libc, glibc's sliding default)")
	asJSON := fs.Bool("json", false, "print one JSON object a line")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: bench replay [-policy P] [-threshold BYTES] [-json] FILE.rep…")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("replay: no trace files")
	}
	if *threshold < 0 {
		return fmt.Errorf("replay: -threshold %d: must not be negative", *threshold)
	}
	ps, err := harness.SelectPolicies(*pol)
	if err != nil {
		return err
	}
	if ps = harness.DropLibcIfMissing(ps); len(ps) == 0 {
		return nil
	}
	// Parse every trace here first, so a bad file fails before any run.
	for _, f := range fs.Args() {
		if _, err := replay.ParseTraceFile(f); err != nil {
			return err
		}
	}
	var jobs []child.Job
	for _, f := range fs.Args() {
		for _, p := range ps {
			jobs = append(jobs, child.Job{Kind: kindReplay, Target: f, Policy: p.Name, Threshold: *threshold})
		}
	}
	results := runJobs(jobs, func(r *harness.Result) {
		if *asJSON {
			line, _ := json.Marshal(r.Contract())
			fmt.Println(string(line))
		}
	})
	if !*asJSON {
		report.PrintTable(os.Stdout, "", results)
	}
	return failures(results)
}
