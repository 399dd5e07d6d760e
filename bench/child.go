package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/brkmap/alloc/bench/internal/cachebench"
	"github.com/brkmap/alloc/bench/internal/child"
	"github.com/brkmap/alloc/bench/internal/gcbench"
	"github.com/brkmap/alloc/bench/internal/harness"
	"github.com/brkmap/alloc/bench/internal/replay"
	"github.com/brkmap/alloc/bench/internal/shmbench"
	"github.com/brkmap/alloc/bench/internal/workloads"
	"github.com/brkmap/alloc/bench/internal/zcbench"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// The kinds of child job, besides gcbench.ChildKind, cachebench.ChildKind,
// zcbench.ChildKind and shmbench.ChildKind.
const (
	kindReplay   = "replay"   // Target: a trace file
	kindWorkload = "workload" // Target: a workload's name
)

// handlers are the child's side of every kind of job.
var handlers = map[string]child.Handler{
	kindReplay:           measured(func(j child.Job, p harness.Policy) *harness.Result { return replay.Measure(j.Target, p, j.Threshold) }),
	kindWorkload:         measured(func(j child.Job, p harness.Policy) *harness.Result { return workloads.Measure(j.Target, p, j.Scale) }),
	gcbench.ChildKind:    gcbench.ServeChild,
	cachebench.ChildKind: cachebench.ServeChild,
	zcbench.ChildKind:    zcbench.ServeChild,
	shmbench.ChildKind:   shmbench.ServeChild,
}

// measured makes a handler of a run under one policy: the result is
// printed whether or not it is ok.
func measured(f func(j child.Job, p harness.Policy) *harness.Result) child.Handler {
	return func(j child.Job) (any, bool, error) {
		ps, err := harness.SelectPolicies(j.Policy)
		if err != nil || len(ps) != 1 {
			r := &harness.Result{Trace: j.Target, Policy: j.Policy, Error: fmt.Sprintf("child: bad policy %q", j.Policy)}
			return r, false, nil
		}
		r := f(j, ps[0])
		return r, r.OK, nil
	}
}

// runChild runs j in a fresh child process and returns its result. A child
// that dies without printing one (a crash, a signal) gives a failed result
// carrying the end of its stderr.
func runChild(j child.Job) *harness.Result {
	var res harness.Result
	err := child.Run(j, &res)
	if err == nil && res.Policy == "" && res.Error == "" {
		err = fmt.Errorf("%w: the line names no policy", child.ErrNoResult)
	}
	if err != nil {
		return &harness.Result{Trace: j.Target, Policy: j.Policy, Threshold: j.Threshold, Error: err.Error()}
	}
	return &res
}

// runJobs runs the jobs one after the other, each in its own child, calling
// done with each result as it comes. A progress bar shows on stderr while
// they run when stdout is a terminal.
func runJobs(jobs []child.Job, done func(*harness.Result)) []*harness.Result {
	bar := newBar(len(jobs))
	var results []*harness.Result
	for _, j := range jobs {
		bar.Describe(fmt.Sprintf("%s / %s", shortName(j.Target), j.Policy))
		r := runChild(j)
		results = append(results, r)
		bar.Clear()
		done(r)
		bar.Add(1)
	}
	bar.Finish()
	bar.Clear()
	return results
}

// newBar returns a progress bar of n steps on stderr, or a silent one
// when stdout is not a terminal (output piped into a file or a program).
func newBar(n int) *progressbar.ProgressBar {
	if !term.IsTerminal(int(os.Stdout.Fd())) || !term.IsTerminal(int(os.Stderr.Fd())) {
		return progressbar.DefaultSilent(int64(n))
	}
	return progressbar.NewOptions(n,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionClearOnFinish(),
	)
}

func shortName(s string) string {
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSuffix(s, ".rep")
}

// failures returns an error naming the runs that failed, or nil.
func failures(results []*harness.Result) error {
	bad := 0
	for _, r := range results {
		if !r.OK {
			bad++
			harness.Warn("%s under %s failed: %s", r.Trace, r.Policy, r.Error)
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d runs failed", bad, len(results))
	}
	return nil
}
