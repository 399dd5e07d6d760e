package alloc

import (
	"os"
	"runtime"
	"sync"

	"github.com/brkmap/alloc/fit"
	"github.com/brkmap/alloc/internal/procfs"
	"github.com/brkmap/alloc/internal/sys"
	"github.com/brkmap/alloc/stats"
)

// Counters returns everything Stats does except what has to be measured:
// Resident, ArenaResident, MmapResident and HugeResident stay 0, and
// Snapshot.ResidentMeasured is false. Every figure here is a counter the
// allocator keeps as it works (the slab classes, the region, the mapping
// registry, the system-call wrapper), so Counters makes no mincore call and
// reads no /proc file: cheap enough for every scrape of a metrics
// endpoint (package metrics uses it). MinorFaults, the process's, costs
// one getrusage.
//
// A zero Allocator, or a closed one, returns an empty Snapshot.
func (a *Allocator) Counters() stats.Snapshot {
	var s stats.Snapshot
	if a.usable() != nil || !a.enter() {
		return s
	}
	defer a.leave(nil)
	// The layers' counters, each read whole under its own locks, and all
	// of them under a.moves: no pass moves memory from one layer to
	// another between two of the reads (see Allocator.moves). A call of a
	// caller still may: the breakdown is exact when none is in flight.
	a.moves.RLock()
	classes := a.slabs.Stats()
	var fs fit.Stats
	if a.fit != nil {
		fs = a.fit.Stats()
	}
	rc := a.region.Counters()
	count, mapped, requested := a.large.Counters()
	largeMeta, quarantine := a.large.MetaBytes(), a.large.QuarantineBytes()
	a.moves.RUnlock()

	s.Classes = classes[:]
	for _, c := range classes {
		s.LiveBlocks += c.LiveBlocks
		s.LiveBytes += c.LiveBytes
		s.ClassRoundingBytes += c.Size*c.LiveBlocks - c.LiveBytes
		s.SlabFreeBytes += c.Size * c.FreeBlocks
		s.CachedBytes += c.Size * c.CachedBlocks
		s.EmptySlabBytes += c.EmptySlabBytes
		s.SlabTailBytes += c.TailBytes
		s.MetadataBytes += c.MetaBytes
	}
	if a.fit != nil {
		s.LiveBlocks += uint64(fs.LiveChunks)
		s.LiveBytes += uint64(fs.LiveBytes)
		s.FitRoundingBytes = uint64(fs.ChunkBytes - fs.LiveBytes + fs.FenceBytes)
		s.CachedBytes += uint64(fs.Cached) // the chunks the P's fronts hold
		s.FitCachedBytes = uint64(fs.Cached)
		s.FitFreeBytes = uint64(fs.FreeBytes - fs.Released)
		s.FitReleasedBytes = uint64(fs.Released)
		s.MetadataBytes += uint64(fs.MetaBytes)
	}
	s.LiveBlocks += uint64(rc.MidRuns)
	s.LiveBytes += uint64(rc.MidUsed)
	s.ArenaBytes = uint64(rc.ArenaBytes)
	s.SlabBytes = uint64(rc.SlabBytes)
	s.MidBytes = uint64(rc.MidBytes)
	s.FitBytes = uint64(rc.FitBytes)
	s.ScratchBytes = uint64(rc.ScratchBytes)
	s.ScratchRuns = uint64(rc.ScratchRuns)
	s.FreeBytes = uint64(rc.FreeBytes)
	s.DirtyBytes = uint64(rc.DirtyBytes)
	s.TopFreeBytes = uint64(rc.TopFreeBytes)
	s.FreeRuns = uint64(rc.FreeRuns)
	s.ReleasedBytes = uint64(rc.FreeBytes - rc.DirtyBytes)
	s.PurgedBytes = uint64(rc.PurgedBytes)
	s.RunRoundingBytes = uint64(rc.MidBytes - rc.MidUsed)
	s.MetadataBytes += uint64(rc.PageMapBytes) + largeMeta
	s.RunRoundingBytes += mapped - requested
	s.MmapCount = count
	s.MmapBytes = mapped
	s.LiveBlocks += count
	s.LiveBytes += requested

	s.Mmap = a.os.Calls(sys.OpMmap)
	s.Munmap = a.os.Calls(sys.OpMunmap)
	s.Madvise = a.os.Calls(sys.OpMadvise)
	s.Mprotect = a.os.Calls(sys.OpMprotect)
	s.Mremap = a.os.Calls(sys.OpMremap)
	s.Mincore = a.os.Calls(sys.OpMincore)
	s.MmapThreshold = uint64(a.threshold.Load())
	s.DynamicThreshold = a.dynamic
	if t := a.trim.Load(); t >= 0 {
		s.TrimThreshold = uint64(t)
	} else {
		s.TrimThreshold = ^uint64(0)
	}
	s.Committed = rc.BudgetUsed // with the region's counters: see arena.Counters
	s.QuarantineBytes = quarantine
	s.Limit = a.budget.Limit()
	s.MinorFaults = sys.MinorFaults()
	a.hugeSettings(&s)
	s.Platform = platform()
	return s
}

// haveSmaps says whether /proc/self/smaps can be read here, found once.
var haveSmaps = sync.OnceValue(func() bool {
	_, err := os.Stat(procfs.SmapsPath)
	return err == nil
})

// platform is what this system offers the allocator.
func platform() stats.Platform {
	return stats.Platform{OS: runtime.GOOS, Mremap: sys.HasMremap, HugePages: sys.HasHugePages, Smaps: haveSmaps()}
}

// hugeSettings fills the huge page fields of s that need no measuring:
// what was asked for, the kernel's mode, and whether it is in effect.
func (a *Allocator) hugeSettings(s *stats.Snapshot) {
	h := a.huge
	s.HugePages = h.setting.String()
	s.THPMode = string(h.mode)
	s.HugePagesInEffect = h.inEffect()
	if h.inEffect() {
		s.HugePageSize = uint64(h.size)
	}
}
