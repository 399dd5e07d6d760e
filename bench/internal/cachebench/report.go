package cachebench

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/brkmap/alloc/bench/internal/report"
)

// storeColor gives each store one colour in every plot.
var storeColor = map[string]color.RGBA{
	"cache":     {0x1f, 0x77, 0xb4, 0xff}, // blue
	"fastcache": {0xff, 0x7f, 0x0e, 0xff}, // orange
	"freecache": {0x2c, 0xa0, 0x2c, 0xff}, // green
	"bigcache":  {0x94, 0x67, 0xbd, 0xff}, // purple
	"ristretto": {0x8c, 0x56, 0x4b, 0xff}, // brown
	"map":       {0x30, 0x30, 0x30, 0xff}, // near black
}

func colorOf(store string) color.RGBA {
	if c, ok := storeColor[store]; ok {
		return c
	}
	return color.RGBA{0x7f, 0x7f, 0x7f, 0xff}
}

// pageFigure is one plot of the page with what it shows.
type pageFigure struct {
	Title string
	SVG   template.HTML
}

// writeReport writes the report folder dir: a plot of ns/op by goroutine
// count per store for each (workload, entries, get/set), bars of hit
// ratio, RSS per entry and the shift workload's kept share, results.json
// (what -json writes), and index.html holding the table and the plots
// inline. It returns the page's path.
func writeReport(dir, command string, medians []result, gs []int, ops, runs int, resultsJSON []byte) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	old, _ := filepath.Glob(filepath.Join(dir, "*.svg")) // an earlier run's plots
	for _, f := range old {
		os.Remove(f)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), resultsJSON, 0o644); err != nil {
		return "", err
	}
	var figs []pageFigure
	add := func(p *plot.Plot, file, title string, w, h vg.Length) error {
		svg, err := report.Figure(p, dir, file, w, h)
		if err != nil {
			return fmt.Errorf("plot %s: %w", file, err)
		}
		figs = append(figs, pageFigure{Title: title, SVG: svg})
		return nil
	}
	// ns/op by goroutine count: the steady workloads.
	for _, grp := range groups(medians) {
		if grp[0].Workload == "shift" || len(gs) == 0 {
			continue
		}
		for _, phase := range []string{"get", "set"} {
			p, ok := throughputPlot(grp, gs, phase)
			if !ok {
				continue
			}
			name := fmt.Sprintf("%s-%d-%s", grp[0].Workload, grp[0].Entries, phase)
			title := fmt.Sprintf("%s, %d keys: %s ns/op by goroutines (lower is better)", grp[0].Workload, grp[0].Entries, phase)
			if err := add(p, name+".svg", title, 6.5*vg.Inch, 3.2*vg.Inch); err != nil {
				return "", err
			}
		}
	}
	bars := []struct {
		file, title, ylabel string
		value               func(r result) (float64, bool)
	}{
		{"hit-ratio.svg", "hit ratio at the same byte budget (higher is better)", "hit ratio",
			func(r result) (float64, bool) { return r.HitRatio, r.Workload != "shift" }},
		{"rss-per-entry.svg", "RSS per entry held, bytes (lower is better)", "bytes",
			func(r result) (float64, bool) { return r.RSSEntry, r.Workload != "shift" && r.RSSEntry > 0 }},
		{"shift-kept.svg", "shift: share of the last 32,768 large keys still cached (higher is better)", "kept",
			func(r result) (float64, bool) { return r.Kept32K, r.Workload == "shift" }},
	}
	for _, b := range bars {
		p, ok := barPlot(medians, b.ylabel, b.value)
		if !ok {
			continue
		}
		if err := add(p, b.file, b.title, 6.5*vg.Inch, 3*vg.Inch); err != nil {
			return "", err
		}
	}
	var tbl bytes.Buffer
	table(&tbl, medians, gs)
	var page bytes.Buffer
	err := pageTemplate.Execute(&page, map[string]any{
		"Command": command, "Table": tbl.String(), "Figures": figs, "Runs": runs, "Ops": ops,
		"When": time.Now().UTC().Format(time.RFC1123), "Go": runtime.Version(),
		"OS": runtime.GOOS + "/" + runtime.GOARCH, "CPUs": runtime.NumCPU(),
	})
	if err != nil {
		return "", err
	}
	index := filepath.Join(dir, "index.html")
	return index, os.WriteFile(index, page.Bytes(), 0o644)
}

// groups splits results into runs of one (workload, entries), in order.
func groups(rs []result) [][]result {
	var out [][]result
	for i, r := range rs {
		if i == 0 || r.Workload != rs[i-1].Workload || r.Entries != rs[i-1].Entries {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], r)
	}
	return out
}

// throughputPlot draws one line per store: ns/op of phase at each
// goroutine count, the counts evenly spaced on the x axis.
func throughputPlot(grp []result, gs []int, phase string) (*plot.Plot, bool) {
	p := plot.New()
	p.X.Label.Text = "goroutines"
	p.Y.Label.Text = "ns/op"
	p.Y.Min = 0
	p.Legend.Top = true
	var ticks []plot.Tick
	for i, g := range gs {
		ticks = append(ticks, plot.Tick{Value: float64(i), Label: strconv.Itoa(g)})
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.X.Min, p.X.Max = -0.2, float64(len(gs)-1)+0.2
	drawn, top := false, 0.0
	for _, r := range grp {
		vals := r.GetNs
		if phase == "set" {
			vals = r.SetNs
		}
		var xys plotter.XYs
		for i, g := range gs {
			if v, ok := vals[strconv.Itoa(g)]; ok && v > 0 {
				xys = append(xys, plotter.XY{X: float64(i), Y: v})
				top = max(top, v)
			}
		}
		if len(xys) == 0 {
			continue
		}
		l, pts, err := plotter.NewLinePoints(xys)
		if err != nil {
			continue
		}
		c := colorOf(r.Store)
		l.Color, pts.Color = c, c
		l.Width = vg.Points(1.5)
		if r.Store == "cache" {
			l.Width = vg.Points(2.5)
		}
		p.Add(l, pts)
		p.Legend.Add(r.Store, l, pts)
		drawn = true
	}
	p.Y.Max = top * legendRoom
	return p, drawn
}

// legendRoom is how far above the highest value a plot's y axis reaches,
// so that the legend in the top corner covers no data.
const legendRoom = 1.6

// barPlot draws grouped bars: one group per (workload, entries) on the x
// axis, one bar per store in it, value's figure of each result it keeps.
func barPlot(rs []result, ylabel string, value func(r result) (float64, bool)) (*plot.Plot, bool) {
	var labels []string
	var stores []string
	type key struct {
		store string
		group int
	}
	vals := map[key]float64{}
	top := 0.0
	for _, grp := range groups(rs) {
		kept := false
		for _, r := range grp {
			v, ok := value(r)
			if !ok || r.Skipped != "" {
				continue
			}
			if !kept {
				labels = append(labels, fmt.Sprintf("%s %s", grp[0].Workload, shortCount(grp[0].Entries)))
				kept = true
			}
			if !slices.Contains(stores, r.Store) {
				stores = append(stores, r.Store)
			}
			vals[key{r.Store, len(labels) - 1}] = v
			top = max(top, v)
		}
	}
	if len(labels) == 0 {
		return nil, false
	}
	p := plot.New()
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = false
	w := vg.Points(max(6, 60/float64(len(stores))))
	for i, st := range stores {
		values := make(plotter.Values, len(labels))
		for g := range labels {
			values[g] = vals[key{st, g}] // 0 where the store sat out
		}
		b, err := report.Bars(values, w, colorOf(st))
		if err != nil {
			continue
		}
		b.Offset = w * vg.Length(float64(i)-float64(len(stores)-1)/2)
		p.Add(b)
		p.Legend.Add(st, b)
	}
	p.NominalX(labels...)
	p.Y.Max = top * legendRoom
	return p, true
}

// shortCount writes 1000000 as 1M, 20000 as 20K.
func shortCount(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.Itoa(n/1000) + "K"
	}
	return strconv.Itoa(n)
}

var pageTemplate = template.Must(template.New("cache").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>brkmap/alloc: the cache package against the other Go caches</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 84em; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; font-size: 1.15em; }
pre { font-size: 0.72em; overflow-x: auto; background: #f7f7f7; padding: 0.6em; }
svg.plot { display: block; margin: 0.5em 0; width: 100%; max-width: 60em; height: auto; }
.small { color: #666; font-size: 0.85em; }
</style>
</head>
<body>
<h1>The cache package against the other Go caches</h1>
<p>Made by <code>{{.Command}}</code>: each store on each workload in a child process of its own,
{{.Ops}} operations a phase, medians of {{.Runs}} run(s). ns/op is wall time over the operations of a
phase, all goroutines together; the byte budget holds half the keys' bytes, so every store is evicting.
The package documentation of <code>bench/internal/cachebench</code> says how each column is measured.</p>
<p class="small">{{.When}} · {{.Go}} · {{.OS}} · {{.CPUs}} CPUs</p>
<h2>Medians</h2>
<pre>{{.Table}}</pre>
{{range .Figures}}<h2>{{.Title}}</h2>
{{.SVG}}
{{end}}
</body>
</html>
`))

// commandLine is how the run was asked for, for the page.
func commandLine(args []string) string {
	return strings.TrimSpace("go run ./bench cache " + strings.Join(args, " "))
}
