package stats

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/google/pprof/profile"
)

// DefaultProfileRate is the mean number of bytes allocated between two
// sampled allocations, as runtime.MemProfileRate's default: 512 KiB.
const DefaultProfileRate = 512 << 10

// HeapRecord is the sampled allocations of one call stack and one block
// size, like runtime.MemProfileRecord: the counts are of sampled blocks
// only, not yet scaled to estimates.
type HeapRecord struct {
	AllocObjects, AllocBytes int64 // sampled blocks allocated, and their bytes
	FreeObjects, FreeBytes   int64 // of those, freed since
	// Stack holds return addresses as runtime.Callers gives them, the
	// allocating call first.
	Stack []uintptr
}

// InUseObjects returns the sampled blocks still live.
func (r *HeapRecord) InUseObjects() int64 { return r.AllocObjects - r.FreeObjects }

// InUseBytes returns the bytes of the sampled blocks still live.
func (r *HeapRecord) InUseBytes() int64 { return r.AllocBytes - r.FreeBytes }

// HeapProfile is a heap profile of off-heap allocations: the sampled
// records and the rate they were sampled at.
//
// Sampling is by bytes, as the Go runtime's: on average one allocation per
// Rate bytes allocated is recorded, an allocation of s bytes with
// probability 1-exp(-s/Rate). Written out, each record's counts are
// divided by that probability — multiplied by 1/(1-exp(-avg/Rate)), avg
// the record's mean block size — which makes them unbiased estimates of
// every allocation, sampled or not, exactly as runtime/pprof scales the Go
// heap profile. Rate <= 1 means every allocation was recorded and nothing
// is scaled.
type HeapProfile struct {
	Rate    int64
	Records []HeapRecord
	// Hide reports whether a function is the allocator's own entry point
	// (Malloc, Calloc, MakeSlice…): such frames are cut from the allocating
	// end of every stack, so that the leaves are the functions that asked
	// for memory, as in Go's heap profiles. Nil keeps every frame.
	Hide func(function string) bool
	// Time is when the profile was taken; the zero Time means now.
	Time time.Time
}

// scale returns the estimated objects and bytes a record's sampled count
// and bytes stand for: runtime/pprof's scaleHeapSample.
func scale(count, size, rate int64) (int64, int64) {
	if count == 0 || size == 0 {
		return 0, 0
	}
	if rate <= 1 {
		return count, size
	}
	avg := float64(size) / float64(count)
	s := 1 / (1 - math.Exp(-avg/float64(rate)))
	return int64(float64(count) * s), int64(float64(size) * s)
}

// frame is one line of a stack, symbolized.
type frame struct {
	pc       uintptr
	function string
	file     string
	line     int
	entry    uintptr
}

// frames symbolizes stack, expanding inlined calls, and cuts the leading
// frames hide accepts. Each frame keeps the return address it came from.
func frames(stack []uintptr, hide func(string) bool) []frame {
	var out []frame
	for _, pc := range stack {
		// One PC at a time, so each frame is known to belong to its PC.
		fs := runtime.CallersFrames([]uintptr{pc})
		for {
			f, more := fs.Next()
			if len(out) > 0 || hide == nil || !hide(f.Function) {
				out = append(out, frame{pc: pc, function: f.Function, file: f.File, line: f.Line, entry: f.Entry})
			}
			if !more {
				break
			}
		}
	}
	return out
}

// Profile builds the profile in pprof's data model: sample types
// alloc_objects, alloc_space, inuse_objects, inuse_space (the Go heap
// profile's, inuse_space the default), one sample a record, each with a
// "bytes" label holding the record's mean block size.
func (h *HeapProfile) Profile() *profile.Profile {
	t := h.Time
	if t.IsZero() {
		t = time.Now()
	}
	p := &profile.Profile{
		SampleType: []*profile.ValueType{
			{Type: "alloc_objects", Unit: "count"}, {Type: "alloc_space", Unit: "bytes"},
			{Type: "inuse_objects", Unit: "count"}, {Type: "inuse_space", Unit: "bytes"},
		},
		DefaultSampleType: "inuse_space",
		PeriodType:        &profile.ValueType{Type: "space", Unit: "bytes"},
		Period:            h.Rate,
		TimeNanos:         t.UnixNano(),
	}
	// One mapping stands for the program: the locations come symbolized
	// (HasFunctions), so pprof needs no binary to read them.
	exe, _ := os.Executable()
	m := &profile.Mapping{ID: 1, Start: 0, Limit: math.MaxUint64, File: exe,
		HasFunctions: true, HasFilenames: true, HasLineNumbers: true}
	p.Mapping = []*profile.Mapping{m}
	funcs := map[string]*profile.Function{}
	type locKey struct {
		pc  uintptr
		cut int // lines of that PC cut by Hide
	}
	locs := map[locKey]*profile.Location{}
	for i := range h.Records {
		r := &h.Records[i]
		fs := frames(r.Stack, h.Hide)
		var stack []*profile.Location
		for j := 0; j < len(fs); {
			// The frames of one PC (an inlined call and its callers) make
			// one location, innermost line first.
			k := j
			for k < len(fs) && fs[k].pc == fs[j].pc {
				k++
			}
			key := locKey{fs[j].pc, 0}
			if j == 0 {
				key.cut = len(frames([]uintptr{fs[j].pc}, nil)) - (k - j)
			}
			loc := locs[key]
			if loc == nil {
				loc = &profile.Location{ID: uint64(len(p.Location) + 1), Mapping: m, Address: uint64(fs[j].pc)}
				for _, f := range fs[j:k] {
					fn := funcs[f.function]
					if fn == nil {
						fn = &profile.Function{ID: uint64(len(p.Function) + 1), Name: f.function,
							SystemName: f.function, Filename: f.file}
						funcs[f.function] = fn
						p.Function = append(p.Function, fn)
					}
					loc.Line = append(loc.Line, profile.Line{Function: fn, Line: int64(f.line)})
				}
				locs[key] = loc
				p.Location = append(p.Location, loc)
			}
			stack = append(stack, loc)
			j = k
		}
		ao, ab := scale(r.AllocObjects, r.AllocBytes, h.Rate)
		uo, ub := scale(r.InUseObjects(), r.InUseBytes(), h.Rate)
		s := &profile.Sample{Location: stack, Value: []int64{ao, ab, uo, ub}}
		if r.AllocObjects > 0 {
			s.NumLabel = map[string][]int64{"bytes": {r.AllocBytes / r.AllocObjects}}
			s.NumUnit = map[string][]string{"bytes": {"bytes"}}
		}
		p.Sample = append(p.Sample, s)
	}
	return p
}

// Write writes the profile in pprof's format (gzipped protocol buffer),
// for `go tool pprof`.
func (h *HeapProfile) Write(w io.Writer) error {
	p := h.Profile()
	if err := p.CheckValid(); err != nil {
		return fmt.Errorf("stats: heap profile: %w", err)
	}
	return p.Write(w)
}

// WriteText writes the profile in the Go heap profile's legacy text
// format (what /debug/pprof/heap?debug=1 prints): a header with the
// totals, then one line a record, largest in use first — estimated
// in-use objects and bytes, [estimated allocated objects and bytes], the
// stack's addresses — each followed by its symbolized frames.
func (h *HeapProfile) WriteText(w io.Writer) error {
	recs := make([]*HeapRecord, len(h.Records))
	var tot [4]int64
	for i := range h.Records {
		r := &h.Records[i]
		recs[i] = r
		ao, ab := scale(r.AllocObjects, r.AllocBytes, h.Rate)
		uo, ub := scale(r.InUseObjects(), r.InUseBytes(), h.Rate)
		tot[0], tot[1], tot[2], tot[3] = tot[0]+uo, tot[1]+ub, tot[2]+ao, tot[3]+ab
	}
	slices.SortStableFunc(recs, func(a, b *HeapRecord) int { return cmp.Compare(b.InUseBytes(), a.InUseBytes()) })
	tw := tabwriter.NewWriter(w, 1, 8, 1, '\t', 0)
	fmt.Fprintf(tw, "heap profile: %d: %d [%d: %d] @ heap/%d\n", tot[0], tot[1], tot[2], tot[3], 2*h.Rate)
	for _, r := range recs {
		ao, ab := scale(r.AllocObjects, r.AllocBytes, h.Rate)
		uo, ub := scale(r.InUseObjects(), r.InUseBytes(), h.Rate)
		fmt.Fprintf(tw, "%d: %d [%d: %d] @", uo, ub, ao, ab)
		for _, pc := range r.Stack {
			fmt.Fprintf(tw, " %#x", pc)
		}
		fmt.Fprintln(tw)
		for _, f := range frames(r.Stack, h.Hide) {
			fmt.Fprintf(tw, "#\t%#x\t%s+%#x\t%s:%d\n", f.pc, f.function, f.pc-f.entry, f.file, f.line)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}
