package stats

// PageState is what a page of the region holds at the moment a RegionMap
// is taken.
type PageState uint8

const (
	// PageLive: part of a slab or a block in use.
	PageLive PageState = iota
	// PageTrapped: free, but still resident — memory the process pays for
	// and nobody uses, until Trim or the break moving down releases it.
	PageTrapped
	// PageReleased: free and not resident (given back with madvise, or
	// never touched).
	PageReleased
	// PageScratch: held by a request arena (alloc.Scratch), in use or
	// kept for its next request.
	PageScratch
	numPageStates
)

var pageStateNames = [numPageStates]string{"live", "trapped", "released", "scratch"}

func (s PageState) String() string {
	if s < numPageStates {
		return pageStateNames[s]
	}
	return "PageState(?)"
}

// Extent is a range of the region whose pages are all in one state.
// Offset is from the region's base.
type Extent struct {
	Offset uint64    `json:"offset"`
	Len    uint64    `json:"len"`
	State  PageState `json:"state"`
}

// RegionMap is the brk-like region from its base to its break, page by
// page: which pages hold live blocks, which are free but still resident
// (trapped), and which are free and released. Extents are in address
// order, cover [0, Break) without gaps, and adjacent extents differ in
// state. Large blocks in their own mappings are not part of the region
// and do not appear.
type RegionMap struct {
	PageSize uint64   `json:"page_size"`
	Break    uint64   `json:"break"` // bytes from base to break (ArenaBytes)
	Extents  []Extent `json:"extents"`
}

// Add appends len bytes in state at the end of the map, merging with the
// last extent when it is in the same state.
func (m *RegionMap) Add(n uint64, state PageState) {
	if n == 0 {
		return
	}
	if k := len(m.Extents); k > 0 && m.Extents[k-1].State == state {
		m.Extents[k-1].Len += n
	} else {
		m.Extents = append(m.Extents, Extent{Offset: m.Break, Len: n, State: state})
	}
	m.Break += n
}

// Bytes returns the bytes of the map in state.
func (m RegionMap) Bytes(state PageState) uint64 {
	var n uint64
	for _, e := range m.Extents {
		if e.State == state {
			n += e.Len
		}
	}
	return n
}

// Trapped returns the free bytes below the break that are still resident.
func (m RegionMap) Trapped() uint64 { return m.Bytes(PageTrapped) }
