package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/brkmap/alloc/bench/internal/harness"
	"github.com/brkmap/alloc/bench/internal/report"
	"github.com/brkmap/alloc/bench/internal/shmbench"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The main job, shrunk, writes its report folder, and the page is checked
// for what a learner could be misled by: every plotted series has a sample
// at each named moment of its workload, no region row is empty, every
// figure quoted in the prose is one of results.json's, and no measured
// figure is written into a lesson's text. Rendered in headless Chromium at
// 1400 and 700 px, every plot is laid out and drawn, no element is wider
// than the viewport, and the screenshots (left in the report folder, to be
// looked at) show the policies' colours. The shared pool's lesson is on
// the page with the figures of shared-pool.json (checkSharedSection).
func TestMainJobReport(t *testing.T) {
	dir := t.TempDir()
	traces := filepath.Join(dir, "traces")
	require.NoError(t, os.Mkdir(traces, 0o755))
	writeTrace(t, traces, "gen", 4)
	out := filepath.Join(dir, "report")
	if d := os.Getenv("BRKMAP_REPORT_TEST_OUT"); d != "" {
		out = d // keep the folder, to look at the screenshots
	}
	require.NoError(t, run([]string{"-out", out, "-traces", traces, "-scale", "0.05",
		"-workloads", "pinned-top,large-temp,mmap-wall"}))

	page, err := os.ReadFile(filepath.Join(out, "index.html"))
	require.NoError(t, err)
	plots := len(regexp.MustCompile(`<svg class="plot"`).FindAll(page, -1))
	svgs, _ := filepath.Glob(filepath.Join(out, "*.svg"))
	assert.Equal(t, len(svgs), plots, "every plot file is on the page")
	for _, f := range []string{"results.json", "pinned-top-resident.svg", "pinned-top-region.svg",
		"large-temp-resident.svg", "large-temp-threshold.svg", "mmap-wall-mappings.svg", "gen-resident.svg",
		"pinned-top-breakdown.svg", "large-temp-breakdown.svg", "mmap-wall-breakdown.svg", "gen-breakdown.svg"} {
		assert.FileExists(t, filepath.Join(out, f))
	}
	assert.NotContains(t, string(page), `src="`, "the page is self-contained")
	assert.Contains(t, string(page), "The pinned top.")

	raw, err := os.ReadFile(filepath.Join(out, "results.json"))
	require.NoError(t, err)
	var results []struct {
		Trace, Policy string
		Series        []struct{ Label string }
		PeakMap       *struct {
			Break   uint64
			Extents []any
		} `json:"peak_map"`
		Moments []struct {
			Label string
			Map   struct {
				Break   uint64
				Extents []any
			}
		}
	}
	require.NoError(t, json.Unmarshal(raw, &results))

	// Every run of this allocator has its breakdown at the peak, whose
	// parts sum exactly to its committed bytes; glibc has none. The page
	// draws one set of bars per workload and trace, with its table.
	var withBreakdown []harness.Result
	require.NoError(t, json.Unmarshal(raw, &withBreakdown))
	for _, r := range withBreakdown {
		if r.Policy == "libc" || !r.OK {
			assert.Nil(t, r.PeakBreakdown, "%s under %s", r.Trace, r.Policy)
			continue
		}
		b := r.PeakBreakdown
		require.NotNil(t, b, "%s under %s has a breakdown at its peak", r.Trace, r.Policy)
		assert.Equal(t, b.CommittedBytes, b.RequestedBytes+b.ClassRoundingBytes+b.PageRoundingBytes+b.SlabFreeBytes+
			b.SlabTailBytes+b.CachedBytes+b.EmptySlabBytes+b.DirtyBytes+b.ReleasedBytes+b.QuarantineBytes+
			b.FitRoundingBytes+b.FitFreeBytes+b.FitReleasedBytes,
			"%s under %s: the parts sum to the committed bytes", r.Trace, r.Policy)
		assert.NotZero(t, b.ResidentBytes, "%s under %s", r.Trace, r.Policy)
	}
	bars := regexp.MustCompile(`<div class="breakdown" data-name="([^"]*)">`).FindAllSubmatch(page, -1)
	assert.Len(t, bars, 4, "pinned-top, large-temp, mmap-wall and the trace")
	parts := len(report.PartNames())
	assert.Equal(t, (len(bars)+1)*parts, strings.Count(string(page), `<span class="swatch"`),
		"each table lists every part with its colour, as the legend at the top does")

	// Every series has a sample at each named moment of its workload.
	labels := map[string]map[string]bool{}
	for _, r := range results {
		if labels[r.Trace] == nil {
			labels[r.Trace] = map[string]bool{}
		}
		for _, s := range r.Series {
			if s.Label != "" {
				labels[r.Trace][s.Label] = true
			}
		}
	}
	for _, r := range results {
		have := map[string]bool{}
		for _, s := range r.Series {
			have[s.Label] = true
		}
		for l := range labels[r.Trace] {
			assert.True(t, have[l], "%s under %s has no sample at %q", r.Trace, r.Policy, l)
		}
	}

	// No region row is empty: each names a map with a break and extents.
	rowsRE := regexp.MustCompile(`<div class="region" data-name="([^"]*)" data-rows="([^"]*)"`)
	regions := rowsRE.FindAllSubmatch(page, -1)
	assert.Equal(t, 3, len(regions), "pinned-top, large-temp and mmap-wall use the region")
	for _, m := range regions {
		var rows []string
		require.NoError(t, json.Unmarshal([]byte(htmlUnescape(string(m[2]))), &rows))
		require.NotEmpty(t, rows)
		for _, row := range rows {
			policy, label, _ := strings.Cut(row, ": ")
			found := false
			for _, r := range results {
				if r.Trace != string(m[1]) || r.Policy != policy {
					continue
				}
				if label == "at its highest resident" && r.PeakMap != nil {
					found = found || (r.PeakMap.Break > 0 && len(r.PeakMap.Extents) > 0)
				}
				for _, mo := range r.Moments {
					if mo.Label == label && mo.Map.Break > 0 && len(mo.Map.Extents) > 0 {
						found = true
					}
				}
			}
			assert.True(t, found, "%s: region row %q has a map with pages", m[1], row)
		}
	}

	// Every figure of the prose is one of results.json's numbers, shown as
	// the report formats it, and the sentences have no figure outside one.
	numbers := jsonNumbers(raw)
	figRE := regexp.MustCompile(`<span class="fig" data-v="([^"]*)">([^<]*)</span>`)
	verdicts := regexp.MustCompile(`<p class="verdict">(.*?)</p>`).FindAllSubmatch(page, -1)
	assert.GreaterOrEqual(t, len(verdicts), 4, "a sentence per workload and per trace")
	for _, v := range verdicts {
		for _, f := range figRE.FindAllSubmatch(v[1], -1) {
			var vals []float64
			for _, s := range strings.Fields(string(f[1])) {
				x, err := strconv.ParseFloat(s, 64)
				require.NoError(t, err)
				assert.True(t, numbers[x], "figure %q (%v) is in results.json", f[2], x)
				vals = append(vals, x)
			}
			assert.Contains(t, formats(vals), htmlUnescape(string(f[2])), "figure %q shows its value", f[2])
		}
		rest := figRE.ReplaceAll(v[1], nil)
		assert.NotRegexp(t, `\d`, string(rest), "no number outside a figure: %s", rest)
	}
	lessons := regexp.MustCompile(`(?s)<h2 id="[^"]*">[^<]*</h2>\s*<p><i>.*?</i></p>\s*<p>(.*?)</p>`).FindAllSubmatch(page, -1)
	assert.NotEmpty(t, lessons)
	for _, l := range lessons {
		assert.NotRegexp(t, `\d\s*(ms|µs|s|faults|calls)\b`, string(l[1]), "a lesson's text quotes no measurement")
	}

	checkSharedSection(t, out, page)

	chromium := findChromium()
	if chromium == "" {
		t.Skip("chromium not installed (CI installs it): the page was written but not rendered")
	}
	headless := func(args ...string) []byte {
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
			"--user-data-dir=" + t.TempDir()}
		cmd := exec.Command(chromium, append(append(base, args...), "file://"+filepath.Join(out, "index.html"))...)
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		done := make(chan error, 1)
		require.NoError(t, cmd.Start())
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
			t.Fatal("chromium did not finish in 2 minutes")
		}
		return stdout.Bytes()
	}

	for _, width := range []int{1400, 700} {
		dom := headless(fmt.Sprintf("--window-size=%d,3000", width), "--dump-dom")
		rendered := regexp.MustCompile(`data-rendered="yes"`).FindAll(dom, -1)
		assert.Len(t, rendered, plots, "%d px: every plot is laid out and drawn", width)
		assert.NotContains(t, string(dom), `data-rendered="no"`)
		vp := regexp.MustCompile(`data-viewport="(\d+)"`).FindSubmatch(dom)
		require.NotNil(t, vp, "the page's script ran")
		n, _ := strconv.Atoi(string(vp[1]))
		assert.InDelta(t, width, n, 20, "the viewport is the window")
		assert.Contains(t, string(dom), `data-too-wide=""`, "%d px: no element wider than the viewport", width)

		shot := filepath.Join(out, fmt.Sprintf("screenshot-%d.png", width))
		headless(fmt.Sprintf("--window-size=%d,6000", width), "--screenshot="+shot)
		f, err := os.Open(shot)
		require.NoError(t, err)
		img, err := png.Decode(f)
		f.Close()
		require.NoError(t, err)
		// Count the pixels of the colours plots use: the threshold line and
		// live pages (blue) and the released pages (grey).
		var blue, grey int
		b := img.Bounds()
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				r, g, bl, _ := img.At(x, y).RGBA()
				r, g, bl = r>>8, g>>8, bl>>8
				switch {
				case near(r, 0x1f) && near(g, 0x77) && near(bl, 0xb4):
					blue++
				case near(r, 0xd0) && near(g, 0xd0) && near(bl, 0xd0):
					grey++
				}
			}
		}
		assert.Greater(t, blue, 1000, "%d px: live pages and the threshold line are drawn", width)
		assert.Greater(t, grey, 1000, "%d px: released pages are drawn", width)
	}
}

// checkSharedSection checks the shared pool's lesson on the page: its
// table shows shared-pool.json's rows, formatted, and every figure of its
// sentence is one of that file's numbers, shown as the report formats it.
func checkSharedSection(t *testing.T, out string, page []byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(out, report.SharedFile))
	require.NoError(t, err, "the run measured the shared pool")
	var res shmbench.Result
	require.NoError(t, json.Unmarshal(raw, &res))
	require.True(t, res.OK, res.Error)
	require.Len(t, res.Rows, 2*len(shmbench.DefaultConfig().Sizes), "each way at each size")
	html := string(page)
	require.Contains(t, html, `<h2 id="shared-pool">shared-pool</h2>`)
	assert.FileExists(t, filepath.Join(out, "shared-pool-handover.svg"))

	table := regexp.MustCompile(`(?s)<table class="shm">(.*?)</table>`).FindStringSubmatch(html)
	require.NotNil(t, table, "the section has its table")
	rows := regexp.MustCompile(`(?s)<tr[^>]*>(.*?)</tr>`).FindAllStringSubmatch(table[1], -1)
	require.Len(t, rows, 1+len(res.Rows), "a header and a row per way and size")
	cellRE := regexp.MustCompile(`<td[^>]*>(.*?)</td>`)
	for i, r := range res.Rows {
		var cells []string
		for _, c := range cellRE.FindAllStringSubmatch(rows[i+1][1], -1) {
			cells = append(cells, htmlUnescape(c[1]))
		}
		assert.Positive(t, r.MedianSeconds, "%s %d", r.Way, r.Size)
		assert.Positive(t, r.ParentCPU+r.ChildCPU, "%s %d", r.Way, r.Size)
		assert.Equal(t, []string{cells[0], r.Way, report.FormatCount(uint64(r.Payloads)), report.FormatMicro(r.MedianSeconds),
			report.FormatBytes(uint64(r.SocketBytes + 0.5)), report.FormatBytes(uint64(r.CopiedBytes + 0.5)),
			report.FormatMicro(r.ParentCPU), report.FormatMicro(r.ChildCPU), report.FormatMicro(r.ParentWork + r.ChildWork),
			report.FormatMicro(r.Handover())}, cells, "row %d: %s at %d bytes", i, r.Way, r.Size)
		if i%2 == 0 {
			assert.Equal(t, report.FormatBytes(uint64(r.Size)), cells[0], "the first row of a size names it")
		}
	}

	numbers := jsonNumbers(raw)
	finding := regexp.MustCompile(`(?s)<p class="shm-finding">(.*?)</p>`).FindStringSubmatch(html)
	require.NotNil(t, finding, "the sentence from the largest payloads")
	figRE := regexp.MustCompile(`<span class="fig" data-v="([^"]*)">([^<]*)</span>`)
	figs := figRE.FindAllStringSubmatch(finding[1], -1)
	assert.GreaterOrEqual(t, len(figs), 8)
	for _, f := range figs {
		var v []float64
		for _, s := range strings.Fields(f[1]) {
			x, err := strconv.ParseFloat(s, 64)
			require.NoError(t, err)
			assert.True(t, numbers[x], "figure %q (%v) is in %s", f[2], x, report.SharedFile)
			v = append(v, x)
		}
		var want []string
		switch len(v) {
		case 1:
			want = []string{report.FormatMicro(v[0]), report.FormatBytes(uint64(v[0] + 0.5))}
		case 2:
			want = []string{report.FormatRatio(v[0], v[1])}
		case 4: // a handing over: each side's CPU less its work
			want = []string{report.FormatMicro(max(0, v[0]-v[1]) + max(0, v[2]-v[3]))}
		}
		assert.Contains(t, want, htmlUnescape(f[2]), "figure %q shows its value", f[2])
	}
	assert.NotRegexp(t, `\d`, htmlUnescape(figRE.ReplaceAllString(finding[1], "")), "no number outside a figure")

	// The block seen from both processes: one offset, two addresses.
	var big *shmbench.Row
	for i := range res.Rows {
		if res.Rows[i].Way == shmbench.WayShm {
			big = &res.Rows[i]
		}
	}
	require.NotNil(t, big)
	require.NotNil(t, big.Warmup)
	for _, v := range []uint64{big.Warmup.Ref, big.Warmup.Offset, big.Warmup.ParentAddr, big.Warmup.ChildAddr} {
		assert.Contains(t, html, fmt.Sprintf("<code>%#x</code>", v))
	}
	assert.Equal(t, uint64(1), big.Warmup.ChildStats.LiveBlocks, "the child saw the parent's block live")
	assert.Contains(t, html, "docs/shared.md#the-lock-and-a-process-that-dies-holding-it")
}

// With -no-shm the run measures no shared pool: no section, no file.
func TestMainJobNoShm(t *testing.T) {
	out := t.TempDir()
	require.NoError(t, run([]string{"-out", out, "-traces", "", "-scale", "0.01", "-policy", "brk",
		"-workloads", "pinned-top", "-no-shm"}))
	page, err := os.ReadFile(filepath.Join(out, "index.html"))
	require.NoError(t, err)
	assert.NotContains(t, string(page), `id="shared-pool"`)
	assert.NoFileExists(t, filepath.Join(out, report.SharedFile))
	assert.Contains(t, string(page), `id="pinned-top"`, "the rest of the report is there")
}

// jsonNumbers returns every number in a JSON document.
func jsonNumbers(raw []byte) map[float64]bool {
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return nil
	}
	set := map[float64]bool{}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case json.Number:
			if f, err := x.Float64(); err == nil {
				set[f] = true
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return set
}

// formats returns the ways the report may show vals: a ratio of two, or
// one value as bytes, time, a count or a fraction.
func formats(vals []float64) []string {
	if len(vals) == 2 {
		return []string{report.FormatRatio(vals[0], vals[1])}
	}
	v := vals[0]
	out := []string{report.FormatSeconds(v), fmt.Sprintf("%.2f", v)}
	if v >= 0 && v == math.Trunc(v) {
		out = append(out, report.FormatBytes(uint64(v)), report.FormatCount(uint64(v)))
	}
	return out
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&#34;", `"`, "&quot;", `"`, "&amp;", "&", "&lt;", "<", "&gt;", ">", "&#39;", "'").Replace(s)
}

func near(a, b uint32) bool { return a+6 >= b && a <= b+6 }

// findChromium returns the path of a Chromium binary, or "".
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}
