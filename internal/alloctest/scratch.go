package alloctest

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// Scratch is what the scratch model drives: *alloc.Scratch has these
// methods; the typed helpers (alloc.ScratchNew, alloc.ScratchSlice) come
// in as functions of ScratchTarget.
type Scratch interface {
	Alloc(n int) ([]byte, error)
	AlignedAlloc(align, n int) ([]byte, error)
	Reset() error
	Free() error
	Held() int
	Used() int
}

// ScratchTarget is a Scratch with its typed helpers, as bytes: New
// returns one object of the type the test chose from s (its bytes), Slice
// a slice of that type of length n and capacity c (the bytes of its
// capacity).
type ScratchTarget struct {
	S     Scratch
	New   func(s Scratch) ([]byte, error)
	Slice func(s Scratch, n, c int) ([]byte, error)
	// Align is the alignment of the type New and Slice serve.
	Align int
	// ErrFreed is the sentinel of a call on a freed Scratch
	// (alloc.ErrScratchFreed); Renew makes a new Scratch after a Free.
	ErrFreed error
	Renew    func() Scratch
	// Held, if set, returns the bytes of the region's pages held by
	// request arenas (Stats().ScratchBytes), checked against S.Held.
	Held func() int
}

// ScratchOpKind is what a ScratchOp does.
type ScratchOpKind uint8

// The operations of a scratch stream.
const (
	ScratchAlloc   ScratchOpKind = iota // Size
	ScratchAligned                      // Align, Size
	ScratchNew                          //
	ScratchSlice                        // Size (elements), Cap (extra elements)
	ScratchReset                        //
	ScratchFree                         // then a use of the freed Scratch, then a new one
	NumScratchOps
)

var scratchOpNames = [...]string{"Alloc", "AlignedAlloc", "New", "Slice", "Reset", "Free"}

func (k ScratchOpKind) String() string {
	if int(k) < len(scratchOpNames) {
		return scratchOpNames[k]
	}
	return fmt.Sprintf("ScratchOpKind(%d)", k)
}

// ScratchOp is one operation of a scratch stream.
type ScratchOp struct {
	Kind  ScratchOpKind
	Size  int
	Align int // a power of two
	Cap   int
}

func (op ScratchOp) String() string {
	switch op.Kind {
	case ScratchAlloc:
		return fmt.Sprintf("Alloc(%d)", op.Size)
	case ScratchAligned:
		return fmt.Sprintf("AlignedAlloc(%d, %d)", op.Align, op.Size)
	case ScratchSlice:
		return fmt.Sprintf("Slice(%d, %d)", op.Size, op.Size+op.Cap)
	}
	return op.Kind.String()
}

// ScratchSize returns a request size from a band (taken modulo 8) and a
// position v in it: mostly small objects, some up to a chunk, a few beyond
// (a run of their own with the default 1 MiB chunk).
func ScratchSize(band int, v uint16) int {
	span := func(lo, hi int) int { return lo + int(v)*(hi-lo+1)>>16 }
	switch band % 8 {
	case 0:
		return span(0, 16)
	case 1, 2, 3:
		return span(1, 128)
	case 4, 5:
		return span(128, 4096)
	case 6:
		return span(4096, 200<<10)
	}
	return span(200<<10, 1200<<10)
}

// ScratchModel holds a Scratch against the list of the objects it handed
// out since its last Reset. Every object must be zeroed, aligned as asked,
// of the length asked, and overlap no other; it gets its own pattern,
// checked by Reset and Free (every object keeps its content until then)
// and by Check. Not safe for concurrent use: one model a goroutine.
type ScratchModel struct {
	t    ScratchTarget
	live []Block // since the last Reset
	seed uint32
}

// NewScratchModel returns a model of t.S with nothing handed out.
func NewScratchModel(t ScratchTarget) *ScratchModel { return &ScratchModel{t: t} }

// SeedFrom makes the model's next object seeded base+1 (models sharing an
// allocator start far apart).
func (m *ScratchModel) SeedFrom(base uint32) { m.seed = base }

// Live returns the number of objects handed out since the last Reset.
func (m *ScratchModel) Live() int { return len(m.live) }

// Apply performs op and checks what it did.
func (m *ScratchModel) Apply(op ScratchOp) error {
	var (
		b     []byte
		err   error
		want  int
		align = 16
	)
	switch op.Kind {
	case ScratchAlloc:
		b, err = m.t.S.Alloc(op.Size) // 16-byte aligned
		want = op.Size
	case ScratchAligned:
		b, err = m.t.S.AlignedAlloc(op.Align, op.Size)
		want, align = op.Size, op.Align
	case ScratchNew:
		b, err = m.t.New(m.t.S)
		want, align = -1, m.t.Align
	case ScratchSlice:
		b, err = m.t.Slice(m.t.S, op.Size, op.Size+op.Cap)
		want, align = -1, m.t.Align
	case ScratchReset:
		if err := m.CheckAll(); err != nil {
			return fmt.Errorf("before Reset: %w", err)
		}
		m.live = m.live[:0]
		if err := m.t.S.Reset(); err != nil {
			return fmt.Errorf("scratch Reset: %w", err)
		}
		if u := m.t.S.Used(); u != 0 {
			return fmt.Errorf("scratch Used() = %d after Reset", u)
		}
		return m.checkHeld()
	case ScratchFree:
		if err := m.CheckAll(); err != nil {
			return fmt.Errorf("before Free: %w", err)
		}
		m.live = m.live[:0]
		if err := m.t.S.Free(); err != nil {
			return fmt.Errorf("scratch Free: %w", err)
		}
		if _, err := m.t.S.Alloc(1); !errors.Is(err, m.t.ErrFreed) {
			return fmt.Errorf("scratch Alloc after Free: %v, want %v", err, m.t.ErrFreed)
		}
		if err := m.t.S.Free(); !errors.Is(err, m.t.ErrFreed) {
			return fmt.Errorf("scratch Free after Free: %v, want %v", err, m.t.ErrFreed)
		}
		m.t.S = m.t.Renew()
		return m.checkHeld()
	default:
		return fmt.Errorf("unknown op %v", op)
	}
	if err != nil {
		return fmt.Errorf("%v: %w", op, err)
	}
	if want >= 0 && (len(b) != want || cap(b) != want) {
		return fmt.Errorf("%v: len %d cap %d, want %d", op, len(b), cap(b), want)
	}
	if b == nil {
		return fmt.Errorf("%v: a nil slice", op)
	}
	if len(b) > 0 && addrOf(b)%uintptr(align) != 0 {
		return fmt.Errorf("%v: %#x is not %d-byte aligned", op, addrOf(b), align)
	}
	for i, x := range b {
		if x != 0 {
			return fmt.Errorf("%v: byte %d of %d is %#x, want a zeroed object", op, i, len(b), x)
		}
	}
	if err := m.overlaps(b); err != nil {
		return fmt.Errorf("%v: %w", op, err)
	}
	m.seed++
	Fill(b, m.seed)
	m.live = append(m.live, Block{B: b, Seed: m.seed})
	return nil
}

// overlaps reports a live object that shares a byte with b.
func (m *ScratchModel) overlaps(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	lo, hi := addrOf(b), addrOf(b)+uintptr(len(b))
	for _, l := range m.live {
		if len(l.B) == 0 {
			continue
		}
		if p := addrOf(l.B); p < hi && lo < p+uintptr(len(l.B)) {
			return fmt.Errorf("[%#x, %#x) overlaps a live object at [%#x, %#x)", lo, hi, p, p+uintptr(len(l.B)))
		}
	}
	return nil
}

// CheckAll checks every object's pattern, and that no two overlap.
func (m *ScratchModel) CheckAll() error {
	type span struct{ lo, hi uintptr }
	spans := make([]span, 0, len(m.live))
	for i, l := range m.live {
		if off := Intact(l.B, l.Seed); off >= 0 {
			return fmt.Errorf("object %d (%d bytes at %#x): byte %d changed", i, len(l.B), addrOf(l.B), off)
		}
		if len(l.B) > 0 {
			spans = append(spans, span{addrOf(l.B), addrOf(l.B) + uintptr(len(l.B))})
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	for i := 1; i < len(spans); i++ {
		if spans[i].lo < spans[i-1].hi {
			return fmt.Errorf("objects at %#x and %#x overlap", spans[i-1].lo, spans[i].lo)
		}
	}
	used := 0
	for _, l := range m.live {
		used += len(l.B)
	}
	if u := m.t.S.Used(); u < used {
		return fmt.Errorf("Used() = %d, below the %d bytes handed out", u, used)
	}
	return m.checkHeld()
}

// checkHeld compares the Scratch's Held with the allocator's figure, when
// the target gives one (one Scratch on the allocator).
func (m *ScratchModel) checkHeld() error {
	if m.t.Held == nil {
		return nil
	}
	if h, all := m.t.S.Held(), m.t.Held(); h != all {
		return fmt.Errorf("Held() = %d, the allocator's scratch bytes %d", h, all)
	}
	return nil
}
