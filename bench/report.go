package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/brkmap/alloc/stats"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// run is the main job (`go run ./bench`): every built-in workload, and
// every trace of -traces when the folder exists, under every policy; a
// table on the terminal and a report folder.
func run(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	out := fs.String("out", "bench-report", "folder to write the report to (plots, index.html, results.json)")
	traces := fs.String("traces", "../shared/traces", "folder of malloc-lab traces (*.rep) to replay too; skipped when it does not exist")
	pol := fs.String("policy", "all", fmt.Sprintf("policy: one of %v", policyNames()))
	only := fs.String("workloads", "", "comma-separated workloads to run (default: all)")
	scale := fs.Float64("scale", 1, "shrink (or grow) every workload by this factor")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (replay traces with `bench replay FILE.rep…`)", fs.Args())
	}
	if *scale <= 0 {
		return fmt.Errorf("-scale %v: must be positive", *scale)
	}
	ps, err := selectPolicies(*pol)
	if err != nil {
		return err
	}
	ps = dropLibcIfMissing(ps)
	ws := workloads
	if *only != "" {
		ws = nil
		for _, name := range strings.Split(*only, ",") {
			w, ok := findWorkload(strings.TrimSpace(name))
			if !ok {
				return fmt.Errorf("unknown workload %q", name)
			}
			ws = append(ws, w)
		}
	}
	var files []string
	if *traces != "" {
		files, _ = filepath.Glob(filepath.Join(*traces, "*.rep"))
	}

	var jobs []job
	for _, w := range ws {
		for _, p := range ps {
			jobs = append(jobs, job{kind: "workload", target: w.name, policy: p.name, scale: *scale})
		}
	}
	for _, f := range files {
		for _, p := range ps {
			jobs = append(jobs, job{kind: "replay", target: f, policy: p.name})
		}
	}
	results := runJobs(jobs, func(*result) {})
	rep := &report{Workloads: ws, Results: results, TraceDir: *traces, Traces: len(files) > 0,
		Scale: *scale, When: time.Now()}

	w := os.Stdout
	for _, wl := range ws {
		fmt.Fprintf(w, "\n%s: %s\n", wl.name, wl.title)
		printTable(w, wl.name, rep.group(wl.name))
	}
	if len(files) > 0 {
		fmt.Fprintf(w, "\ntraces from %s (replayed with every byte checked):\n", *traces)
		printTable(w, "", rep.traceResults())
	}
	index, err := rep.write(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nreport: %s\n", index)
	return failures(results)
}

// printTable prints results as a table. With a group name (a workload)
// the first column is the policy; otherwise trace and policy.
func printTable(w io.Writer, group string, results []*result) {
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
		sc, counted := r.syscalls()
		sys := "n/a"
		if counted {
			sys = fmt.Sprint(sc)
		}
		score := "—"
		if s, ok := scores[r]; ok {
			score = fmt.Sprintf("%.2f", s)
		}
		ok := ""
		if !r.OK {
			ok = " FAILED"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%d\t%s\t%s\t%s\t%.2f\t%s\t%s\t", r.Policy, ok, dur(r.Seconds), sys, r.MinorFaults,
			size(r.PeakLiveBytes), size(r.PeakResidentBytes), size(r.FinalResidentBytes), r.Fragmentation,
			size(r.TrappedBytes), score)
		if group == "" {
			fmt.Fprintf(tw, "%.3g\t", r.OpsPerSec)
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
// group (same trace or workload): the geometric mean of its peak resident,
// time and system calls, each divided by the best of the group. 1 is best
// on all three. glibc is left out: its system calls cannot be counted here.
func scoreAll(results []*result) map[*result]float64 {
	type best struct{ res, t, sys float64 }
	bests := map[string]*best{}
	for _, r := range results {
		sc, ok := r.syscalls()
		if !ok || !r.OK {
			continue
		}
		b := bests[r.Trace]
		if b == nil {
			b = &best{math.Inf(1), math.Inf(1), math.Inf(1)}
			bests[r.Trace] = b
		}
		b.res = min(b.res, float64(r.PeakResidentBytes))
		b.t = min(b.t, r.Seconds)
		b.sys = min(b.sys, float64(sc))
	}
	scores := map[*result]float64{}
	for _, r := range results {
		sc, ok := r.syscalls()
		b := bests[r.Trace]
		if !ok || !r.OK || b == nil {
			continue
		}
		// Small floors (a page, a microsecond, one call) keep a zero from
		// making every other figure infinitely worse.
		x := (float64(r.PeakResidentBytes) + 4096) / (b.res + 4096)
		y := (r.Seconds + 1e-6) / (b.t + 1e-6)
		z := (float64(sc) + 1) / (b.sys + 1)
		scores[r] = math.Cbrt(x * y * z)
	}
	return scores
}

func size(n uint64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func dur(s float64) string {
	switch {
	case s >= 1:
		return fmt.Sprintf("%.2f s", s)
	case s >= 1e-3:
		return fmt.Sprintf("%.2f ms", s*1e3)
	}
	return fmt.Sprintf("%.0f µs", s*1e6)
}

// report is what the HTML page and the plots are made from.
type report struct {
	Workloads []workload
	Results   []*result
	TraceDir  string
	Traces    bool
	Scale     float64
	When      time.Time
}

// group returns the results of one workload (or trace), in policy order.
func (rep *report) group(name string) []*result {
	var g []*result
	for _, r := range rep.Results {
		if r.Trace == name {
			g = append(g, r)
		}
	}
	return g
}

// traceResults returns the results of trace replays.
func (rep *report) traceResults() []*result {
	names := map[string]bool{}
	for _, w := range rep.Workloads {
		names[w.name] = true
	}
	var g []*result
	for _, r := range rep.Results {
		if !names[r.Trace] {
			g = append(g, r)
		}
	}
	return g
}

// policyColor gives each policy one colour in every plot.
var policyColor = map[string]color.RGBA{
	"threshold": {0x1f, 0x77, 0xb4, 0xff}, // blue
	"dynamic":   {0x2c, 0xa0, 0x2c, 0xff}, // green
	"brk":       {0xff, 0x7f, 0x0e, 0xff}, // orange
	"mmap":      {0x94, 0x67, 0xbd, 0xff}, // purple
	"libc":      {0x30, 0x30, 0x30, 0xff}, // near black
}

// stateColor colours the pages of a region map.
var stateColor = [...]color.RGBA{
	stats.PageLive:     {0x1f, 0x77, 0xb4, 0xff}, // blue
	stats.PageTrapped:  {0xd6, 0x27, 0x28, 0xff}, // red
	stats.PageReleased: {0xd0, 0xd0, 0xd0, 0xff}, // light grey
}

// residentPlot draws resident memory over time, one line per policy.
func residentPlot(title string, results []*result) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title + ": resident memory over time"
	p.X.Label.Text = "progress: % of each policy's own run time (sampling excluded; the legend gives the time)"
	p.Y.Label.Text = "resident (MiB)"
	p.Legend.Top = true
	p.Legend.Left = false
	p.Add(plotter.NewGrid())
	top := 0.0
	for _, r := range results {
		if len(r.Series) == 0 {
			continue
		}
		pts := make(plotter.XYs, len(r.Series))
		total := float64(r.Series[len(r.Series)-1].At)
		for i, s := range r.Series {
			pts[i].X = 100 * float64(s.At) / max(total, 1)
			pts[i].Y = float64(s.Resident) / (1 << 20)
			top = max(top, pts[i].Y)
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		l.Color = policyColor[r.Policy]
		l.Width = vg.Points(1.5)
		p.Add(l)
		name := r.Policy + " (" + dur(r.Seconds)
		if r.ResidentFrom == "rss" {
			name += ", RSS growth"
		}
		name += ")"
		p.Legend.Add(name, l)
	}
	p.X.Min, p.X.Max = 0, 100
	p.Y.Min, p.Y.Max = 0, max(top*1.6, 0.01) // room for the legend above the lines
	return p, nil
}

// mapRows draws region maps as horizontal strips, one row each: every
// extent a rectangle coloured by its state, the x axis in MiB from the
// region's base.
type mapRows []stats.RegionMap

func (m mapRows) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	for i, rm := range m {
		y0, y1 := trY(float64(i)-0.38), trY(float64(i)+0.38)
		for _, e := range rm.Extents {
			x0, x1 := trX(float64(e.Offset)/(1<<20)), trX(float64(e.Offset+e.Len)/(1<<20))
			c.FillPolygon(stateColor[e.State], []vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}})
		}
	}
}

func (m mapRows) DataRange() (xmin, xmax, ymin, ymax float64) {
	for _, rm := range m {
		xmax = max(xmax, float64(rm.Break)/(1<<20))
	}
	return 0, max(xmax, 1e-3), -0.5, float64(len(m)) + 1.5 // room for the legend
}

// usesRegion reports whether r has region maps with anything in them.
func usesRegion(r *result) bool {
	if r.PeakMap == nil {
		return false
	}
	for _, m := range r.Moments {
		if m.Map.Break > 0 {
			return true
		}
	}
	return r.PeakMap.Break > 0
}

// swatch is a legend entry: a filled square.
type swatch color.RGBA

func (s swatch) Thumbnail(c *draw.Canvas) {
	r := c.Rectangle
	c.FillPolygon(color.RGBA(s), []vg.Point{r.Min, {X: r.Max.X, Y: r.Min.Y}, r.Max, {X: r.Min.X, Y: r.Max.Y}})
}

// regionPlot draws the region maps of a workload's results at their peak
// and at the end, or returns nil when no policy used the region.
func regionPlot(title string, results []*result) *plot.Plot {
	var rows mapRows
	var names []string
	for i := len(results) - 1; i >= 0; i-- { // the first policy on top
		r := results[i]
		if !usesRegion(r) {
			continue
		}
		for j := len(r.Moments) - 1; j >= 0; j-- {
			rows = append(rows, r.Moments[j].Map)
			names = append(names, r.Policy+": "+r.Moments[j].Label)
		}
		rows = append(rows, *r.PeakMap)
		names = append(names, r.Policy+": peak")
	}
	if len(rows) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = title + ": the region, base to break, at the peak and at each named moment"
	p.X.Label.Text = "offset from the region's base (MiB)"
	p.Add(rows)
	p.NominalY(append(names, "", "")...)
	p.Legend.Top = true
	for st := stats.PageLive; st <= stats.PageReleased; st++ {
		label := map[stats.PageState]string{stats.PageLive: "live", stats.PageTrapped: "free, resident (trapped)",
			stats.PageReleased: "free, released"}[st]
		p.Legend.Add(label, swatch(stateColor[st]))
	}
	return p
}

// figure is one plot of the page: its file and its inline SVG.
type figure struct {
	File string
	SVG  template.HTML
}

// render writes p as an SVG file in dir and returns it for the page.
func render(p *plot.Plot, dir, file string, w, h vg.Length) (figure, error) {
	wt, err := p.WriterTo(w, h, "svg")
	if err != nil {
		return figure{}, err
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return figure{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, file), buf.Bytes(), 0o644); err != nil {
		return figure{}, err
	}
	svg := buf.String()
	i := strings.Index(svg, "<svg")
	if i < 0 {
		return figure{}, errors.New("plot: no <svg> element in the output")
	}
	svg = `<svg class="plot" data-file="` + template.HTMLEscapeString(file) + `"` + svg[i+len("<svg"):]
	return figure{File: file, SVG: template.HTML(svg)}, nil
}

// section is one lesson (or trace) of the page.
type section struct {
	Name, Title, Lesson string
	Rows                []row
	Notes               []string
	Resident, Region    *figure
}

// row is one line of a section's table.
type row struct {
	Policy, Time, Syscalls, Faults, PeakLive, PeakResident, FinalResident, Frag, Trapped, Score, OpsPerSec string
	OK                                                                                                     bool
	Error                                                                                                  string
}

func rowsOf(results []*result) []row {
	scores := scoreAll(results)
	var rows []row
	for _, r := range results {
		sc, counted := r.syscalls()
		x := row{Policy: r.Policy, Time: dur(r.Seconds), Syscalls: "n/a", Faults: fmt.Sprint(r.MinorFaults),
			PeakLive: size(r.PeakLiveBytes), PeakResident: size(r.PeakResidentBytes),
			FinalResident: size(r.FinalResidentBytes), Frag: fmt.Sprintf("%.2f", r.Fragmentation),
			Trapped: size(r.TrappedBytes), Score: "—", OK: r.OK, Error: r.Error,
			OpsPerSec: fmt.Sprintf("%.3g", r.OpsPerSec)}
		if counted {
			x.Syscalls = fmt.Sprint(sc)
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

// write writes the report folder — an SVG file per plot, results.json with
// every figure and time series, and index.html, a page that holds it all
// (the plots inline, so the page needs nothing beside it) — and returns
// the page's path.
func (rep *report) write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Plots of an earlier run would look like part of this one.
	for _, pattern := range []string{"*-resident.svg", "*-region.svg"} {
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
	var sections []section
	for _, w := range rep.Workloads {
		s, err := rep.section(dir, w.name, w.title, w.lesson, rep.group(w.name), 7*vg.Inch, 3.2*vg.Inch)
		if err != nil {
			return "", err
		}
		sections = append(sections, s)
	}
	var traces []section
	if rep.Traces {
		byTrace := map[string][]*result{}
		var order []string
		for _, r := range rep.traceResults() {
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
	var page bytes.Buffer
	err = pageTemplate.Execute(&page, map[string]any{
		"Sections": sections, "Traces": traces, "TraceDir": rep.TraceDir, "Scale": rep.Scale,
		"When": rep.When.Format(time.RFC1123), "Go": runtime.Version(), "OS": runtime.GOOS + "/" + runtime.GOARCH,
		"CPUs": runtime.NumCPU(), "MaxMapCount": maxMapCount(), "Policies": policyDocs(),
	})
	if err != nil {
		return "", err
	}
	index := filepath.Join(dir, "index.html")
	return index, os.WriteFile(index, page.Bytes(), 0o644)
}

func (rep *report) section(dir, name, title, lesson string, results []*result, w, h vg.Length) (section, error) {
	s := section{Name: name, Title: title, Lesson: lesson, Rows: rowsOf(results)}
	for _, r := range results {
		if r.Note != "" {
			s.Notes = append(s.Notes, r.Policy+": "+r.Note)
		}
	}
	p, err := residentPlot(name, results)
	if err != nil {
		return s, err
	}
	f, err := render(p, dir, name+"-resident.svg", w, h)
	if err != nil {
		return s, err
	}
	s.Resident = &f
	if rp := regionPlot(name, results); rp != nil {
		rows := 0
		for _, r := range results {
			if usesRegion(r) {
				rows += 1 + len(r.Moments)
			}
		}
		f, err := render(rp, dir, name+"-region.svg", w, vg.Length(1.5+0.22*float64(rows))*vg.Inch)
		if err != nil {
			return s, err
		}
		s.Region = &f
	}
	return s, nil
}

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"dict": func(rows []row, ops bool) map[string]any { return map[string]any{"Rows": rows, "Ops": ops} },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>brkmap/alloc: the policies compared</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 62em; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 2.2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { padding: 0.2em 0.7em; text-align: right; border-bottom: 1px solid #eee; }
th:first-child, td:first-child { text-align: left; }
td.bad { color: #b00; font-weight: bold; }
svg.plot { display: block; margin: 0.5em 0; max-width: 100%; height: auto; }
.note { background: #f6f6f0; padding: 0.4em 0.8em; border-left: 3px solid #cc9; }
.small { color: #666; font-size: 0.85em; }
</style>
</head>
<body>
<h1>brkmap/alloc: the policies compared</h1>
<p>Each workload below ran under every policy, each run in a fresh process. <b>Resident</b> is measured: for this
allocator, with mincore over its own memory (the region up to its break and every live mapping); for glibc
(<i>libc</i>), as the process's RSS growth over its start (/proc/self/status), with the peak from VmHWM reset before
the run. <b>Time</b> is the run's own time, the sampler's excluded. <b>Fragmentation</b> is peak resident / peak live;
<b>trapped</b> is the free memory below the break still resident at the end; <b>score</b> is the geometric mean of
peak resident, time and system calls, each relative to the best of this allocator's policies (1 is best on all three;
glibc's system calls cannot be counted here, so it has none).</p>
<ul>{{range .Policies}}<li><b>{{.Name}}</b>: {{.About}}</li>{{end}}</ul>
<p class="small">{{.When}} · {{.Go}} {{.OS}} · {{.CPUs}} CPUs · vm.max_map_count {{.MaxMapCount}}{{if ne .Scale 1.0}} · workloads scaled by {{.Scale}}{{end}}.
One run each: time on a shared machine is noisy; memory and system calls are not.</p>

{{define "table"}}<table>
<tr><th>policy</th><th>time</th><th>syscalls</th><th>faults</th><th>peak live</th><th>peak resident</th><th>final resident</th><th>frag</th><th>trapped</th><th>score</th>{{if .Ops}}<th>ops/s</th>{{end}}</tr>
{{range .Rows}}<tr><td{{if not .OK}} class="bad"{{end}}>{{.Policy}}{{if not .OK}} (failed){{end}}</td><td>{{.Time}}</td><td>{{.Syscalls}}</td><td>{{.Faults}}</td><td>{{.PeakLive}}</td><td>{{.PeakResident}}</td><td>{{.FinalResident}}</td><td>{{.Frag}}</td><td>{{.Trapped}}</td><td>{{.Score}}</td>{{if $.Ops}}<td>{{.OpsPerSec}}</td>{{end}}</tr>
{{end}}</table>{{end}}

{{range .Sections}}
<h2 id="{{.Name}}">{{.Name}}</h2>
<p><i>{{.Title}}.</i></p>
<p>{{.Lesson}}</p>
{{template "table" (dict .Rows false)}}
{{range .Notes}}<p class="note">{{.}}</p>{{end}}
{{range .Rows}}{{if .Error}}<p class="note">{{.Policy}}: {{.Error}}</p>{{end}}{{end}}
{{with .Resident}}{{.SVG}}{{end}}
{{with .Region}}{{.SVG}}<p class="small">Blue: pages of live blocks and slabs. Red: free pages still resident (trapped below a live block, or not yet trimmed). Grey: free pages given back. Blocks in their own mappings are not part of the region.</p>{{end}}
{{end}}

{{if .Traces}}
<h2 id="traces">Traces</h2>
<p>The malloc-lab traces of <code>{{.TraceDir}}</code>, replayed with every byte of every block written at allocation
and checked before it is freed or moved. Peak live is the trace's own; ops/s counts the replay loop only.</p>
{{range .Traces}}
<h3>{{.Name}}</h3>
{{template "table" (dict .Rows true)}}
{{range .Rows}}{{if .Error}}<p class="note">{{.Policy}}: {{.Error}}</p>{{end}}{{end}}
{{with .Resident}}{{.SVG}}{{end}}
{{end}}
{{end}}

<script>
// Mark each plot that the browser laid out with a size and drew shapes in:
// the report's test reads these marks back from headless Chromium.
document.querySelectorAll("svg.plot").forEach(function (svg) {
  var box = svg.getBBox();
  var shapes = svg.querySelectorAll("path, rect, polygon, line, polyline").length;
  svg.setAttribute("data-rendered", box.width > 0 && box.height > 0 && shapes > 3 ? "yes" : "no");
});
</script>
</body>
</html>
`))

// policyDocs returns each policy's name and description, for the page.
func policyDocs() []struct{ Name, About string } {
	var d []struct{ Name, About string }
	for _, p := range policies {
		d = append(d, struct{ Name, About string }{p.name, p.about})
	}
	return d
}
