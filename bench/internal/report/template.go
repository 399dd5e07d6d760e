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
