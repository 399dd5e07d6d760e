package harness

import (
	"github.com/brkmap/alloc/bench/internal/sampler"
	"github.com/brkmap/alloc/stats"
)

// Result is what one (trace or workload, policy) run measured. The first
// fields, down to OK, are the contract of `bench replay -json` (the bench
// command line section of the project's design notes): programs outside
// this repository parse them, so their names never change. The rest is
// extra.
type Result struct {
	Trace              string  `json:"trace"`
	Policy             string  `json:"policy"`
	Threshold          int     `json:"threshold"` // configured mmap threshold in bytes; 0 for brk and mmap, which have none
	Ops                int     `json:"ops"`
	Seconds            float64 `json:"seconds"` // the replay loop only: not parsing, not sampling
	PeakLiveBytes      uint64  `json:"peak_live_bytes"`
	PeakResidentBytes  uint64  `json:"peak_resident_bytes"`
	FinalResidentBytes uint64  `json:"final_resident_bytes"`
	Fragmentation      float64 `json:"fragmentation"` // peak_resident_bytes / peak_live_bytes
	MmapCalls          *uint64 `json:"mmap_calls"`    // null for libc: glibc's calls are not counted
	MunmapCalls        *uint64 `json:"munmap_calls"`
	MadviseCalls       *uint64 `json:"madvise_calls"`
	OK                 bool    `json:"ok"` // every content check passed and no allocation failed

	OpsPerSec          float64 `json:"ops_per_sec"`
	MprotectCalls      *uint64 `json:"mprotect_calls"`
	SyscallCount       *uint64 `json:"syscalls"`              // the four above together; null for libc
	MinorFaults        uint64  `json:"minor_faults"`          // the process's, during the run
	PeakRSSGrowthBytes uint64  `json:"peak_rss_growth_bytes"` // VmHWM during the run minus RSS before it (every policy)
	TrappedBytes       uint64  `json:"trapped_bytes"`         // at the end: free pages below the break still resident
	ResidentFrom       string  `json:"resident_from"`         // "mincore" (this allocator's mappings) or "rss" (process growth)

	// The libc policy only (0 for the others). Its peak_resident_bytes is
	// the process's peak RSS growth (VmHWM, reset after the trace is loaded
	// and the Go runtime stopped collecting) — the C replayer's measure —
	// less what the Go runtime itself grew during the run (nothing for a
	// replay; a workload's own tables), or the highest sample if more.
	// Beside it, glibc's heap as glibc counts it, from mallinfo2 (arena +
	// hblkhd: every byte its arenas got from the kernel and every mapped
	// chunk, resident or not), sampled with the series; and the Go
	// runtime's own growth during the run, which the RSS figures include.
	LibcHeapPeakBytes  uint64 `json:"libc_heap_peak_bytes,omitempty"`
	LibcHeapFinalBytes uint64 `json:"libc_heap_final_bytes,omitempty"`
	GoGrowthBytes      uint64 `json:"go_runtime_growth_bytes,omitempty"`
	Error              string `json:"error,omitempty"`
	Note               string `json:"note,omitempty"`
	// PeakBreakdown: where the committed bytes were at the peak — of the
	// samples within 1/64 of the highest resident memory, the one with the
	// most live bytes (this allocator only; nil for libc).
	PeakBreakdown *Breakdown `json:"peak_breakdown,omitempty"`

	// For the report only; left out of `replay -json`.
	Series  []sampler.Sample `json:"series,omitempty"`
	PeakMap *stats.RegionMap `json:"peak_map,omitempty"`
	Moments []Moment         `json:"moments,omitempty"`
}

// Breakdown is stats.Snapshot's breakdown of the committed bytes, with
// resident memory (measured) and the metadata beside: the
// shares down to QuarantineBytes sum to CommittedBytes.
type Breakdown struct {
	CommittedBytes     uint64 `json:"committed_bytes"`
	RequestedBytes     uint64 `json:"requested_live_bytes"`
	ClassRoundingBytes uint64 `json:"class_rounding_bytes"`
	PageRoundingBytes  uint64 `json:"page_rounding_bytes"`
	SlabFreeBytes      uint64 `json:"slab_free_bytes"`
	FitRoundingBytes   uint64 `json:"fit_header_bytes"`
	FitFreeBytes       uint64 `json:"fit_free_bytes"`
	FitReleasedBytes   uint64 `json:"fit_released_bytes"`
	SlabTailBytes      uint64 `json:"slab_tail_bytes"`
	CachedBytes        uint64 `json:"cached_bytes"`
	EmptySlabBytes     uint64 `json:"empty_slab_bytes"`
	DirtyBytes         uint64 `json:"awaiting_purge_bytes"`
	ReleasedBytes      uint64 `json:"released_bytes"`
	QuarantineBytes    uint64 `json:"quarantine_bytes"`
	ResidentBytes      uint64 `json:"resident_bytes"`
	MetadataBytes      uint64 `json:"metadata_bytes"`
}

// BreakdownOf returns s's breakdown.
func BreakdownOf(s stats.Snapshot) *Breakdown {
	return &Breakdown{CommittedBytes: s.Committed, RequestedBytes: s.LiveBytes, ClassRoundingBytes: s.ClassRoundingBytes,
		PageRoundingBytes: s.RunRoundingBytes, SlabFreeBytes: s.SlabFreeBytes, SlabTailBytes: s.SlabTailBytes,
		CachedBytes: s.CachedBytes, EmptySlabBytes: s.EmptySlabBytes, DirtyBytes: s.DirtyBytes,
		ReleasedBytes: s.ReleasedBytes, QuarantineBytes: s.QuarantineBytes, ResidentBytes: s.Resident,
		MetadataBytes: s.MetadataBytes, FitRoundingBytes: s.FitRoundingBytes, FitFreeBytes: s.FitFreeBytes,
		FitReleasedBytes: s.FitReleasedBytes}
}

// Moment is the region map at a named moment of a run.
type Moment struct {
	Label string          `json:"label"`
	Map   stats.RegionMap `json:"map"`
}

// Syscalls returns the memory-management calls counted, and whether they
// were (not for libc).
func (r *Result) Syscalls() (uint64, bool) {
	if r.MmapCalls == nil {
		return 0, false
	}
	return *r.MmapCalls + *r.MunmapCalls + *r.MadviseCalls + *r.MprotectCalls, true
}

// Contract returns r without the report-only fields.
func (r *Result) Contract() *Result {
	c := *r
	c.Series, c.PeakMap, c.Moments = nil, nil, nil
	return &c
}
