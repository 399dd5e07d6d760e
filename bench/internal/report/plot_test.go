package report

import (
	"strings"
	"testing"
	"time"

	"github.com/brkmap/alloc/bench/internal/harness"
	"github.com/brkmap/alloc/bench/internal/sampler"
	"github.com/brkmap/alloc/stats"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func series(at ...any) []sampler.Sample {
	var s []sampler.Sample
	for i := 0; i < len(at); i += 2 {
		s = append(s, sampler.Sample{At: at[i].(time.Duration), Label: at[i+1].(string)})
	}
	return s
}

// Two runs of different speeds put their named moments at one x, and
// their samples between moments in proportion to their own time.
func TestTimeline(t *testing.T) {
	ms := time.Millisecond
	fast := &harness.Result{Policy: "a", Series: series(0*ms, "start", 1*ms, "", 2*ms, "mid", 4*ms, "end")}
	slow := &harness.Result{Policy: "b", Series: series(0*ms, "start", 60*ms, "mid", 80*ms, "", 100*ms, "end")}
	tl := newTimeline([]*harness.Result{fast, slow})
	require.Equal(t, []string{"start", "mid", "end"}, tl.names)
	fx, sx := tl.x(fast), tl.x(slow)
	assert.Equal(t, fx[2], sx[1], "mid at one x")
	assert.Equal(t, 0.0, fx[0])
	assert.Equal(t, 100.0, fx[3])
	assert.Equal(t, 100.0, sx[3])
	assert.InDelta(t, (50+60)/2.0, fx[2], 1e-9, "the mean of each run's own place")
	assert.InDelta(t, fx[2]/2, fx[1], 1e-9, "halfway to mid in its own time")
	assert.InDelta(t, sx[1]+(100-sx[1])/2, sx[2], 1e-9)

	close := newTimeline([]*harness.Result{{Series: series(0*ms, "start", 99*ms, "done", 100*ms, "end")}})
	// done at 99, end pushed to 99+minApart, then all squeezed into 0–100.
	assert.InDelta(t, minApart*100/(99.0+minApart), close.xs[2]-close.xs[1], 1e-9, "moments kept apart for their names")
	assert.LessOrEqual(t, close.xs[2], 100.0)
}

// Lines break where the sampler did not look; a gap is at least 5 ms.
func TestGap(t *testing.T) {
	assert.Equal(t, 5*time.Millisecond, gap(series(0*time.Millisecond, "start", 40*time.Millisecond, "end")))
	assert.Equal(t, 25*time.Millisecond, gap(series(0*time.Second, "start", time.Second, "end")))
}

// Region rows leave out empty maps and name the highest-resident one.
func TestRegionRows(t *testing.T) {
	full := stats.RegionMap{Break: 1 << 20, Extents: []stats.Extent{{Offset: 0, Len: 1 << 20, State: stats.PageLive}}}
	r := &harness.Result{Policy: "threshold", PeakMap: &full, Moments: []harness.Moment{
		{Label: "allocated", Map: full}, {Label: "end", Map: stats.RegionMap{}}}}
	none := &harness.Result{Policy: "mmap", PeakMap: &stats.RegionMap{}, Moments: []harness.Moment{{Label: "allocated"}}}
	rows := regionRows([]*harness.Result{r, none})
	var names []string
	for _, row := range rows {
		names = append(names, row.Name)
	}
	assert.Equal(t, []string{"threshold: allocated", "threshold: at its highest resident"}, names)
	assert.Nil(t, regionPlot("x", nil))
}

func TestFormatNumber(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.25: "0.25", 1.5: "1.5", 12: "12", 0.125: "0.125",
		250: "250", 65530: "65,530", 425000: "425,000", 1.234e6: "1,234,000", -3: "-3"} {
		assert.Equal(t, want, FormatNumber(v), "%v", v)
	}
}

// The sentence names the winners with their figures, each a fig span
// holding the raw value, and leaves glibc out of the system calls.
func TestVerdict(t *testing.T) {
	calls := func(n uint64) *uint64 { return &n }
	z := calls(0)
	rs := []*harness.Result{
		{Policy: "threshold", OK: true, Seconds: 0.002, PeakResidentBytes: 1 << 20, Fragmentation: 1,
			MmapCalls: calls(5), MunmapCalls: z, MadviseCalls: z, MprotectCalls: z, MinorFaults: 300},
		{Policy: "mmap", OK: true, Seconds: 0.009, PeakResidentBytes: 8 << 20, Fragmentation: 8,
			MmapCalls: calls(4000), MunmapCalls: calls(4000), MadviseCalls: z, MprotectCalls: z, MinorFaults: 2100},
		{Policy: "libc", OK: true, Seconds: 0.001, PeakResidentBytes: 1 << 20, Fragmentation: 1},
	}
	v := string(verdict(rs))
	assert.Contains(t, v, `<b>threshold</b>, <b>libc</b> held the least at the peak (<span class="fig" data-v="1048576">1.00 MiB</span>)`)
	assert.Contains(t, v, `<b>mmap</b> the most, <span class="fig" data-v="8388608 1048576">8.0×</span>`)
	assert.Contains(t, v, `<span class="fig" data-v="8">8.00</span> resident per live byte`)
	assert.Contains(t, v, `<b>libc</b> was fastest`)
	assert.Contains(t, v, `<b>mmap</b> the most (<span class="fig" data-v="8000">8,000</span>)`)
	assert.Equal(t, 1, strings.Count(v, "System calls"))
	assert.Empty(t, verdict(rs[:1]), "one policy: nothing to compare")
}
