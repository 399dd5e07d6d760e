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
tr.first td { border-top: 1px solid #bbb; }
table.shm td { white-space: nowrap; }
.shm-finding { background: #f0f5fa; padding: 0.4em 0.8em; border-left: 3px solid #2ca02c; }
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
{{with .Shared}}<p>After the workloads, <a href="#shared-pool">the shared pool</a>: payloads handed to a worker process
through a socket and through a pool both processes map, measured in the same run.</p>{{end}}
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


{{with .Shared}}
<h2 id="shared-pool">shared-pool</h2>
<p><i>Handing a payload to a worker process: through a socket, or through a shared pool.</i></p>
<p>A service that hands a large payload to a worker process (a sidecar, one of a pool of workers) usually writes it into
a Unix socket or a pipe. Every byte is then copied twice: into the kernel by the sender's <code>write</code>, and out of it
by the receiver's <code>read</code> into a buffer of its own — in pieces the size of the socket's buffer, each piece a
wake-up of the other side. A shared pool (package <code>shm</code>, over a memfd that both processes map) lets the sender
write the payload once, where the receiver will read it, and send only the block's <code>Ref</code>: 8 bytes.</p>
<p>Measured here, in this run: the parent (this bench) starts a worker, this same binary again, with a Unix socket and the
pool's file as inherited descriptors. For each payload size, each way in turn hands over the payloads one at a time: the
parent produces the payload (for the pool: <code>Alloc</code>, then writes it in place), hands it over, and waits for the
child's one-byte answer, which the child sends once it has read every word of the payload and checked it against the
pattern (and, for the pool, called <code>Free</code>). Both ways write each payload once and read it once; they differ only
in how it travels. <b>time</b> is the median of the parent's round trips; <b>CPU</b> is each side's working thread
(its CPU clock, user + system) over the payloads, divided by their number, and of the two sides' CPU time together,
what went to writing the payload (the parent) and reading it (the child) — timed apart, the same work both ways — and
what is left: what <b>handing it over</b> cost; <b>socket bytes</b> are what the parent wrote into
the socket, and <b>copied</b> every byte that crossed between a process and the kernel through it (written and read, by
both sides, answers included) — counted as <code>write</code> and <code>read</code> returned them. A first payload of each
size is a warm-up, not counted.</p>
{{if .Skipped}}<p class="note">Not measured in this run: {{.Skipped}}</p>{{else}}
<div class="tablewrap"><table class="shm">
<tr><th>payload</th><th>way</th><th>payloads</th><th>time</th><th>socket bytes</th><th>copied</th><th>parent CPU</th><th>child CPU</th><th>of both: on the payload</th><th>of both: handing over</th></tr>
{{range .Rows}}<tr{{if .First}} class="first"{{end}}><td>{{if .First}}{{.Size}}{{end}}</td><td{{if not .OK}} class="bad"{{end}}>{{.Way}}{{if not .OK}} (failed){{end}}</td><td>{{.Payloads}}</td><td>{{.Time}}</td><td>{{.Socket}}</td><td>{{.Copied}}</td><td>{{.ParentCPU}}</td><td>{{.ChildCPU}}</td><td>{{.Work}}</td><td>{{.Handover}}</td></tr>
{{end}}</table></div>
<p class="small">Each row per payload: time is the median of the round trips, the rest means over the payloads (the child's
minor page faults are in the JSON file). Times on a shared machine are noisy; bytes are not.</p>
{{with .Finding}}<p class="shm-finding">{{.}}</p>{{end}}
{{with .Plot}}{{.SVG}}<p class="small">The last column of the table, on a log scale: what handing one payload over cost the
two processes' CPUs, less their work on the payload itself.</p>{{end}}
{{with .Error}}<p class="note">The measurement failed: {{.}}</p>{{end}}
{{range .Rows}}{{if .Error}}<p class="note">{{.Size}} {{.Way}}: {{.Error}}</p>{{end}}{{end}}
<p><b>Where the copy goes.</b> Through the socket, the handing over grows with the payload: the parent's <code>write</code>
copies every byte into the kernel and the child's <code>read</code> copies it out, in pieces no larger than the socket's
buffer, far smaller than a large payload, each piece a system call and a wake-up. Through the pool, nothing is copied: the
parent's writes are the payload's one production, the child's reads its one consumption, and what travels is one 8-byte
word and the answer; what is left is the pool's own work (its lock taken for <code>Alloc</code>, <code>Bytes</code> and
<code>Free</code>, an undo log written) and the one round trip. At the small sizes that round trip — a system call on
each side, a wake-up of each — is most of the cost, and both ways pay it: a pool saves copies, not messages. Reading in
place can cost the reader a little more than reading its own copy: the bytes come from the writer's cache or from memory,
where a copy the reader has just made is in its own cache.</p>
{{with .Block}}<p><b>Why a Ref is an offset.</b> The warm-up payload of {{.Size}}: the parent sent Ref
<code>{{.Ref}}</code>, the block at offset <code>{{.Offset}}</code> in the pool's file. The parent wrote it at address
<code>{{.ParentAddr}}</code> (it mapped the pool at <code>{{.ParentBase}}</code>); the child read it at
<code>{{.ChildAddr}}</code> (its mapping starts at <code>{{.ChildBase}}</code>). The same pages, at an address each process
chose for itself: only the offset means the same thing to both, so the Ref is the offset — with the pool's 16-bit tag above
bit 48, so that another pool's Ref is refused — and nothing inside the pool, no free list, no bin, no root, holds an
address.</p>{{end}}
<p><b>What the pool's memory looks like.</b> The pool's <code>Stats</code>, read under its lock from the metadata in the
shared mapping — by the parent when the pool was made and at the end, and by the <i>child</i> while it held the largest
payload, a block the parent allocated. Beside them, the memory the pool's file holds (fstat of the memfd): pages written
once stay with the file after their blocks are freed, and are reused by the next allocation, so the pool costs, at most,
its size.</p>
<div class="tablewrap"><table class="shm-stats">
<tr><th></th><th>just made (parent)</th><th>held by the child</th><th>at the end (parent)</th></tr>
{{range .Stats}}<tr><td>{{.Name}}</td><td>{{.Empty}}</td><td>{{.Held}}</td><td>{{.After}}</td></tr>
{{end}}</table></div>
{{end}}
<p><b>A process that dies holding the lock.</b> The pool's metadata is shared, and so is its lock: one word in the pool,
holding the holder's pid. A mutex whose holder is killed would stay locked forever; here a waiter that finds the holder
dead takes the lock over and rolls back the dead process's half-done operation from an undo log in the pool, so the pool is
exactly as before that operation (the row <i>operations rolled back</i> of the table above counts them). The
crash tests kill a child at each of the 285 steps of a scripted sequence of operations and check the pool after each
(<code>go test ./shm -run '^TestCrash' -v</code>): see
<a href="https://github.com/brkmap/alloc/blob/main/docs/shared.md#the-lock-and-a-process-that-dies-holding-it">docs/shared.md,
the lock and a process that dies holding it</a>, and its <a href="https://github.com/brkmap/alloc/blob/main/docs/shared.md#the-lesson">lesson</a>.</p>
<p class="small">Every figure of this section is in <code>{{$.SharedFile}}</code> beside this page.</p>
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
