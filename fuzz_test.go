package alloc_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"unsafe"

	"github.com/brkmap/alloc"
)

// FuzzOps decodes its input into a stream of operations — Malloc, Calloc,
// Realloc, AlignedAlloc, Free, Trim and bad frees — and runs it against a
// fresh allocator under the configuration the first byte picks (every
// configuration of model_test.go: threshold, brk, mmap, dynamic, a low
// threshold), holding it to the model of the property test: every block
// keeps its pattern, no two blocks overlap, Stats counts exactly the live
// blocks and bytes, bad frees are refused, and once everything is freed
// no mapping is left.
//
//	go test -run '^$' -fuzz '^FuzzOps$' -fuzztime 30s .
func FuzzOps(f *testing.F) {
	names := fuzzConfigNames()
	// Hand-written streams: op byte, then the operands (see decode).
	for i := range names {
		c := byte(i)
		f.Add([]byte{c})
		f.Add([]byte{c, opMalloc, 1, 0, 0, opFree, 0, opTrim})
		// every size band, then realloc across the bands, then free
		f.Add([]byte{c, opMalloc, 0, 9, 0, opCalloc, 1, 200, 0, opMalloc, 5, 0, 0, opMalloc, 7, 128, 0,
			opMalloc, 9, 255, 255, opRealloc, 0, 9, 255, 255, opRealloc, 1, 0, 3, 0, opRealloc, 2, 7, 255, 255,
			opBadFree, 0, 1, 7, opFree, 0, opBadFree, 1, 0, opFree, 0, opTrim, opFree, 0, opFree, 0})
		// aligned blocks of every alignment up to 2 MiB
		f.Add([]byte{c, opAligned, 4, 1, 0, 0, opAligned, 12, 5, 0, 0, opAligned, 21, 7, 0, 0, opAligned, 16, 9, 0, 0,
			opFree, 1, opRealloc, 0, 9, 0, 0, opTrim, opFree, 0})
	}
	// Random streams, the same on every run.
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		b := make([]byte, 1+r.IntN(600))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		b[0] = byte(i % len(names))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		name := names[int(data[0])%len(names)]
		a, err := alloc.New(configs[name])
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		m := &opsModel{t: t, a: a, cfg: name}
		m.run(data[1:])
	})
}

func fuzzConfigNames() []string {
	var names []string
	for n := range configs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// The operations of a stream: the op byte modulo numOps.
const (
	opMalloc  = iota // size
	opCalloc         // size
	opRealloc        // block, size
	opAligned        // log2 alignment (mod 22), size
	opFree           // block
	opTrim           //
	opBadFree        // kind: interior pointer of a block (block, offset) or a stale slice (index)
	opFree2          // block: frees are as common as allocations
	numOps
)

const (
	maxOps       = 300
	maxLiveBytes = 48 << 20 // past it, allocations become frees
	checkEvery   = 16
)

// opsModel is the allocator under test and a plain list of its live
// blocks.
type opsModel struct {
	t     *testing.T
	a     *alloc.Allocator
	cfg   string
	data  []byte
	live  []*liveBlock
	bytes int
	freed [][]byte
	seed  uint32
	op    int
}

// byte returns the next input byte (0 once the input is spent).
func (m *opsModel) byte() byte {
	if len(m.data) == 0 {
		return 0
	}
	b := m.data[0]
	m.data = m.data[1:]
	return b
}

// size decodes a size up to 2 MiB, most of them small, like genSize.
func (m *opsModel) size() int {
	band := m.byte() % 10
	v := int(m.byte())<<8 | int(m.byte())
	span := func(lo, hi int) int { return lo + v*(hi-lo+1)>>16 }
	switch band {
	case 0:
		return span(0, 16)
	case 1, 2, 3, 4:
		return span(0, 1024)
	case 5, 6:
		return span(1024, 40<<10)
	case 7, 8:
		return span(40<<10, 300<<10)
	}
	return span(300<<10, 2<<20)
}

// pick decodes one of the live blocks (-1 if there are none).
func (m *opsModel) pick() int {
	b := m.byte()
	if len(m.live) == 0 {
		return -1
	}
	return int(b) % len(m.live)
}

func (m *opsModel) fatalf(format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf("%s, op %d: "+format, append([]any{m.cfg, m.op}, args...)...)
}

func (m *opsModel) add(b []byte, n, align int) {
	m.t.Helper()
	if b == nil || len(b) != n || cap(b) != n {
		m.fatalf("block of %d bytes: nil %v, len %d, cap %d", n, b == nil, len(b), cap(b))
	}
	if p := uintptr(unsafe.Pointer(unsafe.SliceData(b))); p%uintptr(max(align, 16)) != 0 {
		m.fatalf("block %#x not aligned to %d", p, max(align, 16))
	}
	if u := m.a.UsableSize(b); u < n {
		m.fatalf("UsableSize %d < %d", u, n)
	}
	m.seed++
	fill(b, m.seed)
	m.live = append(m.live, &liveBlock{b: b, seed: m.seed, align: align})
	m.bytes += n
}

func (m *opsModel) checkBlock(l *liveBlock) {
	m.t.Helper()
	if i := intact(l.b, l.seed); i >= 0 {
		m.fatalf("block %d (%d bytes at %p) damaged at offset %d", l.seed, len(l.b), unsafe.SliceData(l.b), i)
	}
}

func (m *opsModel) remove(i int) {
	l := m.live[i]
	m.bytes -= len(l.b)
	m.live[i] = m.live[len(m.live)-1]
	m.live = m.live[:len(m.live)-1]
	if len(m.freed) < 64 {
		m.freed = append(m.freed, l.b)
	} else {
		m.freed[int(l.seed)%64] = l.b
	}
}

func (m *opsModel) free(i int) {
	m.t.Helper()
	l := m.live[i]
	m.checkBlock(l)
	if err := m.a.Free(l.b); err != nil {
		m.fatalf("Free(%d bytes): %v", len(l.b), err)
	}
	m.remove(i)
}

func (m *opsModel) run(data []byte) {
	m.data = data
	for m.op = 0; len(m.data) > 0 && m.op < maxOps; m.op++ {
		op := m.byte() % numOps
		if m.bytes > maxLiveBytes && op <= opAligned && op != opRealloc {
			op = opFree
		}
		switch op {
		case opMalloc, opCalloc:
			n := m.size()
			get := m.a.Malloc
			if op == opCalloc {
				get = m.a.Calloc
			}
			b, err := get(n)
			if err != nil {
				m.fatalf("allocating %d bytes: %v", n, err)
			}
			if op == opCalloc {
				for i, c := range b {
					if c != 0 {
						m.fatalf("Calloc(%d): byte %d is %#x", n, i, c)
					}
				}
			}
			m.add(b, n, 16)
		case opAligned:
			align := 1 << (m.byte() % 22)
			n := m.size()
			b, err := m.a.AlignedAlloc(align, n)
			if err != nil {
				m.fatalf("AlignedAlloc(%d, %d): %v", align, n, err)
			}
			m.add(b, n, align)
		case opRealloc:
			i, n := m.pick(), m.size()
			if i < 0 {
				continue
			}
			l := m.live[i]
			m.checkBlock(l)
			nb, err := m.a.Realloc(l.b, n)
			if err != nil {
				m.fatalf("Realloc(%d -> %d): %v", len(l.b), n, err)
			}
			if len(nb) != n || cap(nb) != n {
				m.fatalf("Realloc: len %d cap %d, want %d", len(nb), cap(nb), n)
			}
			if j := intact(nb[:min(n, len(l.b))], l.seed); j >= 0 {
				m.fatalf("Realloc(%d -> %d) lost byte %d", len(l.b), n, j)
			}
			if unsafe.SliceData(nb) != unsafe.SliceData(l.b) {
				m.freed = append(m.freed[:min(len(m.freed), 63)], l.b)
			}
			m.bytes += n - len(l.b)
			fill(nb, l.seed)
			l.b, l.align = nb, 16
		case opFree, opFree2:
			if i := m.pick(); i >= 0 {
				m.free(i)
			}
		case opTrim:
			m.a.Trim()
		case opBadFree:
			m.badFree()
		}
		if m.op%checkEvery == 0 {
			m.check()
		}
	}
	m.check()
	for len(m.live) > 0 {
		m.free(len(m.live) - 1)
	}
	s := m.a.Stats()
	if s.LiveBlocks != 0 || s.LiveBytes != 0 || s.MmapCount != 0 || s.MmapBytes != 0 {
		m.fatalf("everything freed, yet Stats has %d blocks, %d bytes, %d mappings of %d bytes",
			s.LiveBlocks, s.LiveBytes, s.MmapCount, s.MmapBytes)
	}
}

// badFree frees an interior pointer of a live block, or a stale slice
// whose memory was not handed out again: both must be refused and change
// nothing (the next check sees every block and the counters).
func (m *opsModel) badFree() {
	kind, i, off := m.byte(), m.pick(), int(m.byte())<<8|int(m.byte())
	if kind%2 == 0 {
		if i < 0 || len(m.live[i].b) < 2 {
			return
		}
		b := m.live[i].b
		off = 1 + off%(len(b)-1)
		if err := m.a.Free(b[off:]); !errors.Is(err, alloc.ErrInvalidFree) {
			m.fatalf("Free of an interior pointer (+%d of %d) gave %v", off, len(b), err)
		}
		return
	}
	if len(m.freed) == 0 {
		return
	}
	stale := m.freed[off%len(m.freed)]
	p := uintptr(unsafe.Pointer(unsafe.SliceData(stale)))
	for _, l := range m.live {
		q := uintptr(unsafe.Pointer(unsafe.SliceData(l.b)))
		if p >= q && p < q+uintptr(max(m.a.UsableSize(l.b), 1)) {
			return // memory reused: a second free would be legal
		}
	}
	if err := m.a.Free(stale); !errors.Is(err, alloc.ErrDoubleFree) && !errors.Is(err, alloc.ErrInvalidFree) {
		m.fatalf("second Free of %d bytes at %#x gave %v", len(stale), p, err)
	}
}

// check holds the whole allocator against the model: every block intact,
// no two blocks overlapping, and the counters agreeing.
func (m *opsModel) check() {
	m.t.Helper()
	type span struct{ lo, hi uintptr }
	spans := make([]span, 0, len(m.live))
	var bytes uint64
	for _, l := range m.live {
		m.checkBlock(l)
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(l.b)))
		spans = append(spans, span{lo, lo + uintptr(max(len(l.b), 1))})
		bytes += uint64(len(l.b))
	}
	slices.SortFunc(spans, func(x, y span) int {
		if x.lo < y.lo {
			return -1
		}
		if x.lo > y.lo {
			return 1
		}
		return 0
	})
	for i := 1; i < len(spans); i++ {
		if spans[i].lo < spans[i-1].hi {
			m.fatalf("blocks overlap: [%#x,%#x) and [%#x,%#x)", spans[i-1].lo, spans[i-1].hi, spans[i].lo, spans[i].hi)
		}
	}
	s := m.a.Stats()
	if s.LiveBlocks != uint64(len(m.live)) || s.LiveBytes != bytes {
		m.fatalf("Stats: %d blocks, %d bytes; model: %d blocks, %d bytes", s.LiveBlocks, s.LiveBytes, len(m.live), bytes)
	}
	if s.Committed != s.ArenaBytes+s.MmapBytes+s.QuarantineBytes {
		m.fatalf("Stats: committed %d, arena %d + mapped %d", s.Committed, s.ArenaBytes, s.MmapBytes)
	}
}
