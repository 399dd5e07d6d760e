package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/brkmap/alloc/bench/libc"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// childEnv marks a child process: each (trace or workload, policy) pair
// runs in a fresh process — this same binary, started again with
// childEnv=1 — so that the peak of one run (the process's VmHWM, glibc's
// heap, the Go runtime's own growth) never bleeds into the next.
const childEnv = "BRKMAP_BENCH_CHILD"

func init() {
	if os.Getenv(childEnv) == "1" {
		os.Exit(childMain(os.Args[1:]))
	}
}

// job is one run to make in a child.
type job struct {
	kind      string // "replay" or "workload"
	target    string // trace file or workload name
	policy    string
	threshold int
	scale     float64
}

func (j job) args() []string {
	return []string{j.kind, j.target, j.policy, strconv.Itoa(j.threshold), strconv.FormatFloat(j.scale, 'g', -1, 64)}
}

// childMain runs one job in this process and prints its result as one
// JSON line. The exit status is 0 when the run is ok, 3 when not.
func childMain(args []string) int {
	res := childRun(args)
	line, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 2
	}
	os.Stdout.Write(append(line, '\n'))
	if !res.OK {
		return 3
	}
	return 0
}

func childRun(args []string) *result {
	if len(args) != 5 {
		return &result{Error: fmt.Sprintf("child: want 5 arguments, got %q", args)}
	}
	kind, target := args[0], args[1]
	ps, err := selectPolicies(args[2])
	threshold, err2 := strconv.Atoi(args[3])
	scale, err3 := strconv.ParseFloat(args[4], 64)
	if err != nil || err2 != nil || err3 != nil || len(ps) != 1 {
		return &result{Trace: target, Policy: args[2], Error: fmt.Sprintf("child: bad arguments %q", args)}
	}
	switch kind {
	case "replay":
		return childReplay(target, ps[0], threshold)
	case "workload":
		return childWorkload(target, ps[0], scale)
	}
	return &result{Trace: target, Policy: args[2], Error: "child: unknown kind " + kind}
}

// runChild runs j in a fresh child process and returns its result. A child
// that dies without printing one (a crash, a signal) gives a failed result
// carrying the end of its stderr.
func runChild(j job) *result {
	exe, err := os.Executable()
	fail := func(msg string) *result {
		return &result{Trace: j.target, Policy: j.policy, Threshold: j.threshold, Error: msg}
	}
	if err != nil {
		return fail("cannot find this executable to start a child: " + err.Error())
	}
	cmd := exec.Command(exe, j.args()...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	out := bytes.TrimSpace(stdout.Bytes())
	if i := bytes.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	var res result
	if err := json.Unmarshal(out, &res); err != nil || (res.Policy == "" && res.Error == "") {
		tail := stderr.String()
		if len(tail) > 2000 {
			tail = "…" + tail[len(tail)-2000:]
		}
		return fail(fmt.Sprintf("child process failed (%v) without a result: %s", runErr, strings.TrimSpace(tail)))
	}
	return &res
}

// runJobs runs the jobs one after the other, each in its own child, calling
// done with each result as it comes. A progress bar shows on stderr while
// they run when stdout is a terminal.
func runJobs(jobs []job, done func(*result)) []*result {
	bar := newBar(len(jobs))
	var results []*result
	for _, j := range jobs {
		bar.Describe(fmt.Sprintf("%s / %s", shortName(j.target), j.policy))
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

// dropLibcIfMissing removes the libc policy when this binary has no cgo,
// saying so.
func dropLibcIfMissing(ps []policy) []policy {
	if libc.Available {
		return ps
	}
	var kept []policy
	for _, p := range ps {
		if p.libc {
			warn("%v", errLibcMissing)
			continue
		}
		kept = append(kept, p)
	}
	return kept
}
