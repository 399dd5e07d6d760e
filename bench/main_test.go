package main

import (
	"os"
	"strconv"
	"testing"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/internal/child"
	"github.com/brkmap/alloc/bench/internal/workloads"
	"github.com/stretchr/testify/require"
)

// TestMain serves a child's job first, as main does: the tests run
// replays, workloads and glibc benchmarks in child processes of this test
// binary. BRKMAP_PROFILE_RATE overrides alloc.ProfileRate for a run (0:
// heap profiling off), to separate the allocator's own cost from
// sampling's.
func TestMain(m *testing.M) {
	if v, ok := os.LookupEnv("BRKMAP_PROFILE_RATE"); ok {
		if n, err := strconv.Atoi(v); err == nil {
			alloc.ProfileRate = n
		}
	}
	handlers[kindTouch] = serveTouch // a kind only the tests' children serve
	child.ServeIfChild(handlers)
	os.Exit(m.Run())
}

// Every workload runs in a child process too, the way `go run ./bench`
// runs it: its name must resolve there.
func TestWorkloadsInChild(t *testing.T) {
	for _, w := range workloads.List {
		t.Run(w.Name, func(t *testing.T) {
			r := runChild(child.Job{Kind: kindWorkload, Target: w.Name, Policy: "threshold", Scale: 0.02})
			require.True(t, r.OK, "%s: %s", w.Name, r.Error)
		})
	}
}
