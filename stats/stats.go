package stats

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// Snapshot is one allocator's state at a moment. Bytes are bytes; calls
// are counted since the allocator was made.
type Snapshot struct {
	// Blocks handed out and not freed, and the bytes their callers asked for.
	LiveBlocks uint64 `json:"live_blocks"`
	LiveBytes  uint64 `json:"live_bytes"`

	// ArenaBytes is the region from its base to its break.
	ArenaBytes uint64 `json:"arena_bytes"`
	// MmapBytes and MmapCount are the live large mappings.
	MmapBytes uint64 `json:"mmap_bytes"`
	MmapCount uint64 `json:"mmap_count"`
	// Resident is the bytes of this allocator's memory in RAM, measured
	// with mincore over the region (base to break) and every live mapping.
	Resident uint64 `json:"resident_bytes"`
	// ResidentMeasured says Resident (and its parts) were measured: true
	// from Allocator.Stats, false from Allocator.Counters, which measures
	// nothing and leaves them 0.
	ResidentMeasured bool `json:"resident_measured"`

	// System calls made.
	Mmap     uint64 `json:"mmap_calls"`
	Munmap   uint64 `json:"munmap_calls"`
	Madvise  uint64 `json:"madvise_calls"`
	Mprotect uint64 `json:"mprotect_calls"`
	Mremap   uint64 `json:"mremap_calls"`
	Mincore  uint64 `json:"mincore_calls"`

	// Inside the region.
	SlabBytes    uint64 `json:"slab_bytes"`     // pages carved into slabs
	MidBytes     uint64 `json:"mid_bytes"`      // pages given to mid-size blocks (one run each)
	FitBytes     uint64 `json:"fit_bytes"`      // pages of the best-fit heap (medium blocks, and cold classes' blocks: Config.ColdBlocks)
	FreeBytes    uint64 `json:"free_bytes"`     // free pages below the break
	DirtyBytes   uint64 `json:"dirty_bytes"`    // free pages not yet released: resident if they were touched ("trapped")
	TopFreeBytes uint64 `json:"top_free_bytes"` // the free run at the break: what moving the break down can release
	FreeRuns     uint64 `json:"free_runs"`

	// ArenaResident and MmapResident split Resident.
	ArenaResident uint64 `json:"arena_resident_bytes"`
	MmapResident  uint64 `json:"mmap_resident_bytes"`

	// The policy as it stands (the dynamic threshold moves them), and
	// whether the threshold slides (DynamicThreshold) or is pinned.
	MmapThreshold    uint64 `json:"mmap_threshold_bytes"`
	TrimThreshold    uint64 `json:"trim_threshold_bytes"`
	DynamicThreshold bool   `json:"dynamic_threshold"`

	// Committed is ArenaBytes + MmapBytes + QuarantineBytes, what Limit
	// caps (0: no limit).
	Committed uint64 `json:"committed_bytes"`
	Limit     uint64 `json:"limit_bytes"`
	// QuarantineBytes is freed large mappings Debug mode keeps PROT_NONE
	// (their pages released, their address space still held).
	QuarantineBytes uint64 `json:"quarantine_bytes"`

	// MinorFaults is the process's minor page faults (getrusage).
	MinorFaults uint64 `json:"minor_faults"`

	// Where the committed bytes are. Committed is exactly LiveBytes plus
	// every field below but MetadataBytes (plus DirtyBytes and
	// QuarantineBytes above) when no operation is in flight (the
	// allocator's own passes, PurgeInBackground's and the purge's, are
	// not: a snapshot never sees what they move between layers); Breakdown
	// lists them. Resident, measured, sits beside: committed pages are
	// resident only if touched and not released.
	ClassRoundingBytes uint64 `json:"class_rounding_bytes"` // slab blocks handed out, beyond what was asked for
	SlabFreeBytes      uint64 `json:"slab_free_bytes"`      // free blocks in slabs that hold live or cached ones
	CachedBytes        uint64 `json:"cached_bytes"`         // free blocks parked in the per-P caches: the slabs' and the best-fit heap's fronts
	FitCachedBytes     uint64 `json:"fit_cached_bytes"`     // of CachedBytes, the chunks the best-fit heap's per-P fronts hold
	EmptySlabBytes     uint64 `json:"empty_slab_bytes"`     // the slab each class keeps with every block free
	SlabTailBytes      uint64 `json:"slab_tail_bytes"`      // the ends of slabs too short for one more block
	ReleasedBytes      uint64 `json:"released_bytes"`       // free pages below the break already given back (not resident)
	RunRoundingBytes   uint64 `json:"run_rounding_bytes"`   // mid-size runs and mappings: whole pages beyond the request
	FitRoundingBytes   uint64 `json:"fit_rounding_bytes"`   // best-fit heap: chunk headers, 16-byte rounding (a cold class's block: to its class's size, 64 bytes at least), the ends of its runs
	FitReleasedBytes   uint64 `json:"fit_released_bytes"`   // best-fit heap: the pages inside free chunks given back (not resident)
	FitFreeBytes       uint64 `json:"fit_free_bytes"`       // best-fit heap: free chunks, less the pages inside them given back (FitReleasedBytes)
	// ScratchBytes is the pages of the region held by request arenas
	// (alloc.Scratch): used, kept for the next request after a Reset, or
	// (Debug) kept PROT_NONE after a Free or Reset. ScratchRuns counts
	// their runs. Their objects are not in LiveBlocks or LiveBytes.
	ScratchBytes uint64 `json:"scratch_bytes"`
	ScratchRuns  uint64 `json:"scratch_runs"`
	// MetadataBytes is the allocator's own bookkeeping, in the Go heap (the
	// page map, the slabs' block states, the mapping registry) and in a
	// mapping beside the region (the heap's bitmaps of blocks in use: the
	// windows its runs use): not committed memory of the allocator, shown
	// beside it.
	MetadataBytes uint64 `json:"metadata_bytes"`
	// PurgedBytes is the free memory the purge has released so far.
	PurgedBytes uint64 `json:"purged_bytes"`

	// Classes holds each size class's counters.
	Classes []Class `json:"classes,omitempty"`

	// Huge pages. HugePages is the setting asked for ("off", "large",
	// "all"), THPMode the kernel's transparent huge page mode read when the
	// allocator was made ("always", "madvise", "never"), and
	// HugePagesInEffect whether the allocator is aligning and advising
	// memory for huge pages (asked for, and the kernel allows it). A
	// setting asked for on a kernel in "never" mode is not in effect.
	HugePages         string `json:"huge_pages"`
	THPMode           string `json:"thp_mode"`
	HugePagesInEffect bool   `json:"huge_pages_in_effect"`
	HugePageSize      uint64 `json:"huge_page_size_bytes"` // bytes, when in effect
	// HugeResident is the part of Resident backed by huge pages: the
	// AnonHugePages of this allocator's own mappings in /proc/self/smaps.
	// Measured only when some of its memory can get huge pages (in effect,
	// or THP "always"); 0 otherwise.
	HugeResident uint64 `json:"huge_resident_bytes"`

	// Platform says what the system offers and which fallbacks are in use.
	Platform Platform `json:"platform"`
}

// Platform is what the allocator found on the system it runs on. On Linux
// every feature is there; on macOS and FreeBSD it falls back, and says so
// here.
type Platform struct {
	// OS is runtime.GOOS.
	OS string `json:"os"`
	// Mremap: Realloc resizes or moves a large block's mapping with mremap
	// (page tables move, bytes are not copied). Without it, a large block
	// that changes size is moved: a new mapping, a copy, an unmap.
	Mremap bool `json:"mremap"`
	// HugePages: transparent huge pages and MADV_HUGEPAGE exist. Without
	// them, Config.HugePages is never in effect (HugePagesInEffect false).
	HugePages bool `json:"huge_pages"`
	// Smaps: /proc/self/smaps can be read, so HugeResident can be measured
	// when huge pages are in play. Without it, Resident comes from mincore
	// alone and HugeResident stays 0.
	Smaps bool `json:"smaps"`
}

// Class is one size class's counters: the one declaration, which slab.Pool.Stats
// returns (stats is a leaf package, so slab may use its types).
type Class struct {
	Size       uint64 `json:"size_bytes"` // block size
	LiveBlocks uint64 `json:"live_blocks"`
	LiveBytes  uint64 `json:"live_bytes"` // requested
	Slabs      uint64 `json:"slabs"`
	SlabBytes  uint64 `json:"slab_bytes"`
	// CachedBlocks are free blocks parked in P caches; FreeBlocks, free
	// blocks in slabs that hold live or cached ones (free lists, and
	// blocks never handed out); EmptySlabBytes, the slab kept with every
	// block free; TailBytes, the ends of slabs too short for a block.
	CachedBlocks   uint64 `json:"cached_blocks"`
	FreeBlocks     uint64 `json:"free_blocks"`
	EmptySlabBytes uint64 `json:"empty_slab_bytes"`
	TailBytes      uint64 `json:"tail_bytes"`
	// MetaBytes is the slabs' bookkeeping in the Go heap: a Slab and a
	// state per block, each.
	MetaBytes uint64 `json:"meta_bytes"`
}

// Empty reports whether the class holds nothing: no live block and no slab.
func (c Class) Empty() bool { return c.LiveBlocks == 0 && c.Slabs == 0 }

// MarshalJSON encodes the snapshot with the field names of its json tags,
// leaving out the size classes that hold nothing (Class.Empty): most of the
// 72 are empty in most programs. Decoding gives back the classes that were
// written.
func (s Snapshot) MarshalJSON() ([]byte, error) {
	type plain Snapshot // the same fields, without this method
	p := plain(s)
	p.Classes = nil
	for _, c := range s.Classes {
		if !c.Empty() {
			p.Classes = append(p.Classes, c)
		}
	}
	return json.Marshal(p)
}

// Part is one named share of the committed bytes.
type Part struct {
	Name  string
	Bytes uint64
}

// Breakdown returns the shares of Committed, in the order of a stacked
// bar: their sum is Committed exactly when no operation was in flight.
func (s Snapshot) Breakdown() []Part {
	return []Part{
		{"requested live", s.LiveBytes},
		{"class rounding", s.ClassRoundingBytes},
		{"page rounding", s.RunRoundingBytes},
		{"fit headers", s.FitRoundingBytes},
		{"free in slabs", s.SlabFreeBytes},
		{"free in fit heap", s.FitFreeBytes},
		{"slab tails", s.SlabTailBytes},
		{"P caches", s.CachedBytes},
		{"empty slabs", s.EmptySlabBytes},
		{"free, awaiting purge", s.DirtyBytes},
		{"free, released", s.ReleasedBytes},
		{"fit heap, released", s.FitReleasedBytes},
		{"quarantine", s.QuarantineBytes},
		{"scratch arenas", s.ScratchBytes},
	}
}

// Syscalls returns the number of memory-management system calls made
// (mincore, which only measures, is left out).
func (s Snapshot) Syscalls() uint64 { return s.Mmap + s.Munmap + s.Madvise + s.Mprotect + s.Mremap }

// Fragmentation returns Resident / LiveBytes: 1 is perfect, more is memory
// held for nothing. It is 0 when nothing is live.
func (s Snapshot) Fragmentation() float64 {
	if s.LiveBytes == 0 {
		return 0
	}
	return float64(s.Resident) / float64(s.LiveBytes)
}

// InternalWaste returns the bytes of slab blocks handed out but not asked
// for: block size times live blocks minus live bytes, summed over classes.
func (s Snapshot) InternalWaste() uint64 {
	var w uint64
	for _, c := range s.Classes {
		w += c.Size*c.LiveBlocks - c.LiveBytes
	}
	return w
}

// Sub returns the counters of s minus those of prev: the calls made
// between two snapshots (gauges such as Resident are kept from s).
func (s Snapshot) Sub(prev Snapshot) Snapshot {
	d := s
	d.Mmap -= prev.Mmap
	d.Munmap -= prev.Munmap
	d.Madvise -= prev.Madvise
	d.Mprotect -= prev.Mprotect
	d.Mremap -= prev.Mremap
	d.Mincore -= prev.Mincore
	d.MinorFaults -= prev.MinorFaults
	return d
}

// WriteTo prints the snapshot as a table, like malloc_stats.
func (s Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	tw := tabwriter.NewWriter(cw, 0, 0, 2, ' ', tabwriter.AlignRight)
	rows := []struct {
		name string
		v    uint64
	}{
		{"live blocks", s.LiveBlocks}, {"live bytes", s.LiveBytes},
		{"arena bytes", s.ArenaBytes}, {"  slabs", s.SlabBytes}, {"  mid-size", s.MidBytes},
		{"  scratch arenas", s.ScratchBytes},
		{"  free", s.FreeBytes}, {"  free, not released", s.DirtyBytes}, {"  free at top", s.TopFreeBytes},
		{"mmap bytes", s.MmapBytes}, {"mmap count", s.MmapCount},
		{"resident", s.Resident}, {"  arena", s.ArenaResident}, {"  mappings", s.MmapResident},
		{"mmap calls", s.Mmap}, {"munmap calls", s.Munmap}, {"madvise calls", s.Madvise},
		{"mprotect calls", s.Mprotect}, {"mremap calls", s.Mremap},
		{"mmap threshold", s.MmapThreshold}, {"trim threshold", s.TrimThreshold},
	}
	for _, r := range rows {
		if _, err := fmt.Fprintf(tw, "%s\t%d\t\n", r.name, r.v); err != nil {
			return cw.n, err
		}
	}
	err := tw.Flush()
	return cw.n, err
}

// countingWriter counts the bytes that reach w, for WriteTo's result.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	k, err := c.w.Write(p)
	c.n += int64(k)
	return k, err
}
