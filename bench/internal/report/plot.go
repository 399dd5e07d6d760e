package report

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/brkmap/alloc/bench/internal/harness"
	"github.com/brkmap/alloc/bench/internal/sampler"
	"github.com/brkmap/alloc/stats"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
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

func init() {
	// Plot text in the page's family, not gonum's serif default.
	plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"}
}

// timeline places every policy's samples on one x axis aligned on the
// named moments: each moment sits at one x for all policies (the mean of
// its place in each policy's own run), and between two moments a
// policy's time maps linearly, so the same x is the same phase of the
// work whatever each policy's speed. The tick marks name the moments.
type timeline struct {
	names []string  // the moments, in order
	xs    []float64 // their places, 0–100
}

// momentsOf returns the named samples of a series, in order.
func momentsOf(series []sampler.Sample) (names []string, at []float64) {
	for _, s := range series {
		if s.Label != "" {
			names = append(names, s.Label)
			at = append(at, float64(s.At))
		}
	}
	return names, at
}

func newTimeline(results []*harness.Result) *timeline {
	sum, n := map[string]float64{}, map[string]int{}
	var order []string
	for _, r := range results {
		names, at := momentsOf(r.Series)
		if len(at) == 0 {
			continue
		}
		total := max(at[len(at)-1], 1)
		for i, name := range names {
			if n[name] == 0 {
				order = append(order, name)
			}
			sum[name] += 100 * at[i] / total
			n[name]++
		}
	}
	t := &timeline{}
	last := -float64(minApart)
	for _, name := range order {
		// Keep the moments in order and far enough apart for their names.
		x := max(sum[name]/float64(n[name]), last+minApart)
		t.names, t.xs, last = append(t.names, name), append(t.xs, x), x
	}
	if last > 100 { // squeeze back into 0–100
		for i := range t.xs {
			t.xs[i] *= 100 / last
		}
	}
	return t
}

// minApart is the least distance between two moments on the axis (of 100).
const minApart = 9.0

// x returns the aligned place of each sample of r's series.
func (t *timeline) x(r *harness.Result) []float64 {
	names, at := momentsOf(r.Series)
	var ax, ux []float64 // anchors: the run's time, and the axis
	for i, name := range names {
		for j, tn := range t.names {
			if tn == name && (len(ux) == 0 || t.xs[j] > ux[len(ux)-1]) && (len(ax) == 0 || at[i] >= ax[len(ax)-1]) {
				ax, ux = append(ax, at[i]), append(ux, t.xs[j])
				break
			}
		}
	}
	xs := make([]float64, len(r.Series))
	for i, s := range r.Series {
		v := float64(s.At)
		k := 0
		for k+1 < len(ax) && ax[k+1] < v {
			k++
		}
		switch {
		case len(ax) == 0:
			xs[i] = 0
		case k+1 >= len(ax) || ax[k+1] == ax[k]:
			xs[i] = ux[k]
		default:
			xs[i] = ux[k] + (ux[k+1]-ux[k])*(v-ax[k])/(ax[k+1]-ax[k])
		}
	}
	return xs
}

// Ticks marks the moments on the x axis.
func (t *timeline) Ticks(min, max float64) []plot.Tick {
	var ticks []plot.Tick
	for i, name := range t.names {
		ticks = append(ticks, plot.Tick{Value: t.xs[i], Label: name})
	}
	return ticks
}

// gap is the longest time between two samples that a line is drawn
// across: longer, and the line breaks (the sampler was not looking).
func gap(series []sampler.Sample) time.Duration {
	if len(series) == 0 {
		return 0
	}
	return max(5*time.Millisecond, series[len(series)-1].At/40)
}

// numberTicks are the default ticks with one number format for every plot.
type numberTicks struct{}

func (numberTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = FormatNumber(ticks[i].Value)
		}
	}
	return ticks
}

// FormatNumber formats an axis value: at most three significant digits,
// no exponent, thousands grouped.
func FormatNumber(v float64) string {
	if v == 0 {
		return "0"
	}
	a := math.Abs(v)
	d := max(0, 2-int(math.Floor(math.Log10(a))))
	s := strconv.FormatFloat(v, 'f', d, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if a >= 10000 {
		n, _ := strconv.ParseInt(s, 10, 64)
		s = groupThousands(n)
	}
	return s
}

func groupThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && c != '-' && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// seriesPlot draws one value of the samples over the aligned timeline, one
// line per policy, broken where the sampler was not looking, with a dot
// at each named moment. value returns false for a sample it has no value
// for. It returns nil when no result has a value.
func seriesPlot(title, ylabel string, results []*harness.Result, value func(r *harness.Result, s sampler.Sample) (float64, bool)) (*plot.Plot, error) {
	t := newTimeline(results)
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "the run's named moments; between them, each policy's own time"
	p.Y.Label.Text = ylabel
	p.X.Tick.Marker = t
	p.Y.Tick.Marker = numberTicks{}
	p.Add(plotter.NewGrid())
	top, entries := 0.0, 0
	for _, r := range results {
		if len(r.Series) == 0 {
			continue
		}
		xs := t.x(r)
		limit := gap(r.Series)
		var seg plotter.XYs
		var marks plotter.XYs
		var first *plotter.Line
		flush := func() error {
			if len(seg) == 0 {
				return nil
			}
			if len(seg) == 1 { // a lone sample, gaps on both sides: a small dot
				sc, err := glyphs(seg, policyColor[r.Policy], vg.Points(1.5), draw.CircleGlyph{})
				if err != nil {
					return err
				}
				p.Add(sc)
				seg = append(seg, seg[0]) // and a line of no length, for the legend
			}
			l, err := plotter.NewLine(seg)
			if err != nil {
				return err
			}
			l.Color = policyColor[r.Policy]
			l.Width = vg.Points(1.5)
			p.Add(l)
			if first == nil {
				first = l
			}
			seg = nil
			return nil
		}
		for i, smp := range r.Series {
			y, ok := value(r, smp)
			if !ok {
				if err := flush(); err != nil {
					return nil, err
				}
				continue
			}
			if i > 0 && smp.At-r.Series[i-1].At > limit {
				if err := flush(); err != nil {
					return nil, err
				}
			}
			seg = append(seg, plotter.XY{X: xs[i], Y: y})
			top = max(top, y)
			if smp.Label != "" && smp.Label != "start" {
				marks = append(marks, plotter.XY{X: xs[i], Y: y})
			}
		}
		if err := flush(); err != nil {
			return nil, err
		}
		if first == nil {
			continue
		}
		if len(marks) > 0 {
			sc, err := glyphs(marks, policyColor[r.Policy], vg.Points(3), draw.CircleGlyph{})
			if err != nil {
				return nil, err
			}
			p.Add(sc)
		}
		name := r.Policy + " (" + FormatSeconds(r.Seconds) + ")"
		p.Legend.Add(name, first)
		entries++
	}
	if entries == 0 {
		return nil, nil
	}
	p.Legend.Top = true
	p.Legend.Left = false
	p.Legend.YOffs = vg.Points(-2)
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.X.Min, p.X.Max = 0, 100
	// Room above the lines for the legend, one row a policy.
	p.Y.Min, p.Y.Max = 0, max(top*(1.1+0.16*float64(entries)), 0.01)
	return p, nil
}

// residentPlot draws resident memory over time, one line per policy.
func residentPlot(title string, results []*harness.Result) (*plot.Plot, error) {
	return seriesPlot(title+": resident memory", "resident (MiB)", results,
		func(_ *harness.Result, s sampler.Sample) (float64, bool) {
			return float64(s.Resident) / (1 << 20), true
		})
}

// mappingsPlot draws the process's mappings over time against the
// kernel's cap, or returns nil when the run did not count them.
func mappingsPlot(title string, results []*harness.Result, limit int) (*plot.Plot, error) {
	p, err := seriesPlot(title+": the process's mappings", "mappings", results,
		func(_ *harness.Result, s sampler.Sample) (float64, bool) { return float64(s.Mappings), s.Mappings > 0 })
	if p == nil || err != nil || limit <= 0 {
		return p, err
	}
	l, err := plotter.NewLine(plotter.XYs{{X: 0, Y: float64(limit)}, {X: 100, Y: float64(limit)}})
	if err != nil {
		return nil, err
	}
	l.Color = stateColor[stats.PageTrapped]
	l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(l)
	p.Legend.Add("vm.max_map_count ("+groupThousands(int64(limit))+")", l)
	p.Y.Max = max(p.Y.Max, float64(limit)*1.9)
	return p, nil
}

// thresholdPlot draws the mmap threshold and the trim threshold over time
// for the policies that have one, with a dot at each free that moved
// them, or returns nil when no threshold moved.
func thresholdPlot(title string, results []*harness.Result) (*plot.Plot, error) {
	var moved []*harness.Result
	slid := false
	for _, r := range results {
		if len(r.Series) == 0 || r.Series[len(r.Series)-1].MmapThreshold == 0 {
			continue
		}
		moved = append(moved, r)
		for _, s := range r.Series {
			slid = slid || (s.MmapThreshold != 0 && s.MmapThreshold != r.Series[0].MmapThreshold)
		}
	}
	if !slid {
		return nil, nil
	}
	p, err := seriesPlot(title+": the mmap threshold (solid) and the trim threshold (dashed)", "threshold (MiB)", moved,
		func(_ *harness.Result, s sampler.Sample) (float64, bool) {
			return float64(s.MmapThreshold) / (1 << 20), s.MmapThreshold > 0
		})
	if p == nil || err != nil {
		return p, err
	}
	t := newTimeline(results)
	for _, r := range moved {
		xs := t.x(r)
		var trim, moves plotter.XYs
		for i, s := range r.Series {
			if s.TrimThreshold > 0 {
				trim = append(trim, plotter.XY{X: xs[i], Y: float64(s.TrimThreshold) / (1 << 20)})
				p.Y.Max = max(p.Y.Max, 1.5*float64(s.TrimThreshold)/(1<<20))
			}
			if i > 0 && s.MmapThreshold != r.Series[i-1].MmapThreshold && s.MmapThreshold > 0 && r.Series[i-1].MmapThreshold > 0 {
				moves = append(moves, plotter.XY{X: xs[i], Y: float64(s.MmapThreshold) / (1 << 20)})
			}
		}
		if len(trim) > 1 {
			l, err := plotter.NewLine(trim)
			if err != nil {
				return nil, err
			}
			l.Color = policyColor[r.Policy]
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			p.Add(l)
		}
		if len(moves) > 0 {
			sc, err := glyphs(moves, policyColor[r.Policy], vg.Points(4), draw.CrossGlyph{})
			if err != nil {
				return nil, err
			}
			p.Add(sc)
			p.Legend.Add(r.Policy+": a free that moved it ("+fmt.Sprint(len(moves))+")", sc)
		}
	}
	return p, nil
}

// mapRows draws region maps as horizontal strips, one row each: every
// extent a rectangle coloured by its state, the x axis in MiB from the
// region's base. A live extent is drawn at least minLive wide, so a single
// block (the pin of pinned-top) shows at any scale, and a row with few
// live extents labels them.
type mapRows []stats.RegionMap

const minLive = 3 // points

func (m mapRows) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	label := draw.TextStyle{Color: color.Black, Font: font.From(plot.DefaultFont, vg.Points(8)),
		Handler: plot.DefaultTextHandler, YAlign: draw.YCenter}
	for i, rm := range m {
		y0, y1 := trY(float64(i)-0.38), trY(float64(i)+0.38)
		var lives []vg.Length // the narrow live extents
		live := 0
		for _, e := range rm.Extents {
			x0, x1 := trX(float64(e.Offset)/(1<<20)), trX(float64(e.Offset+e.Len)/(1<<20))
			if e.State == stats.PageLive {
				live++
				if x1-x0 < minLive {
					x0 = min(x0, x1-minLive)
				}
				if x1-x0 < 2*minLive {
					lives = append(lives, x1)
				}
			}
			c.FillPolygon(stateColor[e.State], []vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}})
		}
		if len(lives) > 0 && live <= 2 {
			for _, x := range lives {
				if x < c.Max.X-vg.Points(60) {
					c.FillText(label, vg.Point{X: x + vg.Points(3), Y: (y0 + y1) / 2}, "← live")
				} else {
					l := label
					l.XAlign = draw.XRight
					c.FillText(l, vg.Point{X: x - vg.Points(minLive+3), Y: (y0 + y1) / 2}, "live →")
				}
			}
		}
	}
}

func (m mapRows) DataRange() (xmin, xmax, ymin, ymax float64) {
	for _, rm := range m {
		xmax = max(xmax, float64(rm.Break)/(1<<20))
	}
	return 0, max(xmax, 1e-3), -0.5, float64(len(m)) + 1.5 // room for the legend
}

// drawn reports whether a region map has anything to draw.
func drawn(m stats.RegionMap) bool { return m.Break > 0 && len(m.Extents) > 0 }

// usesRegion reports whether r has region maps with anything in them.
func usesRegion(r *harness.Result) bool {
	if r.PeakMap == nil {
		return false
	}
	for _, m := range r.Moments {
		if drawn(m.Map) {
			return true
		}
	}
	return drawn(*r.PeakMap)
}

// swatch is a legend entry: a filled square.
type swatch color.RGBA

func (s swatch) Thumbnail(c *draw.Canvas) {
	r := c.Rectangle
	c.FillPolygon(color.RGBA(s), []vg.Point{r.Min, {X: r.Max.X, Y: r.Min.Y}, r.Max, {X: r.Min.X, Y: r.Max.Y}})
}

// RegionRow is one row of a region plot: its name and its map.
type RegionRow struct {
	Name string
	Map  stats.RegionMap
}

// regionRows returns the rows of a workload's region plot, first policy
// first: each policy's map at every named moment where the region has
// pages, then at its highest resident sample. Empty maps are left out.
func regionRows(results []*harness.Result) []RegionRow {
	var rows []RegionRow
	for _, r := range results {
		if !usesRegion(r) {
			continue
		}
		for _, m := range r.Moments {
			if drawn(m.Map) {
				rows = append(rows, RegionRow{r.Policy + ": " + m.Label, m.Map})
			}
		}
		if drawn(*r.PeakMap) {
			rows = append(rows, RegionRow{r.Policy + ": at its highest resident", *r.PeakMap})
		}
	}
	return rows
}

// regionPlot draws the region rows, or returns nil when there are none.
func regionPlot(title string, rows []RegionRow) *plot.Plot {
	if len(rows) == 0 {
		return nil
	}
	var maps mapRows
	var names []string
	for i := len(rows) - 1; i >= 0; i-- { // the first row on top
		maps = append(maps, rows[i].Map)
		names = append(names, rows[i].Name)
	}
	p := plot.New()
	p.Title.Text = title + ": the region, base to break, at each named moment"
	p.X.Label.Text = "offset from the region's base (MiB)"
	p.X.Tick.Marker = numberTicks{}
	p.Add(maps)
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

// Bars returns a bar chart of vals, each bar width wide, filled with c
// and drawn without an outline, as every bar plot of the reports is.
func Bars(vals plotter.Values, width vg.Length, c color.RGBA) (*plotter.BarChart, error) {
	bc, err := plotter.NewBarChart(vals, width)
	if err != nil {
		return nil, err
	}
	bc.Color = c
	bc.LineStyle.Width = 0
	return bc, nil
}

// glyphs returns a scatter of xys drawn as glyphs of shape, radius r and
// colour c: the marks the timelines put on their lines.
func glyphs(xys plotter.XYs, c color.RGBA, r vg.Length, shape draw.GlyphDrawer) (*plotter.Scatter, error) {
	sc, err := plotter.NewScatter(xys)
	if err != nil {
		return nil, err
	}
	sc.GlyphStyle.Color = c
	sc.GlyphStyle.Radius = r
	sc.GlyphStyle.Shape = shape
	return sc, nil
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
	// Liberation Sans is what gonum measured the text with; Arial and
	// Helvetica have its metrics, for a reader without it.
	svg = strings.ReplaceAll(svg, "font-family:Liberation Sans;", "font-family:'Liberation Sans',Arial,Helvetica,sans-serif;")
	svg = `<svg class="plot" data-file="` + template.HTMLEscapeString(file) + `"` + svg[i+len("<svg"):]
	return figure{File: file, SVG: template.HTML(svg)}, nil
}
