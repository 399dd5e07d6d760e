// Package cachebench is `go run ./bench cache`: the cache package against
// fastcache, freecache, bigcache, ristretto and a map behind an RWMutex,
// each store on each workload in a child process of its own (so no
// store's heap, RSS or GC pacing bleeds into another's).
//
//	go run ./bench cache [-stores cache,fastcache,...] [-workloads uniform,zipf,shift,ttl]
//	    [-entries 1000000[,10000000]] [-ops 400000] [-goroutines 1,2,8,32] [-runs 3] [-json FILE]
//	    [-out bench-report-cache]
//
// Workloads (keys 8–32 B, values 32 B–1 KiB):
//
//   - uniform, zipf: the keys are filled, then for each goroutine count a
//     cache-aside get phase (a miss sets the value) and a set phase, of
//     -ops operations each, keys uniform or Zipf(0.99); the byte budget
//     holds half the keys' bytes, so every store is full and evicting.
//   - shift: issue 14's calcification test — 64 MiB filled with 1.5M
//     32-byte values, then 150,000 values of 1 KiB; the share of the last
//     written large keys still there.
//   - ttl: uniform on a quarter of the keys, every entry living one second
//     (bigcache: its LifeWindow; fastcache has no expiry and sits out);
//     stale hits (values returned after their TTL) are counted.
//
// Each child prints one JSON result; the parent prints a table of medians
// over -runs, writes every result and the medians to -json, and writes a
// report folder (-out): index.html with the table and plots of ns/op by
// goroutine count per store, hit ratio, RSS per entry and the shift
// workload's kept share, the plots as SVG files, and results.json. The store
// named "cache" is this module's. Budgets below 32 MiB are not fair to
// the others: fastcache rounds its budget up to 32 MiB. ristretto and the
// map count only key and value bytes against theirs.
package cachebench

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/brkmap/alloc/bench/internal/child"
)

// ChildKind is the child.Job kind of one (store, workload) run: Target
// names the store, Config carries the spec.
const ChildKind = "cache"

// ServeChild is the child's side of a run: it runs the spec j carries.
func ServeChild(j child.Job) (any, bool, error) {
	var sp spec
	if err := json.Unmarshal(j.Config, &sp); err != nil {
		return nil, false, fmt.Errorf("cache: child config: %w", err)
	}
	if sp.Store != j.Target {
		return nil, false, fmt.Errorf("cache: child: job for store %q carries a spec for %q: %w", j.Target, sp.Store, errBadJob)
	}
	return run(sp), true, nil
}

// errBadJob: a child job that does not hold together.
var errBadJob = errors.New("inconsistent job")

// Main runs the command (args after "cache") and returns the exit code.
func Main(args []string) int {
	if err := parent(args, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench cache:", err)
		return 1
	}
	return 0
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		out = append(out, n)
	}
	return out, nil
}

func parent(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("cache", flag.ContinueOnError)
	stores := fs.String("stores", strings.Join(storeNames, ","), "stores to run")
	workloads := fs.String("workloads", "uniform,zipf,shift,ttl", "workloads to run")
	entriesFlag := fs.String("entries", "1000000", "key counts (add 10000000 for the 10M runs: ~3 GiB per child, minutes each on 2 cores)")
	ops := fs.Int("ops", 400_000, "operations per phase (each goroutine count, get and set)")
	gFlag := fs.String("goroutines", "1,2,8,32", "goroutine counts")
	runs := fs.Int("runs", 1, "runs of each (store, workload); the table shows medians")
	jsonOut := fs.String("json", "", "write every result and the medians to this file")
	outDir := fs.String("out", "bench-report-cache", "folder to write the report to (index.html with the plots, SVGs, results.json); empty: none")
	if err := fs.Parse(args); err != nil {
		return err
	}
	entries, err := ints(*entriesFlag)
	if err != nil {
		return err
	}
	gs, err := ints(*gFlag)
	if err != nil {
		return err
	}
	var all, medians []result
	for _, w := range strings.Split(*workloads, ",") {
		ns := entries
		if w == "shift" {
			ns = []int{1_500_000} // fixed by the workload
		}
		for _, n := range ns {
			for _, st := range strings.Split(*stores, ",") {
				var rs []result
				for r := range *runs {
					sp := spec{Store: st, Workload: w, Entries: n, Ops: *ops, Goroutines: gs, Seed: uint64(r + 1)}
					res, err := runChild(sp)
					if err != nil {
						return fmt.Errorf("%s on %s/%d: %w", st, w, n, err)
					}
					fmt.Fprintf(os.Stderr, "%-9s %-7s %8d run %d: %.1fs\n", st, w, n, r+1, res.Seconds)
					rs = append(rs, res)
				}
				all = append(all, rs...)
				medians = append(medians, median(rs))
			}
		}
	}
	table(out, medians, gs)
	b, err := json.MarshalIndent(struct {
		Goroutines []int    `json:"goroutines"`
		Ops        int      `json:"ops_per_phase"`
		Runs       []result `json:"runs"`
		Medians    []result `json:"medians"`
	}{gs, *ops, all, medians}, "", "  ")
	if err != nil {
		return err
	}
	if *jsonOut != "" {
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	if *outDir != "" {
		index, err := writeReport(*outDir, commandLine(args), medians, gs, *ops, *runs, b)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		fmt.Fprintf(out, "\nreport: %s\n", index)
	}
	return nil
}

// runChild runs sp in a fresh child process (bench's child protocol: the
// job in the environment, served by ServeChild) and returns its result.
func runChild(sp spec) (result, error) {
	b, err := json.Marshal(sp)
	if err != nil {
		return result{}, err
	}
	var res result
	if err := child.Run(child.Job{Kind: ChildKind, Target: sp.Store, Config: b}, &res); err != nil {
		return result{}, err
	}
	return res, nil
}

// median takes each number's median over runs of one (store, workload).
func median(rs []result) result {
	m := rs[0]
	med := func(get func(r result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	m.GetNs, m.SetNs = map[string]float64{}, map[string]float64{}
	for g := range rs[0].GetNs {
		m.GetNs[g] = med(func(r result) float64 { return r.GetNs[g] })
	}
	for g := range rs[0].SetNs {
		m.SetNs[g] = med(func(r result) float64 { return r.SetNs[g] })
	}
	m.HitRatio = med(func(r result) float64 { return r.HitRatio })
	m.GCFraction = med(func(r result) float64 { return r.GCFraction })
	m.GoHeap = uint64(med(func(r result) float64 { return float64(r.GoHeap) }))
	m.RSS = uint64(med(func(r result) float64 { return float64(r.RSS) }))
	m.Held = int(med(func(r result) float64 { return float64(r.Held) }))
	m.RSSEntry = med(func(r result) float64 { return r.RSSEntry })
	m.Kept32K = med(func(r result) float64 { return r.Kept32K })
	m.KeptFit = med(func(r result) float64 { return r.KeptFit })
	m.Stale = uint64(med(func(r result) float64 { return float64(r.Stale) }))
	m.Seconds = med(func(r result) float64 { return r.Seconds })
	return m
}

func table(out io.Writer, rs []result, gs []int) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "workload\tentries\tstore\t"
	for _, g := range gs {
		head += fmt.Sprintf("get g=%d\t", g)
	}
	for _, g := range gs {
		head += fmt.Sprintf("set g=%d\t", g)
	}
	fmt.Fprintln(tw, head+"hit\tGC CPU\tGo heap MiB\tRSS MiB\tB/entry\tkept 32K\tstale\t")
	for _, r := range rs {
		line := fmt.Sprintf("%s\t%d\t%s\t", r.Workload, r.Entries, r.Store)
		if r.Skipped != "" {
			fmt.Fprintln(tw, line+strings.Repeat("-\t", 2*len(gs))+"skipped: "+r.Skipped+"\t\t\t\t\t\t\t")
			continue
		}
		for _, g := range gs {
			line += ns(r.GetNs[strconv.Itoa(g)])
		}
		for _, g := range gs {
			line += ns(r.SetNs[strconv.Itoa(g)])
		}
		line += fmt.Sprintf("%.3f\t%.3f\t%.1f\t%.0f\t%.0f\t", r.HitRatio, r.GCFraction,
			float64(r.GoHeap)/(1<<20), float64(r.RSS)/(1<<20), r.RSSEntry)
		if r.Workload == "shift" {
			line += fmt.Sprintf("%.3f\t", r.Kept32K)
		} else {
			line += "\t"
		}
		if r.Workload == "ttl" {
			line += fmt.Sprintf("%d\t", r.Stale)
		} else {
			line += "\t"
		}
		fmt.Fprintln(tw, line)
	}
	_ = tw.Flush()
}

func ns(v float64) string {
	if v == 0 {
		return "-\t"
	}
	return fmt.Sprintf("%.0f\t", v)
}
