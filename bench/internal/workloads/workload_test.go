package workloads

import (
	"testing"
	"time"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/internal/harness"
	"github.com/brkmap/alloc/bench/internal/sampler"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every built-in workload runs to the end under every policy of this
// allocator (shrunk), marks its moments, and frees what it allocates.
func TestWorkloads(t *testing.T) {
	for _, w := range List {
		for _, p := range harness.Policies {
			if p.Libc {
				continue // glibc is run in children, by TestMainJobReport
			}
			if raceEnabled && w.Name == "mmap-wall" && p.Name == "mmap" {
				continue // at the map-count wall the race detector has no mappings left (race_race_test.go)
			}
			t.Run(w.Name+"/"+p.Name, func(t *testing.T) {
				a, err := alloc.New(p.Cfg)
				require.NoError(t, err)
				defer a.Close()
				s := sampler.New(time.Millisecond, nil)
				s.Start()
				require.NoError(t, w.Run(a, &Meter{Sampler: s, Scale: 0.02}))
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
