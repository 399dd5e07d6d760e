// Package report presents bench's results: the table on the terminal
// (table.go), and a report folder — an SVG per plot (plot.go),
// results.json, shared-pool.json (the shared pool's lesson, shared.go),
// and index.html (template.go) putting them together with a paragraph per
// lesson (page.go).
package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/brkmap/alloc/bench/internal/harness"
	"github.com/brkmap/alloc/bench/internal/shmbench"
	"github.com/brkmap/alloc/internal/procfs"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
)

// Lesson is a workload as the report shows it.
type Lesson struct {
	Name   string
	Title  string // one line, for the terminal
	Lesson string // a paragraph, for the page
}

// Report is what the HTML page and the plots are made from.
type Report struct {
	Lessons  []Lesson
	Results  []*harness.Result
	TraceDir string
	Traces   bool
	Scale    float64
	When     time.Time

	// Shared is the shared pool's lesson, measured in the same run (nil
	// when it was not: SharedSkipped says why, or it was not asked for).
	Shared        *shmbench.Result
	SharedSkipped string
}

// Group returns the results of one workload (or trace), in policy order.
func (rep *Report) Group(name string) []*harness.Result {
	var g []*harness.Result
	for _, r := range rep.Results {
		if r.Trace == name {
			g = append(g, r)
		}
	}
	return g
}

// TraceResults returns the results of trace replays.
func (rep *Report) TraceResults() []*harness.Result {
	names := map[string]bool{}
	for _, w := range rep.Lessons {
		names[w.Name] = true
	}
	var g []*harness.Result
	for _, r := range rep.Results {
		if !names[r.Trace] {
			g = append(g, r)
		}
	}
	return g
}

// section is one lesson (or trace) of the page.
type section struct {
	Name, Title, Lesson string
	Verdict             template.HTML // the sentence made from the figures
	FragBelowOne        bool
	Rows                []row
	Notes               []string
	Resident, Region    *figure
	Threshold, Mappings *figure
	Breakdown           *figure         // the stacked bars at each policy's peak
	BreakdownTable      *breakdownTable // their figures
	RegionRows          string          // the region plot's row names, for the test (JSON)
}

// row is one line of a section's table.
type row struct {
	Policy, Time, Syscalls, Faults, PeakLive, PeakResident, FinalResident, Frag, Trapped, Score, OpsPerSec string
	OK                                                                                                     bool
	Error                                                                                                  string
}

func rowsOf(results []*harness.Result) []row {
	scores := scoreAll(results)
	var rows []row
	for _, r := range results {
		sc, counted := r.Syscalls()
		x := row{Policy: r.Policy, Time: FormatSeconds(r.Seconds), Syscalls: "n/a", Faults: FormatCount(uint64(r.MinorFaults)),
			PeakLive: FormatBytes(r.PeakLiveBytes), PeakResident: FormatBytes(r.PeakResidentBytes),
			FinalResident: FormatBytes(r.FinalResidentBytes), Frag: fmt.Sprintf("%.2f", r.Fragmentation),
			Trapped: FormatBytes(r.TrappedBytes), Score: "—", OK: r.OK, Error: r.Error,
			OpsPerSec: FormatNumber(r.OpsPerSec)}
		if counted {
			x.Syscalls = FormatCount(uint64(sc))
		}
		if s, ok := scores[r]; ok {
			x.Score = fmt.Sprintf("%.2f", s)
		}
		if r.ResidentFrom == "rss" {
			x.Trapped = "n/a"
		}
		rows = append(rows, x)
	}
	return rows
}

// Write writes the report folder — an SVG file per plot, results.json with
// every figure and time series, and index.html, a page that holds it all
// (the plots inline, so the page needs nothing beside it) — and returns
// the page's path.
func (rep *Report) Write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Plots of an earlier run would look like part of this one.
	for _, pattern := range []string{"*-resident.svg", "*-region.svg", "*-threshold.svg", "*-mappings.svg", "*-breakdown.svg", sharedPlotFile} {
		old, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, f := range old {
			os.Remove(f)
		}
	}
	data, err := json.Marshal(rep.Results)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), data, 0o644); err != nil {
		return "", err
	}
	os.Remove(filepath.Join(dir, SharedFile)) // an earlier run's
	if rep.Shared != nil {
		data, err := json.MarshalIndent(rep.Shared, "", "  ")
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, SharedFile), data, 0o644); err != nil {
			return "", err
		}
	}
	var sections []section
	for _, w := range rep.Lessons {
		s, err := rep.section(dir, w.Name, w.Title, w.Lesson, rep.Group(w.Name), 7*vg.Inch, 3.2*vg.Inch)
		if err != nil {
			return "", err
		}
		sections = append(sections, s)
	}
	var traces []section
	if rep.Traces {
		byTrace := map[string][]*harness.Result{}
		var order []string
		for _, r := range rep.TraceResults() {
			if byTrace[r.Trace] == nil {
				order = append(order, r.Trace)
			}
			byTrace[r.Trace] = append(byTrace[r.Trace], r)
		}
		for _, name := range order {
			s, err := rep.section(dir, name, "", "", byTrace[name], 5.5*vg.Inch, 2.6*vg.Inch)
			if err != nil {
				return "", err
			}
			s.Region = nil // the traces' maps add little; their series are in results.json
			traces = append(traces, s)
		}
	}
	shared := sharedOf(rep.Shared, rep.SharedSkipped)
	if shared != nil && rep.Shared != nil {
		p, err := sharedPlot(rep.Shared)
		if err != nil {
			return "", err
		}
		if p != nil {
			f, err := render(p, dir, sharedPlotFile, 7*vg.Inch, 3.2*vg.Inch)
			if err != nil {
				return "", err
			}
			shared.Plot = &f
		}
	}
	var page bytes.Buffer
	err = pageTemplate.Execute(&page, map[string]any{
		"Sections": sections, "Traces": traces, "TraceDir": rep.TraceDir, "Scale": rep.Scale,
		"When": rep.When.Format(time.RFC1123), "Go": runtime.Version(), "OS": runtime.GOOS + "/" + runtime.GOARCH,
		"CPUs": runtime.NumCPU(), "MaxMapCount": procfs.MaxMapCount(), "Policies": policyDocs(),
		"Parts": partDocs(), "Shared": shared, "SharedFile": SharedFile,
	})
	if err != nil {
		return "", err
	}
	index := filepath.Join(dir, "index.html")
	return index, os.WriteFile(index, page.Bytes(), 0o644)
}

func (rep *Report) section(dir, name, title, lesson string, results []*harness.Result, w, h vg.Length) (section, error) {
	s := section{Name: name, Title: title, Lesson: lesson, Rows: rowsOf(results), Verdict: verdict(results),
		BreakdownTable: breakdownOf(results)}
	for _, r := range results {
		if r.Note != "" {
			s.Notes = append(s.Notes, r.Policy+": "+r.Note)
		}
		s.FragBelowOne = s.FragBelowOne || (r.Fragmentation > 0 && r.Fragmentation < 1)
	}
	plots := []struct {
		make func() (*plot.Plot, error)
		file string
		dst  **figure
	}{
		{func() (*plot.Plot, error) { return residentPlot(name, results) }, "-resident.svg", &s.Resident},
		{func() (*plot.Plot, error) { return breakdownPlot(name, results) }, "-breakdown.svg", &s.Breakdown},
		{func() (*plot.Plot, error) { return thresholdPlot(name, results) }, "-threshold.svg", &s.Threshold},
		{func() (*plot.Plot, error) { return mappingsPlot(name, results, procfs.MaxMapCount()) }, "-mappings.svg", &s.Mappings},
	}
	for _, pl := range plots {
		p, err := pl.make()
		if err != nil {
			return s, err
		}
		if p == nil {
			continue
		}
		pw, ph := w, h
		if pl.dst == &s.Breakdown {
			// full width, for the bars and the legend beside them, and a
			// legend row for each part
			pw, ph = max(w, 7*vg.Inch), max(h, 3.6*vg.Inch)
		}
		f, err := render(p, dir, name+pl.file, pw, ph)
		if err != nil {
			return s, err
		}
		*pl.dst = &f
	}
	rows := regionRows(results)
	if rp := regionPlot(name, rows); rp != nil {
		f, err := render(rp, dir, name+"-region.svg", w, vg.Length(1.5+0.22*float64(len(rows)))*vg.Inch)
		if err != nil {
			return s, err
		}
		s.Region = &f
		var names []string
		for _, r := range rows {
			names = append(names, r.Name)
		}
		b, _ := json.Marshal(names)
		s.RegionRows = string(b)
	}
	return s, nil
}

// policyDocs returns each policy's name and description, for the page.
func policyDocs() []struct{ Name, About string } {
	var d []struct{ Name, About string }
	for _, p := range harness.Policies {
		d = append(d, struct{ Name, About string }{p.Name, p.About})
	}
	return d
}
