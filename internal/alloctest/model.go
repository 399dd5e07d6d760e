package alloctest

import (
	"errors"
	"fmt"
	"slices"
	"unsafe"

	"github.com/brkmap/alloc/stats"
)

// Allocator is what the model drives: *alloc.Allocator has these methods.
type Allocator interface {
	Malloc(n int) ([]byte, error)
	Calloc(n int) ([]byte, error)
	Realloc(b []byte, n int) ([]byte, error)
	AlignedAlloc(align, n int) ([]byte, error)
	Free(b []byte) error
	UsableSize(b []byte) int
	Trim() int
	Stats() stats.Snapshot
}

// OpKind is what an Op does.
type OpKind uint8

// The operations of a stream.
const (
	OpMalloc     OpKind = iota // Size
	OpCalloc                   // Size
	OpRealloc                  // Block, Size
	OpAligned                  // Align, Size
	OpFree                     // Block
	OpTrim                     //
	OpFreeInside               // Block, Offset: free a pointer inside a live block
	OpFreeStale                // Block (among the freed): free a slice again
	NumOps
)

var opNames = [...]string{"Malloc", "Calloc", "Realloc", "AlignedAlloc", "Free", "Trim", "Free(inside)", "Free(stale)"}

func (k OpKind) String() string {
	if int(k) < len(opNames) {
		return opNames[k]
	}
	return fmt.Sprintf("OpKind(%d)", k)
}

// Op is one operation of a stream. Block chooses among the live blocks
// (among the freed ones for OpFreeStale) modulo their number, so that any
// value is a valid choice; an op that needs a block when there is none
// does nothing.
type Op struct {
	Kind   OpKind
	Size   int
	Align  int // a power of two
	Block  int
	Offset int // OpFreeInside: 1 + Offset mod (len-1) bytes into the block
}

func (op Op) String() string {
	switch op.Kind {
	case OpMalloc, OpCalloc:
		return fmt.Sprintf("%v(%d)", op.Kind, op.Size)
	case OpAligned:
		return fmt.Sprintf("%v(%d, %d)", op.Kind, op.Align, op.Size)
	case OpRealloc:
		return fmt.Sprintf("%v(#%d, %d)", op.Kind, op.Block, op.Size)
	case OpTrim:
		return op.Kind.String()
	}
	return fmt.Sprintf("%v(#%d)", op.Kind, op.Block)
}

// Size returns a size up to 2 MiB from a band (0 to 9, taken modulo 10)
// and a position v within it: most sizes small, as programs ask. Bands 0
// to 4 are slab sizes, 5 and 6 mid-size runs, 7 and 8 straddle the mmap
// threshold, 9 is large.
func Size(band int, v uint16) int {
	span := func(lo, hi int) int { return lo + int(v)*(hi-lo+1)>>16 }
	switch band % 10 {
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

// Block is a live block of the model: the slice the allocator gave and the
// seed of the pattern written into it.
type Block struct {
	B    []byte
	Seed uint32
	// Handed is set on a block another model handed over (Hand, Adopt),
	// until a Realloc here resizes it: a free of it is a free on another
	// goroutine than the one that allocated.
	Handed bool
}

// maxFreed is how many freed slices the model keeps for stale frees.
const maxFreed = 64

// Model holds an allocator against a plain list of its live blocks. Every
// block gets its own pattern when it is handed out (and its new tail when
// it grows); Apply checks a block's pattern before it is freed or moved,
// and Check checks every block, that no two live blocks overlap, and that
// Stats counts exactly the live blocks and bytes. Bad frees must be
// refused with the exact sentinel and change nothing.
//
// A Model is not safe for concurrent use. Several models may drive one
// allocator, one a goroutine, and hand blocks to each other (Hand, Adopt);
// CheckAll then holds the allocator against all of them at once.
type Model struct {
	a Allocator
	// errInvalidFree and errDoubleFree are the allocator's sentinels
	// (alloc.ErrInvalidFree, alloc.ErrDoubleFree).
	errInvalidFree, errDoubleFree error
	// refusal, if set, is the sentinel of a refused request (an injected
	// kernel failure, alloc.ErrOutOfMemory): see SetRefusal.
	refusal error

	live   []*Block
	bytes  int
	freed  [][]byte
	nfreed int // slices ever kept: which of freed the next one replaces
	seed   uint32
}

// NewModel returns a model of a with nothing live. errInvalidFree and
// errDoubleFree are the sentinels a's bad frees wrap.
func NewModel(a Allocator, errInvalidFree, errDoubleFree error) *Model {
	return &Model{a: a, errInvalidFree: errInvalidFree, errDoubleFree: errDoubleFree}
}

// Retarget makes the model drive a instead, keeping its blocks: a must
// serve the same memory (a new handle on the same allocator, as a new
// alloc.Local replacing a closed one).
func (m *Model) Retarget(a Allocator) { m.a = a }

// ErrRefused is what Apply wraps when the allocator refused an operation
// with the refusal sentinel (SetRefusal) and the model found that the
// refusal changed nothing.
var ErrRefused = errors.New("alloctest: refused")

// SetRefusal makes err (the allocator's out-of-memory sentinel) a legal
// answer to Malloc, Calloc, AlignedAlloc, Realloc and Free: the suites that
// make the kernel fail set it. A refused operation must change nothing (no
// block handed out, a block given to Realloc or Free still live and
// intact); Apply then returns an error wrapping ErrRefused and err.
func (m *Model) SetRefusal(err error) { m.refusal = err }

// refused reports whether err is a refusal the model accepts.
func (m *Model) refused(err error) bool { return m.refusal != nil && errors.Is(err, m.refusal) }

// Blocks returns the live blocks (the model's own: do not change them).
func (m *Model) Blocks() []*Block { return m.live }

// Find returns the index of the live block that starts where b starts,
// for an Op's Block, or -1.
func (m *Model) Find(b []byte) int {
	p := addrOf(b)
	for i, l := range m.live {
		if addrOf(l.B) == p {
			return i
		}
	}
	return -1
}

// SeedFrom makes the model's next block seeded base+1: models that
// share an allocator start far apart, so that no two live blocks share a
// pattern.
func (m *Model) SeedFrom(base uint32) { m.seed = base }

// Hand checks live block i (modulo their number; there must be one) and
// takes it out of the model without freeing it, for another model to
// Adopt.
func (m *Model) Hand(i int) (*Block, error) {
	i %= len(m.live)
	l := m.live[i]
	if err := m.checkBlock(l); err != nil {
		return nil, fmt.Errorf("hand-over: %w", err)
	}
	m.remove(i)
	return l, nil
}

// Adopt makes l, handed over by another model of the same allocator, a
// live block of m.
func (m *Model) Adopt(l *Block) {
	l.Handed = true
	m.live = append(m.live, l)
	m.bytes += len(l.B)
}

// remove takes live block i out of the model.
func (m *Model) remove(i int) {
	l := m.live[i]
	m.bytes -= len(l.B)
	m.live[i] = m.live[len(m.live)-1]
	m.live = m.live[:len(m.live)-1]
}

// Live returns the number of live blocks.
func (m *Model) Live() int { return len(m.live) }

// LiveBytes returns the bytes of the live blocks, as requested.
func (m *Model) LiveBytes() int { return m.bytes }

// Freed returns the number of freed slices kept for stale frees.
func (m *Model) Freed() int { return len(m.freed) }

func addrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// Apply performs op on the allocator and the model, and reports the first
// way the allocator broke its contract.
func (m *Model) Apply(op Op) error {
	if err := m.apply(op); err != nil {
		return fmt.Errorf("%v: %w", op, err)
	}
	return nil
}

func (m *Model) apply(op Op) error {
	switch op.Kind {
	case OpMalloc, OpCalloc:
		get := m.a.Malloc
		if op.Kind == OpCalloc {
			get = m.a.Calloc
		}
		b, err := get(op.Size)
		if m.refused(err) && b == nil {
			return fmt.Errorf("%w: %w", ErrRefused, err)
		}
		if err != nil {
			return err
		}
		if op.Kind == OpCalloc {
			for i, c := range b {
				if c != 0 {
					return fmt.Errorf("byte %d is %#x, not zero", i, c)
				}
			}
		}
		return m.add(b, op.Size, 16)
	case OpAligned:
		b, err := m.a.AlignedAlloc(op.Align, op.Size)
		if m.refused(err) && b == nil {
			return fmt.Errorf("%w: %w", ErrRefused, err)
		}
		if err != nil {
			return err
		}
		return m.add(b, op.Size, op.Align)
	case OpRealloc:
		if len(m.live) == 0 {
			return nil
		}
		return m.realloc(m.live[op.Block%len(m.live)], op.Size)
	case OpFree:
		if len(m.live) == 0 {
			return nil
		}
		return m.free(op.Block % len(m.live))
	case OpTrim:
		m.a.Trim()
		return nil
	case OpFreeInside:
		if len(m.live) == 0 {
			return nil
		}
		b := m.live[op.Block%len(m.live)].B
		if len(b) < 2 {
			return nil
		}
		off := 1 + op.Offset%(len(b)-1)
		if err := m.a.Free(b[off:]); !errors.Is(err, m.errInvalidFree) {
			return fmt.Errorf("free of +%d of a %d-byte block gave %v, want %v", off, len(b), err, m.errInvalidFree)
		}
		return nil
	case OpFreeStale:
		if len(m.freed) == 0 {
			return nil
		}
		return m.freeStale(m.freed[op.Block%len(m.freed)])
	}
	return fmt.Errorf("unknown op %d", op.Kind)
}

func (m *Model) add(b []byte, n, align int) error {
	if b == nil || len(b) != n || cap(b) != n {
		return fmt.Errorf("block of %d bytes: nil %v, len %d, cap %d", n, b == nil, len(b), cap(b))
	}
	if p := addrOf(b); p%uintptr(max(align, 16)) != 0 {
		return fmt.Errorf("block %#x not aligned to %d", p, max(align, 16))
	}
	if u := m.a.UsableSize(b); u < n {
		return fmt.Errorf("UsableSize %d < %d", u, n)
	}
	m.seed++
	Fill(b, m.seed)
	m.live = append(m.live, &Block{B: b, Seed: m.seed})
	m.bytes += n
	return nil
}

func (m *Model) checkBlock(l *Block) error {
	if i := Intact(l.B, l.Seed); i >= 0 {
		return fmt.Errorf("block %d (%d bytes at %p) damaged at offset %d", l.Seed, len(l.B), unsafe.SliceData(l.B), i)
	}
	return nil
}

func (m *Model) realloc(l *Block, n int) error {
	if err := m.checkBlock(l); err != nil {
		return err
	}
	nb, err := m.a.Realloc(l.B, n)
	if err != nil {
		if err := m.checkBlock(l); err != nil {
			return fmt.Errorf("a failed Realloc damaged the block: %w", err)
		}
		if m.refused(err) {
			return fmt.Errorf("%w: %w", ErrRefused, err)
		}
		return err
	}
	if len(nb) != n || cap(nb) != n {
		return fmt.Errorf("len %d cap %d, want %d", len(nb), cap(nb), n)
	}
	if j := Intact(nb[:min(n, len(l.B))], l.Seed); j >= 0 {
		return fmt.Errorf("%d -> %d bytes lost byte %d", len(l.B), n, j)
	}
	if addrOf(nb) != addrOf(l.B) {
		m.keepFreed(l.B)
	}
	m.bytes += n - len(l.B)
	Fill(nb, l.Seed)
	l.B = nb
	l.Handed = false
	return nil
}

func (m *Model) keepFreed(b []byte) {
	if len(m.freed) < maxFreed {
		m.freed = append(m.freed, b)
	} else {
		m.freed[m.nfreed%maxFreed] = b
	}
	m.nfreed++
}

func (m *Model) free(i int) error {
	l := m.live[i]
	if err := m.checkBlock(l); err != nil {
		return err
	}
	if err := m.a.Free(l.B); m.refused(err) {
		return fmt.Errorf("%w: %w", ErrRefused, err) // still live: the model keeps it
	} else if err != nil {
		return fmt.Errorf("free of %d bytes: %w", len(l.B), err)
	}
	m.remove(i)
	m.keepFreed(l.B)
	return nil
}

// freeStale frees a slice a second time, unless its memory was handed out
// again (then the free would be legal). A block still in the region is
// free memory: ErrDoubleFree. One whose mapping is gone is not this
// allocator's any more: ErrInvalidFree. Either sentinel, and nothing else.
func (m *Model) freeStale(stale []byte) error {
	p := addrOf(stale)
	for _, l := range m.live {
		q := addrOf(l.B)
		if p >= q && p < q+uintptr(max(m.a.UsableSize(l.B), 1)) {
			return nil
		}
	}
	err := m.a.Free(stale)
	if !errors.Is(err, m.errDoubleFree) && !errors.Is(err, m.errInvalidFree) {
		return fmt.Errorf("second free of %d bytes at %#x gave %v, want %v or %v", len(stale), p, err, m.errDoubleFree, m.errInvalidFree)
	}
	return nil
}

// Check holds the whole allocator against the model: every block intact,
// no two blocks overlapping, and the counters agreeing.
func (m *Model) Check() error { return CheckAll(m) }

// CheckAll holds an allocator against all the models that drive it (at
// least one; none in the middle of an operation): every block of each
// intact and live, no two blocks of any overlapping, and the counters
// agreeing with their sum.
func CheckAll(ms ...*Model) error {
	type span struct{ lo, hi uintptr }
	var spans []span
	var blocks, bytes uint64
	for _, m := range ms {
		for _, l := range m.live {
			if err := m.checkBlock(l); err != nil {
				return err
			}
			if u := m.a.UsableSize(l.B); u < len(l.B) {
				return fmt.Errorf("block %d (%d bytes at %p) is not live: UsableSize %d", l.Seed, len(l.B), unsafe.SliceData(l.B), u)
			}
			lo := addrOf(l.B)
			spans = append(spans, span{lo, lo + uintptr(max(len(l.B), 1))})
			bytes += uint64(len(l.B))
		}
		blocks += uint64(len(m.live))
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
			return fmt.Errorf("blocks overlap: [%#x,%#x) and [%#x,%#x)", spans[i-1].lo, spans[i-1].hi, spans[i].lo, spans[i].hi)
		}
	}
	s := ms[0].a.Stats()
	if s.LiveBlocks != blocks || s.LiveBytes != bytes {
		return fmt.Errorf("counters disagree: Stats has %d blocks, %d bytes; the model %d blocks, %d bytes", s.LiveBlocks, s.LiveBytes, blocks, bytes)
	}
	if s.Committed != s.ArenaBytes+s.MmapBytes+s.QuarantineBytes {
		return fmt.Errorf("counters disagree: Stats has committed %d, arena %d + mapped %d + quarantine %d", s.Committed, s.ArenaBytes, s.MmapBytes, s.QuarantineBytes)
	}
	return nil
}

// FreeAll checks and frees every live block, then checks that Stats shows
// nothing live and no mapping left.
func (m *Model) FreeAll() error {
	if err := m.Check(); err != nil {
		return err
	}
	for len(m.live) > 0 {
		if err := m.free(len(m.live) - 1); err != nil {
			return err
		}
	}
	return Empty(m.a)
}

// Empty checks that a's Stats show nothing live and no mapping left: what
// freeing every block must leave.
func Empty(a Allocator) error {
	s := a.Stats()
	if s.LiveBlocks != 0 || s.LiveBytes != 0 || s.MmapCount != 0 || s.MmapBytes != 0 {
		return fmt.Errorf("everything freed, yet Stats has %d blocks, %d bytes, %d mappings of %d bytes",
			s.LiveBlocks, s.LiveBytes, s.MmapCount, s.MmapBytes)
	}
	return nil
}
