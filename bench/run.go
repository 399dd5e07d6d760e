package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/brkmap/alloc/bench/internal/child"
	"github.com/brkmap/alloc/bench/internal/harness"
	"github.com/brkmap/alloc/bench/internal/replay"
	"github.com/brkmap/alloc/bench/internal/report"
	"github.com/brkmap/alloc/bench/internal/shmbench"
	"github.com/brkmap/alloc/bench/internal/workloads"
)

// run is the main job (`go run ./bench`): every built-in workload, and
// every trace of -traces when the folder exists, under every policy; a
// table on the terminal and a report folder.
func run(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	out := fs.String("out", "bench-report", "folder to write the report to (plots, index.html, results.json)")
	traces := fs.String("traces", "../shared/traces", "folder of malloc-lab traces (*.rep) to replay too; skipped when it does not exist")
	pol := fs.String("policy", "all", fmt.Sprintf("policy: one of %v", harness.PolicyNames()))
	only := fs.String("workloads", "", "comma-separated workloads to run (default: all)")
	scale := fs.Float64("scale", 1, "shrink (or grow) every workload by this factor")
	noShm := fs.Bool("no-shm", false, "skip the shared pool's lesson (payloads handed to a worker process through a socket and through a shared pool)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (replay traces with `bench replay FILE.rep…`)", fs.Args())
	}
	if !(*scale >= minScale && *scale <= maxScale) { // NaN fails both
		return fmt.Errorf("-scale %v: must be a number from %v to %v", *scale, minScale, maxScale)
	}
	if err := writableDir(*out); err != nil {
		return fmt.Errorf("-out %s: %w", *out, err)
	}
	ps, err := harness.SelectPolicies(*pol)
	if err != nil {
		return err
	}
	ps = harness.DropLibcIfMissing(ps)
	ws := workloads.List
	if *only != "" {
		ws = nil
		for _, name := range strings.Split(*only, ",") {
			w, ok := workloads.Find(strings.TrimSpace(name))
			if !ok {
				return fmt.Errorf("unknown workload %q", name)
			}
			ws = append(ws, w)
		}
	}
	var files []string
	if *traces != "" {
		files, _ = filepath.Glob(filepath.Join(*traces, "*.rep"))
	}
	for _, f := range files { // a bad trace fails before any run
		if _, err := replay.ParseTraceFile(f); err != nil {
			return err
		}
	}

	var jobs []child.Job
	for _, w := range ws {
		for _, p := range ps {
			jobs = append(jobs, child.Job{Kind: kindWorkload, Target: w.Name, Policy: p.Name, Scale: *scale})
		}
	}
	for _, f := range files {
		for _, p := range ps {
			jobs = append(jobs, child.Job{Kind: kindReplay, Target: f, Policy: p.Name})
		}
	}
	results := runJobs(jobs, func(*harness.Result) {})
	rep := &report.Report{Lessons: lessonsOf(ws), Results: results, TraceDir: *traces, Traces: len(files) > 0,
		Scale: *scale, When: time.Now()}
	if !*noShm {
		rep.Shared, rep.SharedSkipped = measureShared()
	}

	w := os.Stdout
	for _, wl := range ws {
		fmt.Fprintf(w, "\n%s: %s\n", wl.Name, wl.Title)
		report.PrintTable(w, wl.Name, rep.Group(wl.Name))
	}
	if len(files) > 0 {
		fmt.Fprintf(w, "\ntraces from %s (replayed with every byte checked):\n", *traces)
		report.PrintTable(w, "", rep.TraceResults())
	}
	if rep.Shared != nil {
		fmt.Fprintf(w, "\nshared-pool: payloads handed to a worker process through a socket and through a shared pool (per payload)\n")
		report.PrintShared(w, rep.Shared)
	} else if rep.SharedSkipped != "" {
		fmt.Fprintf(w, "\nshared-pool: not measured: %s\n", rep.SharedSkipped)
	}
	index, err := rep.Write(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nreport: %s\n", index)
	if err := failures(results); err != nil {
		return err
	}
	if rep.Shared != nil && !rep.Shared.OK {
		return fmt.Errorf("the shared pool's lesson failed: %s", rep.Shared.Error)
	}
	return nil
}

// measureShared measures the shared pool's lesson (package shmbench) with
// its default sizes: a few hundred milliseconds. On a system without the
// pool's memfd it returns why it was skipped; a measurement that could not
// run is a result that is not ok.
func measureShared() (*shmbench.Result, string) {
	r, err := shmbench.Run(shmbench.DefaultConfig())
	switch {
	case errors.Is(err, shmbench.ErrUnsupported):
		return nil, err.Error()
	case err != nil:
		return &shmbench.Result{Error: err.Error()}, ""
	}
	return r, ""
}

// The range of -scale: a workload shrunk or grown past it is no workload.
const minScale, maxScale = 1e-3, 1e3

// writableDir makes dir if needed and checks that a file can be written
// in it, so that a bad -out fails before any run rather than after all.
func writableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

// lessonsOf returns the workloads as the report shows them.
func lessonsOf(ws []workloads.Workload) []report.Lesson {
	ls := make([]report.Lesson, len(ws))
	for i, w := range ws {
		ls[i] = report.Lesson{Name: w.Name, Title: w.Title, Lesson: w.Lesson}
	}
	return ls
}
