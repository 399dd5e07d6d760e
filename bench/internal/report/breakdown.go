package report

import (
	"fmt"
	"html/template"
	"image/color"

	"github.com/brkmap/alloc/bench/internal/harness"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// part is one share of a breakdown bar: its name in the legend, its
// colour, what it is (for the page's legend), and how to read it from a
// harness.Breakdown.
type part struct {
	Name, About string
	Color       color.RGBA
	value       func(b *harness.Breakdown) uint64
}

// parts are the shares of the committed bytes, bottom of the bar first —
// stats.Snapshot's Breakdown order — then the metadata, which lives in the
// Go heap, outside the allocator's memory. The first ten sum exactly to
// the committed bytes.
var parts = []part{
	{"requested live", "the bytes the program asked for and has not freed", color.RGBA{0x1f, 0x77, 0xb4, 0xff},
		func(b *harness.Breakdown) uint64 { return b.RequestedBytes }},
	{"class rounding", "a small block's size class beyond the request (a 100-byte request gets a 112-byte block)", color.RGBA{0x9e, 0xc9, 0xe9, 0xff},
		func(b *harness.Breakdown) uint64 { return b.ClassRoundingBytes }},
	{"page rounding", "a page run or mapping's whole pages beyond the request", color.RGBA{0x17, 0xbe, 0xcf, 0xff},
		func(b *harness.Breakdown) uint64 { return b.PageRoundingBytes }},
	{"fit headers", "a medium block's chunk header (8 bytes) and its rounding to 16 bytes, in the best-fit heap", color.RGBA{0xc5, 0xb0, 0xd5, 0xff},
		func(b *harness.Breakdown) uint64 { return b.FitRoundingBytes }},
	{"free in fit heap", "free chunks of the best-fit heap: any medium request can use them, merged with their free neighbours", color.RGBA{0x8c, 0x56, 0x4b, 0xff},
		func(b *harness.Breakdown) uint64 { return b.FitFreeBytes }},
	{"free in slabs", "free blocks inside slabs that still hold live blocks: no other class can use them", color.RGBA{0xff, 0x7f, 0x0e, 0xff},
		func(b *harness.Breakdown) uint64 { return b.SlabFreeBytes }},
	{"slab tails", "the end of each slab too short for one more block", color.RGBA{0xff, 0xbb, 0x78, 0xff},
		func(b *harness.Breakdown) uint64 { return b.SlabTailBytes }},
	{"P caches", "free blocks parked in the per-P caches, ready for the next allocation without a lock", color.RGBA{0x94, 0x67, 0xbd, 0xff},
		func(b *harness.Breakdown) uint64 { return b.CachedBytes }},
	{"empty slabs kept", "a slab with every block free, kept by its class for the next refill", color.RGBA{0xe3, 0x77, 0xc2, 0xff},
		func(b *harness.Breakdown) uint64 { return b.EmptySlabBytes }},
	{"free, awaiting purge", "free pages of the region not yet given back (the purge releases them after its delay)", color.RGBA{0xd6, 0x27, 0x28, 0xff},
		func(b *harness.Breakdown) uint64 { return b.DirtyBytes }},
	{"quarantine", "freed mappings Debug keeps inaccessible for a while, to catch a use after free", color.RGBA{0x8c, 0x56, 0x4b, 0xff},
		func(b *harness.Breakdown) uint64 { return b.QuarantineBytes }},
	{"free, released", "free pages below the break already given back: committed address space, not resident", color.RGBA{0xdd, 0xdd, 0xdd, 0xff},
		func(b *harness.Breakdown) uint64 { return b.ReleasedBytes }},
	{"fit heap, released", "the pages inside the best-fit heap's free chunks already given back (the purge, Trim): not resident", color.RGBA{0xee, 0xee, 0xee, 0xff},
		func(b *harness.Breakdown) uint64 { return b.FitReleasedBytes }},
	{"metadata", "the allocator's own bookkeeping (page map, slab headers, mapping registry in the Go heap; the best-fit heap's bitmaps beside the region): not in the resident figure", color.RGBA{0x7f, 0x7f, 0x7f, 0xff},
		func(b *harness.Breakdown) uint64 { return b.MetadataBytes }},
}

// PartNames returns the names of a breakdown bar's parts, bottom first.
func PartNames() []string {
	var n []string
	for _, pt := range parts {
		n = append(n, pt.Name)
	}
	return n
}

// partDocs returns the parts as the page's legend lists them.
func partDocs() []breakdownRow {
	var d []breakdownRow
	for _, pt := range parts {
		d = append(d, breakdownRow{Name: pt.Name, About: pt.About, Color: cssColor(pt.Color)})
	}
	return d
}

// glibcColor is glibc's bar.
var glibcColor = policyColor["libc"]

// breakdownTable is a section's breakdown in figures, for the page: a row
// per part, a column per policy.
type breakdownTable struct {
	Policies []string
	Rows     []breakdownRow
}

type breakdownRow struct {
	Name, About string
	Color       template.CSS
	Cells       []string
}

// hasBreakdown reports whether r has a breakdown at its peak.
func hasBreakdown(r *harness.Result) bool { return r.OK && r.PeakBreakdown != nil }

// breakdownColumns splits a section's results into the policies with a
// breakdown, in order, and glibc's run (its resident memory measured as
// RSS), nil when it did not run.
func breakdownColumns(results []*harness.Result) (cols []*harness.Result, libc *harness.Result) {
	for _, r := range results {
		switch {
		case hasBreakdown(r):
			cols = append(cols, r)
		case r.OK && r.ResidentFrom == "rss":
			libc = r
		}
	}
	return cols, libc
}

// breakdownOf returns the figures of a breakdown plot: a row per part, a
// column per policy with a breakdown, then glibc's peak resident (and its
// own count of its heap) when it ran; nil if no policy has a breakdown.
func breakdownOf(results []*harness.Result) *breakdownTable {
	cols, libc := breakdownColumns(results)
	if len(cols) == 0 {
		return nil
	}
	t := &breakdownTable{}
	for _, r := range cols {
		t.Policies = append(t.Policies, r.Policy)
	}
	if libc != nil {
		t.Policies = append(t.Policies, libc.Policy)
	}
	add := func(name, about string, c color.RGBA, cell func(r *harness.Result) string, libcCell string) {
		row := breakdownRow{Name: name, About: about, Color: cssColor(c)}
		for _, r := range cols {
			row.Cells = append(row.Cells, cell(r))
		}
		if libc != nil {
			row.Cells = append(row.Cells, libcCell)
		}
		t.Rows = append(t.Rows, row)
	}
	for _, pt := range parts {
		add(pt.Name, pt.About, pt.Color, func(r *harness.Result) string { return FormatBytes(pt.value(r.PeakBreakdown)) }, "")
	}
	add("committed (sum of the above but metadata)", "", color.RGBA{}, func(r *harness.Result) string { return FormatBytes(r.PeakBreakdown.CommittedBytes) }, "")
	glibcRSS, glibcHeap := "", ""
	if libc != nil {
		glibcRSS, glibcHeap = FormatBytes(libc.PeakResidentBytes), FormatBytes(libc.LibcHeapPeakBytes)
	}
	add("resident, measured", "", color.RGBA{}, func(r *harness.Result) string { return FormatBytes(r.PeakBreakdown.ResidentBytes) }, glibcRSS)
	if libc != nil {
		add("glibc's heap (mallinfo2)", "", color.RGBA{}, func(*harness.Result) string { return "" }, glibcHeap)
	}
	return t
}

func cssColor(c color.RGBA) template.CSS {
	if c.A == 0 {
		return ""
	}
	return template.CSS(fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B))
}

// breakdownPlot draws, for each policy of this allocator, its committed
// bytes at its peak resident sample as a stacked bar of parts (the
// metadata on top) with the measured resident memory as a black tick,
// and beside them glibc's peak resident as one bar; nil if no policy has
// a breakdown.
func breakdownPlot(title string, results []*harness.Result) (*plot.Plot, error) {
	cols, libc := breakdownColumns(results)
	if len(cols) == 0 {
		return nil, nil
	}
	n := len(cols)
	var names []string
	for _, r := range cols {
		names = append(names, r.Policy)
	}
	if libc != nil {
		names = append(names, "glibc (libc)")
		n++
	}
	const mib = 1 << 20
	p := plot.New()
	p.Title.Text = title + ": where the memory was at each policy's peak"
	p.Y.Label.Text = "MiB"
	p.Y.Tick.Marker = numberTicks{}
	p.Add(plotter.NewGrid())
	width := vg.Points(34)
	var below *plotter.BarChart
	top := 0.0
	for _, pt := range parts {
		vals := make(plotter.Values, n)
		seen := false
		for i, r := range cols {
			vals[i] = float64(pt.value(r.PeakBreakdown)) / mib
			seen = seen || vals[i] > 0
		}
		if !seen {
			continue // a part this workload never had: no legend entry either
		}
		bc, err := Bars(vals, width, pt.Color)
		if err != nil {
			return nil, err
		}
		if below != nil {
			bc.StackOn(below)
		}
		below = bc
		p.Add(bc)
		p.Legend.Add(pt.Name, bc)
	}
	for _, r := range cols {
		b := r.PeakBreakdown
		top = max(top, float64(b.CommittedBytes+b.MetadataBytes)/mib)
	}
	if libc != nil {
		vals := make(plotter.Values, n)
		vals[n-1] = float64(libc.PeakResidentBytes) / mib
		top = max(top, vals[n-1])
		bc, err := Bars(vals, width, glibcColor)
		if err != nil {
			return nil, err
		}
		p.Add(bc)
		p.Legend.Add("glibc: peak resident (RSS)", bc)
	}
	// The measured resident memory: a black tick across each bar.
	var ticks plotter.XYs
	for i, r := range cols {
		ticks = append(ticks, plotter.XY{X: float64(i), Y: float64(r.PeakBreakdown.ResidentBytes) / mib})
	}
	sc, err := plotter.NewScatter(ticks)
	if err != nil {
		return nil, err
	}
	sc.GlyphStyle = draw.GlyphStyle{Color: color.Black, Radius: width * 0.6, Shape: hbar{}}
	p.Add(sc)
	p.Legend.Add("resident, measured (mincore)", tickThumb{})
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.6, float64(n)-0.4+0.9*float64(n) // room on the right for the legend
	p.Y.Min, p.Y.Max = 0, max(top*1.05, 0.01)
	p.Legend.Top = true
	p.Legend.Left = false
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.Legend.Padding = vg.Points(1.5)
	return p, nil
}

// tickThumb is the resident tick's legend entry: a short black line
// inside the entry's box (the glyph itself is as wide as a bar).
type tickThumb struct{}

func (tickThumb) Thumbnail(c *draw.Canvas) {
	r := c.Rectangle
	y := (r.Min.Y + r.Max.Y) / 2
	c.StrokeLine2(draw.LineStyle{Color: color.Black, Width: vg.Points(2.5)}, r.Min.X, y, r.Max.X, y)
}

// hbar is a glyph: a horizontal line as wide as the glyph's diameter.
type hbar struct{}

func (hbar) DrawGlyph(c *draw.Canvas, sty draw.GlyphStyle, pt vg.Point) {
	ls := draw.LineStyle{Color: sty.Color, Width: vg.Points(2.5)}
	c.StrokeLine2(ls, pt.X-sty.Radius, pt.Y, pt.X+sty.Radius, pt.Y)
}
