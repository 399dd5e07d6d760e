package workloads

import (
	"fmt"
	"os"
	"runtime"
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
// With every > 0 the sampler also samples at the workload's ticks, at
// most once per every; peak is the highest Resident over every sample,
// marked or not.
func runMarks(t *testing.T, w Workload, cfg alloc.Config, every time.Duration) (snaps map[string]stats.Snapshot, times map[string]time.Duration, peak uint64) {
	a, err := alloc.New(cfg)
	require.NoError(t, err)
	defer a.Close()
	snaps = map[string]stats.Snapshot{}
	times = map[string]time.Duration{}
	start := time.Now()
	s0 := a.Stats()
	if every <= 0 {
		every = time.Hour
	}
	s := sampler.New(every, func(s *sampler.Sample) {
		now := a.Stats()
		peak = max(peak, now.Resident)
		if s.Label != "" {
			times[s.Label] = time.Since(start)
			snaps[s.Label] = now.Sub(s0)
		}
	})
	s.Start()
	require.NoError(t, w.Run(a, &Meter{Sampler: s, Scale: 1}))
	require.Zero(t, a.Stats().LiveBlocks, "the workload frees what it allocates")
	return snaps, times, peak
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
		snaps, times, _ := runMarks(t, hugePagesWorkload, p.Cfg, 0)
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
// built-in workloads: the peak resident (the process's high-water mark
// over the run, VmHWM) with HugePagesLarge against off. The figures are a
// measurement (go test ./bench/internal/workloads -run HugePagesPeakResident -v
// prints them; the README quotes them so). The assertion is for a gross
// regression only, such as every large block pre-faulted or every touched
// region page a resident huge page: one run's sampled peak moves with
// where blocks land and when a tick falls, and two runs under PolicyBrk,
// where huge pages for large blocks change nothing at all, differed by
// 1.4x under -race, and on a loaded machine one service run's VmHWM
// read 3.1 MiB with huge pages off against 8.3 MiB on (the Go runtime's
// own growth lands in it too): hence 8 MiB of slack, still far below
// what pre-faulting costs (8 MiB a large block).
func TestHugePagesPeakResident(t *testing.T) {
	for _, w := range List {
		for _, p := range harness.Policies {
			if p.Libc || w.Configure != nil || w.Name == "mmap-wall" {
				// mmap-wall drives the process to vm.max_map_count: there
				// neither the Go runtime (reading smaps for HugeResident
				// grows its heap) nor the race detector can map, and a
				// peak at the wall says nothing about huge pages.
				continue
			}
			// The peak is the kernel's: VmHWM, reset before the run, less
			// the resident set the run started from (the Go heap and the
			// test binary, the same for both settings).
			peak := func(cfg alloc.Config) uint64 {
				runtime.GC()
				require.NoError(t, procfs.ResetPeakRSS())
				before, err := procfs.ReadProcMemory()
				require.NoError(t, err)
				_, _, sampled := runMarks(t, w, cfg, time.Millisecond)
				after, err := procfs.ReadProcMemory()
				require.NoError(t, err)
				return max(sampled, after.PeakRSS-min(before.RSS, after.PeakRSS))
			}
			off := peak(p.Cfg)
			cfg := p.Cfg
			cfg.HugePages = alloc.HugePagesLarge
			large := peak(cfg)
			t.Logf("%s/%s: peak resident off %s, large %s (%.2fx)", w.Name, p.Name, report.FormatBytes(off), report.FormatBytes(large),
				float64(large)/float64(max(off, 1)))
			assert.LessOrEqual(t, float64(large), 2*float64(off)+float64(8<<20), "%s/%s", w.Name, p.Name)
		}
	}
}
