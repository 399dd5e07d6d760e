// Package child is bench's one child-process protocol. Every measured run
// — a (trace or workload, policy) pair, one store of the gc benchmark, one
// glibc variant of a Go benchmark — runs in a fresh process, this same
// binary started again, so that the peak of one run (the process's VmHWM,
// glibc's heap and tunables, the Go runtime's own growth and GC pacing)
// never bleeds into the next.
//
// The parent puts the Job, as JSON, in the child's environment under Env
// and starts os.Executable() with no arguments. The child's main (or the
// test binary's TestMain) calls ServeIfChild first of all: Lookup and,
// when it finds a job, Serve, which runs the job's handler and prints its
// result as one JSON line on stdout. Exit status: 0 when the run is ok, 3 when it ran
// but is not ok (the line says why), 2 when it could not run (stderr says
// why, and stdout has no line).
package child

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Env is the environment variable that carries a child's job.
const Env = "BRKMAP_BENCH_CHILD"

// Job is one run to make in a child. Kind selects the handler; the other
// fields are the handler's to read.
type Job struct {
	Kind      string          `json:"kind"`                // "replay", "workload", "gc", …
	Target    string          `json:"target,omitempty"`    // trace file, workload name, store
	Policy    string          `json:"policy,omitempty"`    // a policy name
	Threshold int             `json:"threshold,omitempty"` // mmap threshold in bytes (0: the default)
	Scale     float64         `json:"scale,omitempty"`     // workloads: shrink or grow by this factor
	Config    json.RawMessage `json:"config,omitempty"`    // anything else, for the handler to decode

	// Environ holds extra NAME=value pairs for the child's environment
	// (GLIBC_TUNABLES, say). The parent sets it; the child does not see it
	// in its job.
	Environ []string `json:"-"`
	// ExtraFiles are open files the child inherits as descriptors 3, 4, …
	// (exec.Cmd.ExtraFiles): a socket to talk over, a shared pool's file.
	ExtraFiles []*os.File `json:"-"`
}

// Handler runs a job in the child and returns what to print. ok false
// means the run is not ok (exit status 3); err means it could not run.
type Handler func(j Job) (out any, ok bool, err error)

// Lookup returns the job of this process, if it is a child. A job that
// does not decode is reported as an error (found is still true: the
// process is a child, and must not go on as a parent).
func Lookup() (j Job, found bool, err error) {
	v, found := os.LookupEnv(Env)
	if !found {
		return Job{}, false, nil
	}
	if err := json.Unmarshal([]byte(v), &j); err != nil {
		return Job{}, true, fmt.Errorf("child: %s=%q: %w", Env, v, err)
	}
	return j, true, nil
}

// Serve runs j (found by Lookup, with its error) with the handler of its
// kind, prints the result, and returns the exit status.
func Serve(j Job, lookupErr error, handlers map[string]Handler) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 2
	}
	if lookupErr != nil {
		return fail(lookupErr)
	}
	h := handlers[j.Kind]
	if h == nil {
		return fail(fmt.Errorf("unknown kind %q", j.Kind))
	}
	out, ok, err := h(j)
	if err != nil {
		return fail(err)
	}
	line, err := json.Marshal(out)
	if err != nil {
		return fail(err)
	}
	os.Stdout.Write(append(line, '\n'))
	if !ok {
		return 3
	}
	return 0
}

// ServeIfChild is the first thing a child's main (or TestMain) does: if
// this process is a child, it serves its job with handlers and exits with
// Serve's status; otherwise it returns and the process goes on as a
// parent.
func ServeIfChild(handlers map[string]Handler) {
	if j, ok, err := Lookup(); ok {
		os.Exit(Serve(j, err, handlers))
	}
}

// Command returns the command that runs j in a child: this executable,
// with the job in its environment.
func Command(j Job) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("cannot find this executable to start a child: %w", err)
	}
	spec, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), j.Environ...), Env+"="+string(spec))
	cmd.ExtraFiles = j.ExtraFiles
	return cmd, nil
}

// ErrNoResult is wrapped by Run when a child ends without a result line.
var ErrNoResult = errors.New("child process failed without a result")

// Run runs j in a fresh child process and decodes its result line into
// out. A child that ran but is not ok (exit status 3) is no error: out
// says so. A child that dies without a line (a crash, a signal, a job it
// could not run) gives an error wrapping ErrNoResult, carrying the end of
// its stderr.
func Run(j Job, out any) error {
	cmd, err := Command(j)
	if err != nil {
		return err
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	line := bytes.TrimSpace(stdout.Bytes())
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if len(line) == 0 || json.Unmarshal(line, out) != nil {
		tail := stderr.String()
		if len(tail) > 2000 {
			tail = "…" + tail[len(tail)-2000:]
		}
		return fmt.Errorf("%w (%v): %s", ErrNoResult, runErr, strings.TrimSpace(tail))
	}
	return nil
}
