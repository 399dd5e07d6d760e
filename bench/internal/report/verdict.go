package report

import (
	"fmt"
	"html/template"
	"strconv"
	"strings"

	"github.com/brkmap/alloc/bench/internal/harness"
)

// fig is a figure quoted in the page's prose: the text shown, and the
// raw value(s) of results.json it comes from (the report's test checks
// every one against the file). A ratio carries both of its terms.
func fig(text string, values ...float64) template.HTML {
	var vs []string
	for _, v := range values {
		vs = append(vs, strconv.FormatFloat(v, 'f', -1, 64))
	}
	return template.HTML(`<span class="fig" data-v="` + strings.Join(vs, " ") + `">` +
		template.HTMLEscapeString(text) + `</span>`)
}

// FormatRatio formats a/b as "8.0×".
func FormatRatio(a, b float64) string {
	if b == 0 {
		return "∞×"
	}
	return fmt.Sprintf("%.1f×", a/b)
}

// verdict is the sentence a learner wants from a workload's table: which
// policy won on memory, which on time and which on system calls, with the
// figures that say why. Every figure is a fig of this run's results.
func verdict(results []*harness.Result) template.HTML {
	var ok []*harness.Result
	for _, r := range results {
		if r.OK {
			ok = append(ok, r)
		}
	}
	if len(ok) < 2 {
		return ""
	}
	by := func(less func(a, b *harness.Result) bool, rs []*harness.Result) (lo, hi *harness.Result) {
		lo, hi = rs[0], rs[0]
		for _, r := range rs[1:] {
			if less(r, lo) {
				lo = r
			}
			if less(hi, r) {
				hi = r
			}
		}
		return lo, hi
	}
	esc := template.HTMLEscapeString
	var b strings.Builder
	memLo, memHi := by(func(a, b *harness.Result) bool { return a.PeakResidentBytes < b.PeakResidentBytes }, ok)
	tied := func(f func(*harness.Result) float64, best *harness.Result) string {
		var names []string
		for _, r := range ok {
			if f(r) <= f(best)*1.02 {
				names = append(names, "<b>"+esc(r.Policy)+"</b>")
			}
		}
		return strings.Join(names, ", ")
	}
	peak := func(r *harness.Result) float64 { return float64(r.PeakResidentBytes) }
	fmt.Fprintf(&b, "Memory: %s held the least at the peak (%s)", tied(peak, memLo),
		fig(FormatBytes(memLo.PeakResidentBytes), peak(memLo)))
	if peak(memHi) >= 1.1*peak(memLo) {
		fmt.Fprintf(&b, "; <b>%s</b> the most, %s that (%s", esc(memHi.Policy),
			fig(FormatRatio(peak(memHi), peak(memLo)), peak(memHi), peak(memLo)),
			fig(FormatBytes(memHi.PeakResidentBytes), peak(memHi)))
		if memHi.Fragmentation >= 1.5 {
			fmt.Fprintf(&b, ", %s resident per live byte", fig(fmt.Sprintf("%.2f", memHi.Fragmentation), memHi.Fragmentation))
		}
		if memHi.TrappedBytes > 0 {
			fmt.Fprintf(&b, ", %s still trapped below the break at the end", fig(FormatBytes(memHi.TrappedBytes), float64(memHi.TrappedBytes)))
		}
		b.WriteString(")")
	} else {
		b.WriteString("; every other policy within a tenth of it")
	}
	b.WriteString(". ")
	tLo, tHi := by(func(a, b *harness.Result) bool { return a.Seconds < b.Seconds }, ok)
	fmt.Fprintf(&b, "Time: <b>%s</b> was fastest (%s, %s page faults), <b>%s</b> slowest (%s, %s page faults). ",
		esc(tLo.Policy), fig(FormatSeconds(tLo.Seconds), tLo.Seconds), fig(FormatCount(uint64(tLo.MinorFaults)), float64(tLo.MinorFaults)),
		esc(tHi.Policy), fig(FormatSeconds(tHi.Seconds), tHi.Seconds), fig(FormatCount(uint64(tHi.MinorFaults)), float64(tHi.MinorFaults)))
	var counted []*harness.Result
	for _, r := range ok {
		if _, c := r.Syscalls(); c {
			counted = append(counted, r)
		}
	}
	if len(counted) >= 2 {
		calls := func(r *harness.Result) uint64 { n, _ := r.Syscalls(); return n }
		sLo, sHi := by(func(a, b *harness.Result) bool { return calls(a) < calls(b) }, counted)
		fmt.Fprintf(&b, "System calls: <b>%s</b> made the fewest (%s), <b>%s</b> the most (%s).",
			esc(sLo.Policy), fig(FormatCount(uint64(calls(sLo))), float64(calls(sLo))),
			esc(sHi.Policy), fig(FormatCount(uint64(calls(sHi))), float64(calls(sHi))))
	}
	return template.HTML(b.String())
}
