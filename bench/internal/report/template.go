package report

import "html/template"

// pageTemplate is the report's index.html: the lessons with their tables
// and plots inline, then the traces.
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
th { vertical-align: bottom; }
.verdict { background: #f0f5fa; padding: 0.4em 0.8em; border-left: 3px solid #1f77b4; }
.fig { white-space: nowrap; }
@media (max-width: 800px) {
  body { margin: 1em auto; padding: 0 0.5em; }
  table { font-size: 0.7em; width: 100%; }
  th, td { padding: 0.15em 0.25em; }
  th { white-space: normal; }
}
th:first-child, td:first-child { text-align: left; }
td.bad { color: #b00; font-weight: bold; }
svg.plot { display: block; margin: 0.5em 0; width: 100%; max-width: 100%; height: auto; }
.note { background: #f6f6f0; padding: 0.4em 0.8em; border-left: 3px solid #cc9; }
.small { color: #666; font-size: 0.85em; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.4em; vertical-align: -0.1em; border: 1px solid #999; }
ul.legend { list-style: none; padding-left: 0.5em; }
table.parts td:first-child { white-space: nowrap; }
</style>
</head>
<body>
<h1>brkmap/alloc: the policies compared</h1>
<p>Each workload below ran under every policy, each run in a fresh process. How each column is measured:</p>
<ul>
<li><b>resident</b>, for this allocator's policies: mincore over its own memory (the region up to its break and every live
mapping), sampled during the run — every few milliseconds, each time the live bytes pass their peak by 1/32, and after every
allocation or free of 64 KiB or more — and at each named moment.</li>
<li><b>resident</b>, for glibc (<i>libc</i>): the process's RSS growth, with the peak from VmHWM — the measure of a C
replayer. The Go runtime is made to keep still first, so that the growth is glibc's: the trace (or the workload's
tables) is in memory before the start, the garbage collector runs once and is then off for the run, the sampler's room is
reserved and written through, /proc is read without allocating, and the run is made on the main thread, so glibc serves
it from its main arena as it serves a C program. <code>results.json</code> has beside it glibc's own count of its heap
(mallinfo2: arena + hblkhd, <code>libc_heap_peak_bytes</code>) and what the Go runtime still grew
(<code>go_runtime_growth_bytes</code>).</li>
<li><b>where the memory was</b> (the stacked bars): at each policy's peak (of its samples within 1/64 of its highest
resident memory, the one with the most live bytes), the
allocator's <code>Stats().Breakdown()</code>, whose parts sum exactly to the committed bytes (read from the allocator's
counters, no guess), and beside them the resident memory measured by mincore at the same sample. The parts, bottom up:
<ul class="legend">{{range .Parts}}<li><span class="swatch" style="background: {{.Color}}"></span><b>{{.Name}}</b>: {{.About}}.</li>{{end}}</ul>
Committed but not resident: pages released, and pages never touched. glibc's bar is its peak RSS growth, measured as the
resident column below; glibc's own count of its heap (mallinfo2) is in the table under the bars.</li>
<li><b>time</b>: the run's own time, the sampler's excluded; <b>faults</b>: the process's minor page faults during the run.</li>
<li><b>frag</b>: peak resident / peak live (requested bytes). It is below 1 when a workload writes only part of its blocks:
a page never touched is never resident.</li>
<li><b>trapped</b>: the free memory below the break still resident at the end (n/a for glibc, whose free pages cannot be
seen from here).</li>
<li><b>score</b>: the geometric mean of peak resident and system calls, each relative to the best of this allocator's
policies (1 is best on both). Time is shown but not scored: one run's time on a shared machine flips ranks between
identical runs. glibc's system calls cannot be counted here, so it has no score.</li>
</ul>
<p>The plots put every policy on one axis aligned on the run's named moments (a dot on each line): between two moments
each policy's own time runs linearly, so the same x is the same phase of the work; the legend gives each policy's total
time. A line breaks where the sampler did not look for a while, rather than drawing a straight line across.</p>
<ul>{{range .Policies}}<li><b>{{.Name}}</b>: {{.About}}</li>{{end}}</ul>
<p class="small">{{.When}} · {{.Go}} {{.OS}} · {{.CPUs}} CPUs · vm.max_map_count {{.MaxMapCount}}{{if ne .Scale 1.0}} · workloads scaled by {{.Scale}}{{end}}.
One run each: time on a shared machine is noisy; memory and system calls are not.</p>

{{define "table"}}<div class="tablewrap"><table>
<tr><th>policy</th><th>time</th><th>syscalls</th><th>faults</th><th>peak live</th><th>peak resident</th><th>final resident</th><th>frag</th><th>trapped</th><th>score</th>{{if .Ops}}<th>ops/s</th>{{end}}</tr>
{{range .Rows}}<tr><td{{if not .OK}} class="bad"{{end}}>{{.Policy}}{{if not .OK}} (failed){{end}}</td><td>{{.Time}}</td><td>{{.Syscalls}}</td><td>{{.Faults}}</td><td>{{.PeakLive}}</td><td>{{.PeakResident}}</td><td>{{.FinalResident}}</td><td>{{.Frag}}</td><td>{{.Trapped}}</td><td>{{.Score}}</td>{{if $.Ops}}<td>{{.OpsPerSec}}</td>{{end}}</tr>
{{end}}</table></div>{{end}}

{{define "breakdown"}}{{if .Breakdown}}<div class="breakdown" data-name="{{.Name}}">{{.Breakdown.SVG}}
{{with .BreakdownTable}}<div class="tablewrap"><table class="parts">
<tr><th>at the peak</th>{{range .Policies}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr><td>{{if .Color}}<span class="swatch" style="background: {{.Color}}"></span>{{end}}{{.Name}}</td>{{range .Cells}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table></div>{{end}}
<p class="small">Each bar is one policy's memory at its peak — of its samples within 1/64 of its highest resident memory,
the one with the most live bytes — split as the allocator's Stats split it (the parts are explained at the top of the page); the black tick is the
resident memory measured at that sample. glibc's bar is its peak resident growth, measured from outside: glibc does not say where its memory goes.</p></div>{{end}}{{end}}

{{range .Sections}}
<h2 id="{{.Name}}">{{.Name}}</h2>
<p><i>{{.Title}}.</i></p>
<p>{{.Lesson}}</p>
{{template "table" (dict .Rows false)}}
{{with .Verdict}}<p class="verdict">{{.}}</p>{{end}}
{{if .FragBelowOne}}<p class="small">frag below 1: this workload writes only part of its blocks, and untouched pages are never resident.</p>{{end}}
{{range .Notes}}<p class="note">{{.}}</p>{{end}}
{{range .Rows}}{{if .Error}}<p class="note">{{.Policy}}: {{.Error}}</p>{{end}}{{end}}
{{with .Resident}}{{.SVG}}{{end}}
{{template "breakdown" .}}
{{with .Threshold}}{{.SVG}}<p class="small">The threshold as this allocator's Stats report it at each sample; a cross marks
each sample where a free had just raised it (glibc slides its own threshold the same way, but does not report it).</p>{{end}}
{{with .Mappings}}{{.SVG}}<p class="small">The process's mappings (lines of /proc/self/maps) at each sample, against the kernel's cap.</p>{{end}}
{{if .Region}}<div class="region" data-name="{{.Name}}" data-rows="{{.RegionRows}}">{{.Region.SVG}}</div><p class="small">Blue: pages of live blocks and slabs. Red: free pages still resident (trapped below a live block, or not yet trimmed). Grey: free pages given back. Blocks in their own mappings are not part of the region.</p>{{end}}
{{end}}

{{if .Traces}}
<h2 id="traces">Traces</h2>
<p>The malloc-lab traces of <code>{{.TraceDir}}</code>, replayed with every byte of every block written at allocation
and checked before it is freed or moved. Peak live is the trace's own; ops/s counts the replay loop only.</p>
{{range .Traces}}
<h3>{{.Name}}</h3>
{{template "table" (dict .Rows true)}}
{{with .Verdict}}<p class="verdict">{{.}}</p>{{end}}
{{range .Rows}}{{if .Error}}<p class="note">{{.Policy}}: {{.Error}}</p>{{end}}{{end}}
{{with .Resident}}{{.SVG}}{{end}}
{{template "breakdown" .}}
{{with .Threshold}}{{.SVG}}{{end}}
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
// Mark every element wider than the viewport (the test reads these too).
var wide = [];
document.querySelectorAll("body *").forEach(function (el) {
  var r = el.getBoundingClientRect();
  if (r.width > 0 && (r.right > document.documentElement.clientWidth + 1 || r.left < -1)) {
    wide.push(el.tagName.toLowerCase() + (el.className && el.className.baseVal === undefined ? "." + el.className : ""));
  }
});
document.body.setAttribute("data-viewport", document.documentElement.clientWidth);
document.body.setAttribute("data-too-wide", wide.join(" "));
</script>
</body>
</html>
`))
