package main

import (
	"testing"
	"time"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/internal/sampler"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every built-in workload runs to the end under every policy of this
// allocator (shrunk), marks its moments, and frees what it allocates.
func TestWorkloads(t *testing.T) {
	for _, w := range workloads {
		for _, p := range policies {
			if p.libc {
				continue // glibc is run in children, by TestMainJobReport
			}
			t.Run(w.name+"/"+p.name, func(t *testing.T) {
				a, err := alloc.New(p.cfg)
				require.NoError(t, err)
				defer a.Close()
				s := sampler.New(time.Millisecond, nil)
				s.Start()
				require.NoError(t, w.run(a, &probe{Sampler: s, scale: 0.02}))
				marks := 0
				for _, x := range s.Samples {
					if x.Label != "" {
						marks++
					}
				}
				assert.Greater(t, marks, 1, "a workload marks its moments")
				assert.Zero(t, a.Stats().LiveBlocks, "a workload frees what it allocates")
			})
		}
	}
}

// Every workload runs in a child process too, the way `go run ./bench`
// runs it: its name must resolve there (registration order matters).
func TestWorkloadsInChild(t *testing.T) {
	for _, w := range workloads {
		t.Run(w.name, func(t *testing.T) {
			r := runChild(job{kind: "workload", target: w.name, policy: "threshold", scale: 0.02})
			require.True(t, r.OK, "%s: %s", w.name, r.Error)
		})
	}
}
