package arena

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/internal/budget"
	"github.com/brkmap/alloc/internal/sys"
)

// chunksMade counts the page map's chunks the way Counters did before it
// counted them as they were made: by looking.
func chunksMade(r *Region) uintptr {
	n := uintptr(0)
	for i := range r.pagemap {
		if r.pagemap[i].Load() != nil {
			n++
		}
	}
	return n
}

// pageMapBytes is what Counters' PageMapBytes must be with made chunks.
func pageMapBytes(r *Region, made uintptr) uintptr {
	return made*unsafe.Sizeof(chunk{}) + uintptr(len(r.pagemap))*unsafe.Sizeof(r.pagemap[0])
}

// TestPageMapChunks: a region of more than three page-map chunks; runs on
// both sides of a chunk's boundary and one across two boundaries are
// found from every page they hold, by the Region and by a PageMap copy;
// addresses in chunks never made, and outside the region, are nil;
// Counters' PageMapBytes is exactly the chunks made (counted by looking)
// and the slice, at every step; Close drops the chunks, and its count
// with them, and Close twice is nil.
func TestPageMapChunks(t *testing.T) {
	page := sys.PageSize
	span := uintptr(chunkLength) * page // the bytes one chunk maps
	reserve := 3*span + 5*page
	r, err := New(Config{Reserve: reserve, TrimThreshold: ^uintptr(0), OS: &sys.OS{}, Budget: budget.New(0)})
	require.NoError(t, err)
	defer func() { _ = r.Close() }()
	require.Len(t, r.pagemap, 4, "three chunks and a few pages")
	pm := r.PageMap()
	check := func(when string) {
		t.Helper()
		made := chunksMade(r)
		require.Equal(t, made, r.chunks, "%s: the chunks counted", when)
		require.Equal(t, pageMapBytes(r, made), r.Counters().PageMapBytes, "%s", when)
	}
	check("new")
	require.Zero(t, r.chunks)
	require.Nil(t, r.Lookup(r.lo), "no chunk made yet")
	require.Nil(t, pm.Lookup(r.lo+span+page))

	// a run that ends two pages before the first boundary
	a, _, err := r.Alloc(chunkLength-2, 0, KindMid, 1)
	require.NoError(t, err)
	check("one run")
	require.Equal(t, uintptr(1), r.chunks)
	// one across the boundary: two pages in each chunk
	b, _, err := r.Alloc(4, 0, KindMid, 1)
	require.NoError(t, err)
	require.Equal(t, r.lo+span-2*page, b.Start(), "the run is laid after the first")
	check("across the first boundary")
	require.Equal(t, uintptr(2), r.chunks)
	for pg := range a.Pages() {
		p := a.Start() + pg*page + pg%page
		require.Same(t, a, r.Lookup(p), "page %d of the first run", pg)
		require.Same(t, a, pm.Lookup(p), "page %d of the first run", pg)
	}
	for pg := range b.Pages() {
		p := b.Start() + pg*page + page - 1
		require.Same(t, b, r.Lookup(p), "page %d of the run across the boundary", pg)
		require.Same(t, b, pm.Lookup(p), "page %d of the run across the boundary", pg)
	}
	require.Nil(t, pm.Lookup(r.lo+2*span+page), "a chunk never made")
	require.Nil(t, pm.Lookup(r.lo+3*span+4*page), "the last chunk, never made")
	require.Nil(t, pm.Lookup(r.hi), "past the region")
	require.Nil(t, pm.Lookup(r.lo-1), "before the region")

	// a run of two chunks' pages: across the second and third boundaries
	c, _, err := r.Alloc(2*chunkLength, 0, KindMid, 1)
	require.NoError(t, err)
	check("a run of more than a chunk")
	require.Equal(t, uintptr(4), r.chunks, "every chunk made")
	require.Equal(t, r.lo+span+2*page, c.Start())
	for _, pg := range []uintptr{0, 1, chunkLength - 3, chunkLength - 2, 2*chunkLength - 3, 2*chunkLength - 2, 2*chunkLength - 1} {
		p := c.Start() + pg*page
		require.Same(t, c, pm.Lookup(p), "page %d of the run over a chunk", pg)
	}
	require.Same(t, b, pm.Lookup(b.Start()+3*page), "its neighbour")

	require.NoError(t, r.Free(b))
	require.NoError(t, r.Free(a))
	require.NoError(t, r.Free(c))
	check("freed: the chunks stay")
	require.Equal(t, uintptr(4), r.chunks)
	for _, p := range []uintptr{b.Start() + page, a.Start() + 5*page, c.Start() + chunkLength*page} {
		if run := pm.Lookup(p); run != nil { // free memory: a free run, one no longer live, or nil
			require.True(t, run.kind == KindFree || !run.live, "%#x: a live %v run after every run was freed", p, run.kind)
		}
	}

	require.NoError(t, r.Close())
	require.Zero(t, chunksMade(r), "Close drops the chunks")
	assert.Equal(t, pageMapBytes(r, 0), r.Counters().PageMapBytes, "closed: the chunks went with Close")
	require.Nil(t, pm.Lookup(c.Start()))
	require.NoError(t, r.Close(), "Close twice")
	assert.Equal(t, pageMapBytes(r, 0), r.Counters().PageMapBytes, "closed twice")
	_, _, err = r.Alloc(1, 0, KindMid, 1)
	require.ErrorIs(t, err, errClosed)
}
