package alloc_test

import (
	"fmt"
	"sort"
	"testing"
	"unsafe"

	"github.com/brkmap/alloc"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// fill writes a block's own pattern: every byte depends on the block's
// seed and its offset, so an overlap with any other block shows.
func fill(b []byte, seed uint32) {
	for i := range b {
		b[i] = pattern(seed, i)
	}
}

func pattern(seed uint32, i int) byte { return byte(seed*0x9e3779b1>>24) ^ byte(i) ^ byte(i>>8) }

// intact reports the first offset whose byte is not the pattern, or -1.
func intact(b []byte, seed uint32) int {
	for i := range b {
		if b[i] != pattern(seed, i) {
			return i
		}
	}
	return -1
}

type liveBlock struct {
	b     []byte
	seed  uint32
	align int
}

// model holds the allocator under test against a plain map of live blocks.
type model struct {
	a     *alloc.Allocator
	live  map[uint32]*liveBlock
	freed [][]byte // slices already freed, for double-free probes
	next  uint32
}

var configs = map[string]alloc.Config{
	"threshold":     {},
	"brk":           {Policy: alloc.PolicyBrk},
	"mmap":          {Policy: alloc.PolicyMmap},
	"dynamic":       {DynamicThreshold: true},
	"low-threshold": {MmapThreshold: 8 << 10, TrimThreshold: 16 << 10, TopPad: -1},
	"debug":         {Debug: true},
	"debug-mmap":    {Debug: true, Policy: alloc.PolicyMmap},
}

func genSize(t *rapid.T) int {
	switch rapid.IntRange(0, 9).Draw(t, "band") {
	case 0:
		return rapid.IntRange(0, 16).Draw(t, "tiny")
	case 1, 2, 3, 4:
		return rapid.IntRange(0, 1024).Draw(t, "small")
	case 5, 6:
		return rapid.IntRange(1024, 40<<10).Draw(t, "medium")
	case 7, 8:
		return rapid.IntRange(40<<10, 300<<10).Draw(t, "large")
	}
	return rapid.IntRange(300<<10, 2<<20).Draw(t, "huge")
}

func (m *model) add(t *rapid.T, b []byte, n, align int) {
	if len(b) != n || cap(b) != n {
		t.Fatalf("len %d cap %d, want %d", len(b), cap(b), n)
	}
	if b == nil {
		t.Fatalf("nil slice for %d bytes", n)
	}
	if p := uintptr(unsafe.Pointer(unsafe.SliceData(b))); p%uintptr(max(align, 16)) != 0 {
		t.Fatalf("block %#x not aligned to %d", p, max(align, 16))
	}
	if u := m.a.UsableSize(b); u < n {
		t.Fatalf("UsableSize %d < %d", u, n)
	}
	m.next++
	fill(b, m.next)
	m.live[m.next] = &liveBlock{b: b, seed: m.next, align: align}
}

func (m *model) pick(t *rapid.T) (uint32, *liveBlock) {
	if len(m.live) == 0 {
		t.Skip("nothing live")
	}
	ids := make([]uint32, 0, len(m.live))
	for id := range m.live {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	id := rapid.SampledFrom(ids).Draw(t, "id")
	return id, m.live[id]
}

func (m *model) checkBlock(t *rapid.T, l *liveBlock) {
	if i := intact(l.b, l.seed); i >= 0 {
		t.Fatalf("block %d (%d bytes at %p) damaged at offset %d", l.seed, len(l.b), unsafe.SliceData(l.b), i)
	}
}

func (m *model) actions() map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){
		"Malloc": func(t *rapid.T) {
			n := genSize(t)
			b, err := m.a.Malloc(n)
			if err != nil {
				t.Fatalf("Malloc(%d): %v", n, err)
			}
			m.add(t, b, n, 16)
		},
		"Calloc": func(t *rapid.T) {
			n := genSize(t)
			b, err := m.a.Calloc(n)
			if err != nil {
				t.Fatalf("Calloc(%d): %v", n, err)
			}
			for i, c := range b {
				if c != 0 {
					t.Fatalf("Calloc(%d): byte %d is %#x", n, i, c)
				}
			}
			m.add(t, b, n, 16)
		},
		"AlignedAlloc": func(t *rapid.T) {
			align := 1 << rapid.IntRange(0, 21).Draw(t, "log2align")
			n := genSize(t)
			b, err := m.a.AlignedAlloc(align, n)
			if err != nil {
				t.Fatalf("AlignedAlloc(%d, %d): %v", align, n, err)
			}
			m.add(t, b, n, align)
		},
		"Realloc": func(t *rapid.T) {
			id, l := m.pick(t)
			m.checkBlock(t, l)
			n := genSize(t)
			nb, err := m.a.Realloc(l.b, n)
			if err != nil {
				t.Fatalf("Realloc(%d -> %d): %v", len(l.b), n, err)
			}
			if len(nb) != n || cap(nb) != n {
				t.Fatalf("Realloc: len %d cap %d, want %d", len(nb), cap(nb), n)
			}
			if i := intact(nb[:min(n, len(l.b))], l.seed); i >= 0 {
				t.Fatalf("Realloc(%d -> %d) lost byte %d", len(l.b), n, i)
			}
			if unsafe.SliceData(nb) != unsafe.SliceData(l.b) {
				m.freed = append(m.freed, l.b)
			}
			fill(nb, l.seed)
			l.b, l.align = nb, 16
			m.live[id] = l
		},
		"Free": func(t *rapid.T) {
			id, l := m.pick(t)
			m.checkBlock(t, l)
			if err := m.a.Free(l.b); err != nil {
				t.Fatalf("Free(%d bytes): %v", len(l.b), err)
			}
			delete(m.live, id)
			m.freed = append(m.freed, l.b)
		},
		"Trim": func(t *rapid.T) {
			m.a.Trim()
		},
		"BadFree": func(t *rapid.T) {
			// An interior pointer of a live block, or a stale slice whose
			// memory was not handed out again: both must be refused.
			if rapid.Bool().Draw(t, "interior") {
				_, l := m.pick(t)
				if len(l.b) < 2 {
					t.Skip("too small for an interior pointer")
				}
				off := rapid.IntRange(1, len(l.b)-1).Draw(t, "off")
				if err := m.a.Free(l.b[off:]); err == nil {
					t.Fatalf("Free of an interior pointer (+%d of %d) succeeded", off, len(l.b))
				}
				return
			}
			if len(m.freed) == 0 {
				t.Skip("nothing freed")
			}
			stale := m.freed[rapid.IntRange(0, len(m.freed)-1).Draw(t, "stale")]
			p := uintptr(unsafe.Pointer(unsafe.SliceData(stale)))
			for _, l := range m.live {
				q := uintptr(unsafe.Pointer(unsafe.SliceData(l.b)))
				if p >= q && p < q+uintptr(max(m.a.UsableSize(l.b), 1)) {
					t.Skip("memory reused: a second free would be legal")
				}
			}
			if err := m.a.Free(stale); err == nil {
				t.Fatalf("second Free of %d bytes at %#x succeeded", len(stale), p)
			}
		},
		"": func(t *rapid.T) { m.check(t) },
	}
}

// check holds the whole allocator against the model: every block intact,
// no two blocks overlapping, and the counters agreeing.
func (m *model) check(t *rapid.T) {
	type span struct{ lo, hi uintptr }
	spans := make([]span, 0, len(m.live))
	var bytes uint64
	for _, l := range m.live {
		m.checkBlock(t, l)
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(l.b)))
		spans = append(spans, span{lo, lo + uintptr(max(len(l.b), 1))})
		bytes += uint64(len(l.b))
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
	for i := 1; i < len(spans); i++ {
		if spans[i].lo < spans[i-1].hi {
			t.Fatalf("blocks overlap: [%#x,%#x) and [%#x,%#x)", spans[i-1].lo, spans[i-1].hi, spans[i].lo, spans[i].hi)
		}
	}
	s := m.a.Stats()
	if s.LiveBlocks != uint64(len(m.live)) || s.LiveBytes != bytes {
		t.Fatalf("Stats: %d blocks, %d bytes; model: %d blocks, %d bytes", s.LiveBlocks, s.LiveBytes, len(m.live), bytes)
	}
}

func TestModel(t *testing.T) {
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			rapid.Check(t, func(rt *rapid.T) {
				a, err := alloc.New(cfg)
				require.NoError(rt, err)
				defer a.Close()
				m := &model{a: a, live: map[uint32]*liveBlock{}}
				rt.Repeat(m.actions())
				for id, l := range m.live {
					m.checkBlock(rt, l)
					if err := a.Free(l.b); err != nil {
						rt.Fatalf("final Free: %v", err)
					}
					delete(m.live, id)
				}
				s := a.Stats()
				if s.LiveBlocks != 0 || s.LiveBytes != 0 || s.MmapCount != 0 || s.MmapBytes != 0 {
					rt.Fatalf("after freeing everything: %+v", fmt.Sprint(s.LiveBlocks, s.LiveBytes, s.MmapCount, s.MmapBytes))
				}
			})
		})
	}
}
