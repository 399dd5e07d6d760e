package alloc

import (
	"fmt"
	"slices"

	"github.com/brkmap/alloc/internal/procfs"
	"github.com/brkmap/alloc/largealloc"
	"github.com/brkmap/alloc/stats"
)

// HugePages chooses where the allocator asks the kernel for transparent
// huge pages (2 MiB on x86-64): memory that faults in a huge page at a
// time, so that touching an 8 MiB block costs 4 page faults instead of
// 2048 — at the price of coarser release, since a huge page is resident as
// a whole once any byte of it is touched.
//
// The setting is a request: New reads the kernel's THP mode
// (/sys/kernel/mm/transparent_hugepage/enabled), and if it is "never" (or
// the kernel has no THP) nothing is aligned or advised, exactly as with
// HugePagesOff; Stats says whether huge pages are in effect.
type HugePages int

const (
	// HugePagesOff asks for nothing: mappings are placed wherever the
	// kernel puts them, as glibc does by default. (With THP "always" the
	// kernel may still use huge pages where a mapping happens to allow.)
	HugePagesOff HugePages = iota
	// HugePagesLarge places every mapping of at least one huge page on a
	// huge page boundary and advises it MADV_HUGEPAGE. Smaller blocks and
	// the region are untouched, so the price is paid only by blocks that
	// are large anyway: at most the last, partly used huge page of a
	// block's touched range.
	HugePagesLarge
	// HugePagesAll does what HugePagesLarge does and also reserves the
	// region on a huge page boundary, advises it, and moves its break up
	// and down in whole huge pages. Small blocks then share huge pages: a
	// few touched bytes can keep a whole huge page resident until Trim.
	HugePagesAll
)

func (h HugePages) String() string {
	switch h {
	case HugePagesOff:
		return "off"
	case HugePagesLarge:
		return "large"
	case HugePagesAll:
		return "all"
	}
	return fmt.Sprintf("HugePages(%d)", int(h))
}

// hugeState is the huge page setting as it stands after New: the request,
// what the kernel allows, and the huge page size. Fixed after New.
type hugeState struct {
	setting HugePages
	mode    procfs.THPMode
	size    uintptr
}

// resolveHugePages reads the kernel's THP mode and size for the setting h.
func resolveHugePages(h HugePages) (hugeState, error) {
	if h < HugePagesOff || h > HugePagesAll {
		return hugeState{}, fmt.Errorf("alloc: unknown HugePages setting %d", int(h))
	}
	mode, size := procfs.ReadTHP()
	return hugeState{setting: h, mode: mode, size: size}, nil
}

// inEffect reports whether huge pages were asked for and the kernel gives them.
func (h hugeState) inEffect() bool { return h.setting != HugePagesOff && h.mode.Enabled() }

// regionSize is the huge page size for the region, or 0 for none.
func (h hugeState) regionSize() uintptr {
	if h.inEffect() && h.setting == HugePagesAll {
		return h.size
	}
	return 0
}

// largeSize is the huge page size for large mappings, or 0 for none.
func (h hugeState) largeSize() uintptr {
	if h.inEffect() {
		return h.size
	}
	return 0
}

// hugeStats measures HugeResident (Counters filled the settings). Measuring reads
// /proc/self/smaps (a millisecond or so with a few hundred mappings), so
// it is done only when some of this allocator's memory can be backed by
// huge pages: when they are in effect, or when the kernel's mode is
// "always". The caller holds statsMu (a.smaps is scratch space).
func (a *Allocator) hugeStats(s *stats.Snapshot) {
	h := a.huge
	if !h.inEffect() && h.mode != procfs.THPAlways {
		return // in madvise mode only advised memory gets huge pages; none is
	}
	lo, hi := a.region.Reservation()
	ranges := []procfs.Range{{Start: lo, End: hi}}
	a.large.Each(func(m largealloc.Mapping) {
		ranges = append(ranges, procfs.Range{Start: m.Addr, End: m.Addr + m.Len})
	})
	slices.SortFunc(ranges, func(x, y procfs.Range) int {
		if x.Start < y.Start {
			return -1
		}
		if x.Start > y.Start {
			return 1
		}
		return 0
	})
	if n, err := procfs.HugeResident(ranges, &a.smaps); err == nil {
		s.HugeResident = uint64(n)
	}
}
