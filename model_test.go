package alloc_test

import (
	"testing"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// newModel returns the shared operation-stream model (internal/alloctest)
// of a fresh allocator made from v.
func newModel(t require.TestingT, v alloctest.Variant) (*alloc.Allocator, *alloctest.Model) {
	a, err := alloc.New(alloc.ConfigOf(v))
	require.NoError(t, err)
	return a, alloctest.NewModel(a, alloc.ErrInvalidFree, alloc.ErrDoubleFree)
}

func drawSize(t *rapid.T) int {
	return alloctest.Size(rapid.IntRange(0, 9).Draw(t, "band"), uint16(rapid.IntRange(0, 1<<16-1).Draw(t, "size")))
}

// drawLive draws one of the live blocks, skipping the action if there is none.
func drawLive(t *rapid.T, m *alloctest.Model) int {
	if m.Live() == 0 {
		t.Skip("nothing live")
	}
	return rapid.IntRange(0, m.Live()-1).Draw(t, "block")
}

// actions is the rapid state machine over the model: each action draws
// one operation and applies it; "" checks the whole allocator after each.
func actions(m *alloctest.Model) map[string]func(*rapid.T) {
	apply := func(t *rapid.T, op alloctest.Op) {
		if err := m.Apply(op); err != nil {
			t.Fatal(err)
		}
	}
	return map[string]func(*rapid.T){
		"Malloc": func(t *rapid.T) { apply(t, alloctest.Op{Kind: alloctest.OpMalloc, Size: drawSize(t)}) },
		"Calloc": func(t *rapid.T) { apply(t, alloctest.Op{Kind: alloctest.OpCalloc, Size: drawSize(t)}) },
		"AlignedAlloc": func(t *rapid.T) {
			align := 1 << rapid.IntRange(0, 21).Draw(t, "log2align")
			apply(t, alloctest.Op{Kind: alloctest.OpAligned, Align: align, Size: drawSize(t)})
		},
		"Realloc": func(t *rapid.T) {
			apply(t, alloctest.Op{Kind: alloctest.OpRealloc, Block: drawLive(t, m), Size: drawSize(t)})
		},
		"Free": func(t *rapid.T) { apply(t, alloctest.Op{Kind: alloctest.OpFree, Block: drawLive(t, m)}) },
		"Trim": func(t *rapid.T) { apply(t, alloctest.Op{Kind: alloctest.OpTrim}) },
		"BadFree": func(t *rapid.T) {
			// An interior pointer of a live block, or a stale slice whose
			// memory was not handed out again: both must be refused.
			if !alloctest.Checks {
				t.Skip("built without the always-on checks")
			}
			if rapid.Bool().Draw(t, "interior") {
				apply(t, alloctest.Op{Kind: alloctest.OpFreeInside, Block: drawLive(t, m),
					Offset: rapid.IntRange(0, 1<<21).Draw(t, "off")})
				return
			}
			if m.Freed() == 0 {
				t.Skip("nothing freed")
			}
			apply(t, alloctest.Op{Kind: alloctest.OpFreeStale, Block: rapid.IntRange(0, m.Freed()-1).Draw(t, "stale")})
		},
		"": func(t *rapid.T) {
			if err := m.Check(); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func TestModel(t *testing.T) {
	for _, v := range alloctest.Variants {
		t.Run(v.Name, func(t *testing.T) {
			rapid.Check(t, func(rt *rapid.T) {
				a, m := newModel(rt, v)
				defer a.Close()
				rt.Repeat(actions(m))
				if err := m.FreeAll(); err != nil {
					rt.Fatal(err)
				}
			})
		})
	}
}
