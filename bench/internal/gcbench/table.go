package gcbench

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"text/tabwriter"
)

// PrintTable prints the medians of each store side by side, with the
// ratio off-heap / heap.
func PrintTable(w io.Writer, cfg Config, runs int, results []Result) error {
	by := map[string][]Result{}
	for _, r := range results {
		by[r.Store] = append(by[r.Store], r)
	}
	fmt.Fprintf(w, "gc: %d entries (keys 8–32 B, values 32 B–1 KiB, mean ≈300 B); %d ops: %.0f%% get, %.0f%% set, %.0f%% delete,\n",
		cfg.Entries, cfg.Ops, 100*cfg.Get, 100*cfg.Set, 100*(1-cfg.Get-cfg.Set))
	fmt.Fprintf(w, "    each with %d B of request garbage; medians of %d runs, each store in its own process; GOMAXPROCS=%d\n\n",
		cfg.Garbage, runs, runtime.GOMAXPROCS(0))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "metric\theap\toff-heap\toff/heap\t")
	rows := []struct {
		name string
		f    func(Result) float64
		fmt  func(float64) string
	}{
		{"get ns/op", func(r Result) float64 { return r.GetNs }, fmtF(1)},
		{"set ns/op", func(r Result) float64 { return r.SetNs }, fmtF(1)},
		{"delete ns/op", func(r Result) float64 { return r.DeleteNs }, fmtF(1)},
		{"load s", func(r Result) float64 { return r.LoadSeconds }, fmtF(2)},
		{"gc cpu fraction", func(r Result) float64 { return r.GCFraction }, fmtF(4)},
		{"gc cycles", func(r Result) float64 { return float64(r.GCCycles) }, fmtF(0)},
		{"gc pauses", func(r Result) float64 { return float64(r.Pauses) }, fmtF(0)},
		{"pause p50 µs", func(r Result) float64 { return r.PauseP50 * 1e6 }, fmtF(1)},
		{"pause p99 µs", func(r Result) float64 { return r.PauseP99 * 1e6 }, fmtF(1)},
		{"pause max µs", func(r Result) float64 { return r.PauseMax * 1e6 }, fmtF(1)},
		{"go heap objects MiB", func(r Result) float64 { return float64(r.HeapObjects) / (1 << 20) }, fmtF(0)},
		{"go heap live MiB", func(r Result) float64 { return float64(r.HeapLive) / (1 << 20) }, fmtF(0)},
		{"off-heap resident MiB", func(r Result) float64 { return float64(r.OffHeap) / (1 << 20) }, fmtF(0)},
		{"process RSS MiB", func(r Result) float64 { return float64(r.RSS) / (1 << 20) }, fmtF(0)},
		{"peak RSS MiB", func(r Result) float64 { return float64(r.PeakRSS) / (1 << 20) }, fmtF(0)},
	}
	for _, row := range rows {
		h, o := median(by["heap"], row.f), median(by["offheap"], row.f)
		ratio := "—"
		if h != 0 {
			ratio = fmt.Sprintf("%.3f", o/h)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", row.name, row.fmt(h), row.fmt(o), ratio)
	}
	return tw.Flush()
}

func fmtF(prec int) func(float64) string {
	return func(v float64) string { return strconv.FormatFloat(v, 'f', prec, 64) }
}

func median(rs []Result, f func(Result) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
