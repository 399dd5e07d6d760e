package report

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"

	"github.com/brkmap/alloc/bench/internal/harness"
)

// PrintTable prints results as a table. With a group name (a workload)
// the first column is the policy; otherwise trace and policy.
func PrintTable(w io.Writer, group string, results []*harness.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "policy\ttime\tsyscalls\tfaults\tpeak live\tpeak resident\tfinal resident\tfrag\ttrapped\tscore\t"
	if group == "" {
		head = "trace\t" + head + "ops/s\t"
	}
	fmt.Fprintln(tw, head)
	scores := scoreAll(results)
	var notes []string
	for _, r := range results {
		if group == "" {
			fmt.Fprintf(tw, "%s\t", r.Trace)
		}
		if r.Error != "" && r.Seconds == 0 {
			fmt.Fprintf(tw, "%s\tfailed: %s\t\n", r.Policy, r.Error)
			continue
		}
		sc, counted := r.Syscalls()
		sys := "n/a"
		if counted {
			sys = FormatCount(uint64(sc))
		}
		score := "—"
		if s, ok := scores[r]; ok {
			score = fmt.Sprintf("%.2f", s)
		}
		ok := ""
		if !r.OK {
			ok = " FAILED"
		}
		trapped := FormatBytes(r.TrappedBytes)
		if r.ResidentFrom == "rss" {
			trapped = "n/a" // glibc's free pages cannot be seen from here
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t", r.Policy, ok, FormatSeconds(r.Seconds), sys, FormatCount(uint64(r.MinorFaults)),
			FormatBytes(r.PeakLiveBytes), FormatBytes(r.PeakResidentBytes), FormatBytes(r.FinalResidentBytes), r.Fragmentation,
			trapped, score)
		if group == "" {
			fmt.Fprintf(tw, "%s\t", FormatNumber(r.OpsPerSec))
		}
		fmt.Fprintln(tw)
		if r.Note != "" {
			notes = append(notes, r.Policy+": "+r.Note)
		}
		if r.Error != "" {
			notes = append(notes, r.Policy+" error: "+r.Error)
		}
	}
	tw.Flush()
	for _, n := range notes {
		fmt.Fprintln(w, "  "+n)
	}
}

// scoreAll gives each result of this allocator a combined score within its
// group (same trace or workload): the geometric mean of its peak resident
// and its system calls, each divided by the best of the group. 1 is best
// on both. Time is left out: one run's time on a shared machine is noise
// enough to flip ranks between identical runs, and the table shows it
// beside. glibc is left out: its system calls cannot be counted here.
func scoreAll(results []*harness.Result) map[*harness.Result]float64 {
	type best struct{ res, sys float64 }
	bests := map[string]*best{}
	for _, r := range results {
		sc, ok := r.Syscalls()
		if !ok || !r.OK {
			continue
		}
		b := bests[r.Trace]
		if b == nil {
			b = &best{math.Inf(1), math.Inf(1)}
			bests[r.Trace] = b
		}
		b.res = min(b.res, float64(r.PeakResidentBytes))
		b.sys = min(b.sys, float64(sc))
	}
	scores := map[*harness.Result]float64{}
	for _, r := range results {
		sc, ok := r.Syscalls()
		b := bests[r.Trace]
		if !ok || !r.OK || b == nil {
			continue
		}
		// Small floors (a page, one call) keep a zero from making every
		// other figure infinitely worse.
		x := (float64(r.PeakResidentBytes) + 4096) / (b.res + 4096)
		z := (float64(sc) + 1) / (b.sys + 1)
		scores[r] = math.Sqrt(x * z)
	}
	return scores
}

func FormatBytes(n uint64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func FormatSeconds(s float64) string {
	switch {
	case s >= 1:
		return fmt.Sprintf("%.2f s", s)
	case s >= 1e-3:
		return fmt.Sprintf("%.2f ms", s*1e3)
	}
	return fmt.Sprintf("%.0f µs", s*1e6)
}

// FormatCount formats a count with its thousands grouped: 12,844.
func FormatCount(n uint64) string { return groupThousands(int64(n)) }
