package report

import (
	"bytes"
	"errors"
	"html/template"
	"image/color"
	"os"
	"path/filepath"
	"strings"

	"github.com/brkmap/alloc/bench/internal/harness"
	"github.com/brkmap/alloc/stats"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

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
func residentPlot(title string, results []*harness.Result) (*plot.Plot, error) {
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
		name := r.Policy + " (" + FormatSeconds(r.Seconds)
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
func usesRegion(r *harness.Result) bool {
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
func regionPlot(title string, results []*harness.Result) *plot.Plot {
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
