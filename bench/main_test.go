package main

import (
	"testing"

	"github.com/brkmap/alloc"
	"github.com/stretchr/testify/require"
)

// Every built-in workload runs to the end under every policy.
func TestWorkloads(t *testing.T) {
	for _, w := range workloads {
		for _, p := range policies {
			t.Run(w.name+"/"+p.name, func(t *testing.T) {
				a, err := alloc.New(p.cfg)
				require.NoError(t, err)
				defer a.Close()
				marks := 0
				require.NoError(t, w.run(a, func(string) { marks++ }))
				require.Positive(t, marks)
				require.Zero(t, a.Stats().LiveBlocks, "a workload frees what it allocates")
			})
		}
	}
}
