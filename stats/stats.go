package stats

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// Snapshot is one allocator's state at a moment. Bytes are bytes; calls
// are counted since the allocator was made.
type Snapshot struct {
	// Blocks handed out and not freed, and the bytes their callers asked for.
	LiveBlocks uint64
	LiveBytes  uint64

	// ArenaBytes is the region from its base to its break.
	ArenaBytes uint64
	// MmapBytes and MmapCount are the live large mappings.
	MmapBytes uint64
	MmapCount uint64
	// Resident is the bytes of this allocator's memory in RAM, measured
	// with mincore over the region (base to break) and every live mapping.
	Resident uint64

	// System calls made.
	Mmap     uint64
	Munmap   uint64
	Madvise  uint64
	Mprotect uint64
	Mremap   uint64
	Mincore  uint64

	// Inside the region.
	SlabBytes    uint64 // pages carved into slabs
	RunBytes     uint64 // pages given to mid-size blocks (one run each)
	FreeBytes    uint64 // free pages below the break
	DirtyBytes   uint64 // free pages not yet released: resident if they were touched ("trapped")
	TopFreeBytes uint64 // the free run at the break: what moving the break down can release
	FreeRuns     uint64

	// ArenaResident and MmapResident split Resident.
	ArenaResident uint64
	MmapResident  uint64

	// The policy as it stands (the dynamic threshold moves them), and
	// whether the threshold slides (DynamicThreshold) or is pinned.
	MmapThreshold    uint64
	TrimThreshold    uint64
	DynamicThreshold bool

	// Committed is ArenaBytes + MmapBytes + QuarantineBytes, what Limit
	// caps (0: no limit).
	Committed uint64
	Limit     uint64
	// QuarantineBytes is freed large mappings Debug mode keeps PROT_NONE
	// (their pages released, their address space still held).
	QuarantineBytes uint64

	// MinorFaults is the process's minor page faults (getrusage).
	MinorFaults uint64

	// Where the committed bytes are. Committed is exactly LiveBytes plus
	// every field below but MetadataBytes (plus DirtyBytes and
	// QuarantineBytes above) when no operation is in flight; Breakdown
	// lists them. Resident, measured, sits beside: committed pages are
	// resident only if touched and not released.
	ClassRoundingBytes uint64 // slab blocks handed out, beyond what was asked for
	SlabFreeBytes      uint64 // free blocks in slabs that hold live or cached ones
	CachedBytes        uint64 // free blocks parked in the per-P caches
	EmptySlabBytes     uint64 // the slab each class keeps with every block free
	SlabTailBytes      uint64 // the ends of slabs too short for one more block
	ReleasedBytes      uint64 // free pages below the break already given back (not resident)
	RunRoundingBytes   uint64 // mid-size runs and mappings: whole pages beyond the request
	// MetadataBytes is the allocator's own bookkeeping in the Go heap (the
	// page map, the slabs' block states, the mapping registry): not
	// committed memory of the allocator, shown beside it.
	MetadataBytes uint64
	// PurgedBytes is the free memory the purge has released so far.
	PurgedBytes uint64

	// Classes holds each size class's counters.
	Classes []Class

	// Huge pages. HugePages is the setting asked for ("off", "large",
	// "all"), THPMode the kernel's transparent huge page mode read when the
	// allocator was made ("always", "madvise", "never"), and
	// HugePagesInEffect whether the allocator is aligning and advising
	// memory for huge pages (asked for, and the kernel allows it). A
	// setting asked for on a kernel in "never" mode is not in effect.
	HugePages         string
	THPMode           string
	HugePagesInEffect bool
	HugePageSize      uint64 // bytes, when in effect
	// HugeResident is the part of Resident backed by huge pages: the
	// AnonHugePages of this allocator's own mappings in /proc/self/smaps.
	// Measured only when some of its memory can get huge pages (in effect,
	// or THP "always"); 0 otherwise.
	HugeResident uint64
}

// Class is one size class's counters.
type Class struct {
	Size       uint64 // block size
	LiveBlocks uint64
	LiveBytes  uint64 // requested
	Slabs      uint64
	SlabBytes  uint64
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
		{"free in slabs", s.SlabFreeBytes},
		{"slab tails", s.SlabTailBytes},
		{"P caches", s.CachedBytes},
		{"empty slabs", s.EmptySlabBytes},
		{"free, awaiting purge", s.DirtyBytes},
		{"free, released", s.ReleasedBytes},
		{"quarantine", s.QuarantineBytes},
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
		{"arena bytes", s.ArenaBytes}, {"  slabs", s.SlabBytes}, {"  runs", s.RunBytes},
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
