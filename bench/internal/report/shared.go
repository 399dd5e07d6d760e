package report

import (
	"fmt"
	"html/template"
	"image/color"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	"github.com/brkmap/alloc/bench/internal/shmbench"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// SharedFile is the shared pool's measurement in the report folder
// (results.json keeps its rows of harness.Result).
const SharedFile = "shared-pool.json"

// sharedPlotFile is its plot in the report folder.
const sharedPlotFile = "shared-pool-handover.svg"

// sharedSection is the shared pool's lesson as the page shows it: every
// cell and figure from the run's shmbench.Result.
type sharedSection struct {
	Rows    []sharedRow
	Finding template.HTML // the sentence made from the largest payload's figures
	Stats   []statsRow
	Block   *blockView // the largest payload's block, seen from both sides
	Plot    *figure    // the CPU of handing a payload over, each way, by size
	Error   string
	Skipped string // why the lesson was not measured
}

type sharedRow struct {
	Size, Way, Payloads, Time, Socket, Copied, ParentCPU, ChildCPU, Work, Handover, ChildFaults string
	First, OK                                                                                   bool // First: the first row of its size
	Error                                                                                       string
}

type statsRow struct{ Name, Empty, Held, After string }

type blockView struct {
	Size                                                      string
	Ref, Offset, ParentAddr, ChildAddr, ParentBase, ChildBase string
}

// FormatMicro formats a short time with three significant figures:
// 4.21 µs, 312 µs, 8.40 ms.
func FormatMicro(s float64) string {
	switch {
	case s >= 1:
		return fmt.Sprintf("%.2f s", s)
	case s >= 10e-3:
		return fmt.Sprintf("%.1f ms", s*1e3)
	case s >= 1e-3:
		return fmt.Sprintf("%.2f ms", s*1e3)
	case s >= 100e-6:
		return fmt.Sprintf("%.0f µs", s*1e6)
	case s >= 10e-6:
		return fmt.Sprintf("%.1f µs", s*1e6)
	}
	return fmt.Sprintf("%.2f µs", s*1e6)
}

// formatBytesF formats a per-payload byte count (a mean): whole bytes
// as FormatBytes does.
func formatBytesF(v float64) string { return FormatBytes(uint64(v + 0.5)) }

func sharedOf(r *shmbench.Result, skipped string) *sharedSection {
	if r == nil {
		if skipped == "" {
			return nil
		}
		return &sharedSection{Skipped: skipped}
	}
	s := &sharedSection{Error: r.Error}
	last := 0
	for _, x := range r.Rows {
		row := sharedRow{Size: FormatBytes(uint64(x.Size)), Way: x.Way, Payloads: FormatCount(uint64(x.Payloads)),
			Time: FormatMicro(x.MedianSeconds), Socket: formatBytesF(x.SocketBytes), Copied: formatBytesF(x.CopiedBytes),
			ParentCPU: FormatMicro(x.ParentCPU), ChildCPU: FormatMicro(x.ChildCPU), Work: FormatMicro(x.ParentWork + x.ChildWork), Handover: FormatMicro(x.Handover()),
			ChildFaults: fmt.Sprintf("%.1f", x.ChildFaults), First: x.Size != last, OK: x.OK, Error: x.Error}
		last = x.Size
		s.Rows = append(s.Rows, row)
	}
	sizes := r.Sizes()
	if len(sizes) == 0 {
		return s
	}
	big := sizes[len(sizes)-1]
	sock, sh := r.Row(shmbench.WaySocket, big), r.Row(shmbench.WayShm, big)
	if sock != nil && sh != nil && sock.OK && sh.OK {
		s.Finding = finding(sock, sh)
	}
	var held shmbench.PoolStats
	if sh != nil && sh.Warmup != nil && sh.Warmup.HeldByChild {
		b := sh.Warmup
		held = b.ChildStats
		hex := func(v uint64) string { return fmt.Sprintf("%#x", v) }
		s.Block = &blockView{Size: FormatBytes(uint64(big)), Ref: hex(b.Ref), Offset: hex(b.Offset),
			ParentAddr: hex(b.ParentAddr), ChildAddr: hex(b.ChildAddr), ParentBase: hex(b.ParentBase), ChildBase: hex(b.ChildBase)}
	}
	by := func(v uint64) string { return FormatBytes(v) }
	n := func(v uint64) string { return FormatCount(v) }
	s.Stats = []statsRow{
		{"pool size", by(r.StatsEmpty.Size), by(held.Size), by(r.StatsAfter.Size)},
		{"free (in free runs)", by(r.StatsEmpty.FreeBytes), by(held.FreeBytes), by(r.StatsAfter.FreeBytes)},
		{"live blocks", n(r.StatsEmpty.LiveBlocks), n(held.LiveBlocks), n(r.StatsAfter.LiveBlocks)},
		{"live bytes", by(r.StatsEmpty.LiveBytes), by(held.LiveBytes), by(r.StatsAfter.LiveBytes)},
		{"operations rolled back (a holder died)", n(r.StatsEmpty.Recoveries), n(held.Recoveries), n(r.StatsAfter.Recoveries)},
		{"memory the pool's file holds (fstat)", by(r.FileBytesEmpty), "—", by(r.FileBytesAfter)},
	}
	return s
}

// finding is the sentence a learner wants from the largest payloads:
// time and CPU of both sides, each way, and bytes copied. Every figure is
// a fig of shared-pool.json's.
func finding(sock, sh *shmbench.Row) template.HTML {
	text := func(s string) template.HTML { return template.HTML(template.HTMLEscapeString(s)) }
	var b strings.Builder
	for _, h := range []template.HTML{
		text("A payload of "), fig(FormatBytes(uint64(sock.Size)), float64(sock.Size)),
		text(" took "), fig(FormatMicro(sock.MedianSeconds), sock.MedianSeconds),
		text(" through the socket and "), fig(FormatMicro(sh.MedianSeconds), sh.MedianSeconds),
		text(" through the pool ("), fig(FormatRatio(sock.MedianSeconds, sh.MedianSeconds), sock.MedianSeconds, sh.MedianSeconds),
		text("); the child's CPU time was "), fig(FormatMicro(sock.ChildCPU), sock.ChildCPU),
		text(" against "), fig(FormatMicro(sh.ChildCPU), sh.ChildCPU),
		text(", the parent's "), fig(FormatMicro(sock.ParentCPU), sock.ParentCPU),
		text(" against "), fig(FormatMicro(sh.ParentCPU), sh.ParentCPU),
		text(". Of the two sides' CPU time, handing the payload over (all but writing and reading it) cost "),
		fig(FormatMicro(sock.Handover()), sock.ParentCPU, sock.ParentWork, sock.ChildCPU, sock.ChildWork),
		text(" through the socket and "), fig(FormatMicro(sh.Handover()), sh.ParentCPU, sh.ParentWork, sh.ChildCPU, sh.ChildWork),
		text(" through the pool. The socket copied "), fig(formatBytesF(sock.CopiedBytes), sock.CopiedBytes),
		text(" a payload between the processes and the kernel, the pool "), fig(formatBytesF(sh.CopiedBytes), sh.CopiedBytes),
		text("."),
	} {
		b.WriteString(string(h))
	}
	return template.HTML(b.String())
}

// PrintShared prints the shared pool's table on the terminal.
func PrintShared(w io.Writer, r *shmbench.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "payload\tway\tpayloads\ttime\tsocket bytes\tcopied bytes\tparent CPU\tchild CPU\ton the payload\thanding over\tchild faults\t")
	for _, x := range r.Rows {
		ok := ""
		if !x.OK {
			ok = " FAILED"
		}
		fmt.Fprintf(tw, "%s\t%s%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t\n", FormatBytes(uint64(x.Size)), x.Way, ok, x.Payloads,
			FormatMicro(x.MedianSeconds), formatBytesF(x.SocketBytes), formatBytesF(x.CopiedBytes),
			FormatMicro(x.ParentCPU), FormatMicro(x.ChildCPU), FormatMicro(x.ParentWork+x.ChildWork), FormatMicro(x.Handover()),
			x.ChildFaults)
	}
	tw.Flush()
	fmt.Fprintf(w, "pool: %s; live blocks at the end %d (%s free); its file holds %s (%s when made)\n",
		FormatBytes(r.StatsAfter.Size), r.StatsAfter.LiveBlocks, FormatBytes(r.StatsAfter.FreeBytes),
		FormatBytes(r.FileBytesAfter), FormatBytes(r.FileBytesEmpty))
	if r.Error != "" {
		fmt.Fprintln(w, "error:", r.Error)
	}
}

// wayColor gives each way one colour in the shared pool's plot.
var wayColor = map[string]color.RGBA{
	shmbench.WaySocket: {0xff, 0x7f, 0x0e, 0xff}, // orange
	shmbench.WayShm:    {0x1f, 0x77, 0xb4, 0xff}, // blue
}

// logFloor is the bottom of the plot's log axis: 0.1 µs.
const logFloor = 1e-7

// logTicks labels a log10 axis over logFloor with times.
type logTicks struct{}

func (logTicks) Ticks(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for d := math.Ceil(min); d <= max; d++ {
		ts = append(ts, plot.Tick{Value: d, Label: powerLabel(int(d) - 7)})
	}
	return ts
}

// powerLabel names 10^e seconds: 100 ns, 1 µs, … 10 s.
func powerLabel(e int) string {
	units := []string{"ns", "µs", "ms", "s"}
	i := min(max((e+9)/3, 0), len(units)-1)
	return fmt.Sprintf("%g %s", math.Pow(10, float64(e+9-3*i)), units[i])
}

// sharedPlot draws, per payload size, the CPU time (both sides) that
// handing one payload over cost each way, on a log scale.
func sharedPlot(r *shmbench.Result) (*plot.Plot, error) {
	sizes := r.Sizes()
	if len(sizes) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = "shared-pool: CPU time to hand one payload over (both sides, writing and reading it apart)"
	p.Y.Label.Text = "CPU time (log scale)"
	p.Y.Tick.Marker = logTicks{}
	grid := plotter.NewGrid()
	grid.Vertical.Width = 0 // the sizes are names, not a scale
	p.Add(grid)
	width := vg.Points(22)
	top := 1.0
	for i, way := range shmbench.Ways {
		vals := make(plotter.Values, len(sizes))
		for j, n := range sizes {
			if row := r.Row(way, n); row != nil && row.Handover() > logFloor {
				vals[j] = math.Log10(row.Handover() / logFloor)
				top = max(top, vals[j])
			}
		}
		bc, err := Bars(vals, width, wayColor[way])
		if err != nil {
			return nil, err
		}
		bc.Offset = (vg.Length(i) - 0.5) * width
		p.Add(bc)
		p.Legend.Add(map[string]string{shmbench.WaySocket: "through a socket: the bytes, copied twice",
			shmbench.WayShm: "through a shared pool: an 8-byte Ref"}[way], bc)
	}
	var names []string
	for _, n := range sizes {
		names = append(names, FormatBytes(uint64(n))+" payload")
	}
	p.NominalX(names...)
	p.Y.Min, p.Y.Max = 0, math.Ceil(top)+1 // a decade of room above the bars for the legend
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	return p, nil
}
