package alloc

import (
	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/stats"
)

// RegionMap returns a page map of the region from its base to its break:
// live pages (slabs and mid-size blocks), pages of request arenas
// (Scratch), free pages still resident
// (trapped below a live block, the fragmentation glibc is known for), and
// free pages released or never touched. Free pages not known to be
// released are measured with mincore, one call per free run; live pages
// are not measured. Blocks in their own mappings are outside the region
// and not shown.
//
// The map is a picture of one moment: taken while other goroutines
// allocate, it may mix states from slightly different moments.
func (a *Allocator) RegionMap() stats.RegionMap {
	m := stats.RegionMap{PageSize: uint64(a.page)}
	if a.usable() != nil || !a.enter() {
		return m
	}
	defer a.leave(nil)
	var spans []arena.Span
	a.region.Spans(func(s arena.Span) { spans = append(spans, s) })
	if len(spans) == 0 {
		return m
	}
	a.statsMu.Lock()
	defer a.statsMu.Unlock()
	for _, s := range spans {
		switch {
		case s.Kind == arena.KindScratch:
			m.Add(uint64(s.Len), stats.PageScratch)
		case s.Kind != arena.KindFree:
			m.Add(uint64(s.Len), stats.PageLive)
		case s.Released:
			m.Add(uint64(s.Len), stats.PageReleased)
		default:
			vec, err := a.os.ResidentPages(a.region.Ptr(s.Start), s.Len, &a.vec)
			if err != nil { // the region went away under us (Close)
				m.Add(uint64(s.Len), stats.PageReleased)
				continue
			}
			for _, b := range vec {
				state := stats.PageReleased
				if b&1 != 0 {
					state = stats.PageTrapped
				}
				m.Add(uint64(a.page), state)
			}
		}
	}
	return m
}
