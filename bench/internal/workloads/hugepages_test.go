package workloads

import (
	"fmt"
	"os"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/internal/harness"
	"github.com/brkmap/alloc/bench/internal/report"
	"github.com/brkmap/alloc/bench/internal/sampler"
	"github.com/brkmap/alloc/internal/procfs"
	"github.com/brkmap/alloc/stats"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runMarks runs w on a fresh allocator made with cfg and returns the
// snapshot (relative to the start) at each of its marks, and their times.
func runMarks(t *testing.T, w Workload, cfg alloc.Config) (map[string]stats.Snapshot, map[string]time.Duration) {
	a, err := alloc.New(cfg)
	require.NoError(t, err)
	defer a.Close()
	snaps := map[string]stats.Snapshot{}
	times := map[string]time.Duration{}
	start := time.Now()
	s0 := a.Stats()
	s := sampler.New(time.Hour, func(s *sampler.Sample) {
		if s.Label != "" {
			times[s.Label] = time.Since(start)
			snaps[s.Label] = a.Stats().Sub(s0)
		}
	})
	s.Start()
	require.NoError(t, w.Run(a, &Meter{Sampler: s, Scale: 1}))
	require.Zero(t, a.Stats().LiveBlocks, "the workload frees what it allocates")
	return snaps, times
}

// The lesson's claims hold, and its figures are printed (-v).
func TestHugePagesLesson(t *testing.T) {
	mode, _ := procfs.ReadTHP()
	res := map[string]map[string]stats.Snapshot{}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	hugePagesWorkload := hugePagesLessons()[0]
	t.Logf("%s: %s (THP %s)", hugePagesWorkload.Name, hugePagesWorkload.Lesson, mode)
	fmt.Fprintln(tw, "policy\tmoment\tresident\tin huge pages\tarena\tsyscalls\tfaults\ttime\t")
	for _, p := range hugePagesPolicies {
		snaps, times := runMarks(t, hugePagesWorkload, p.Cfg)
		res[p.Name] = snaps
		for _, m := range []string{"16 buffers", "sparse", "freed", "trimmed"} {
			s := snaps[m]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%v\t\n", p.Name, m, report.FormatBytes(s.Resident), report.FormatBytes(s.HugeResident),
				report.FormatBytes(s.ArenaBytes), s.Syscalls(), s.MinorFaults, times[m].Round(time.Microsecond))
		}
	}
	tw.Flush()

	for _, p := range hugePagesPolicies {
		assert.Less(t, res[p.Name]["trimmed"].Resident, uint64(1<<20), "%s: Trim gives everything back", p.Name)
	}
	off, large, all := res["huge-off"], res["huge-large"], res["huge-all"]
	assert.GreaterOrEqual(t, off["16 buffers"].MinorFaults, uint64(16*2048), "off: a fault per 4 KiB")
	assert.Equal(t, off["sparse"].Resident, large["sparse"].Resident, "large blocks only: the region is untouched")
	if !mode.Enabled() {
		t.Skipf("THP is %q here: huge pages are not in effect", mode)
	}
	assert.Less(t, large["16 buffers"].MinorFaults, uint64(16*2048/8), "large: a fault per 2 MiB")
	assert.GreaterOrEqual(t, all["sparse"].Resident, 4*off["sparse"].Resident, "all: sparse touches cost whole huge pages")
}

// Huge pages for large blocks only cost no resident memory on the
// built-in workloads: peak resident within 1.1x of huge pages off.
func TestHugePagesPeakResident(t *testing.T) {
	for _, w := range List {
		for _, p := range harness.Policies {
			if p.Libc || w.Configure != nil {
				continue
			}
			peak := func(cfg alloc.Config) uint64 {
				snaps, _ := runMarks(t, w, cfg)
				var m uint64
				for _, s := range snaps {
					m = max(m, s.Resident)
				}
				return m
			}
			off := peak(p.Cfg)
			cfg := p.Cfg
			cfg.HugePages = alloc.HugePagesLarge
			large := peak(cfg)
			t.Logf("%s/%s: peak resident off %s, large %s", w.Name, p.Name, report.FormatBytes(off), report.FormatBytes(large))
			// The target is 1.1x, a measurement (this test prints it; the
			// figures are 1.00 on most rows). One run's peak, sampled at the
			// workload's named moments, moves with where blocks land (which
			// P's cache a goroutine meets, the race detector's scheduling):
			// under PolicyBrk, where huge pages for large blocks change
			// nothing at all, two runs differed by 1.4x under -race. So the
			// test only catches a gross regression, such as every touched
			// region page becoming a resident huge page.
			assert.LessOrEqual(t, float64(large), 2*float64(off)+float64(2<<20), "%s/%s", w.Name, p.Name)
		}
	}
}
