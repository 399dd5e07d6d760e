package alloc_test

import (
	"errors"
	"testing"

	"github.com/brkmap/alloc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNoGoAllocations asserts the README's "0 allocs/op on every path" of
// its speed table: once warm, no operation on a block of the slabs
// allocates on the Go heap, under every policy that serves such blocks
// from the region. (A block in its own mapping or a mid-size run has a
// Go-side record, and Debug keeps stacks: those paths allocate, and the
// README says so.)
func TestNoGoAllocations(t *testing.T) {
	type point struct{ x, y int64 }
	paths := []struct {
		name string
		op   func(a *alloc.Allocator) error
	}{
		{"malloc/free 16", pair(16, false)},
		{"malloc/free 1 KiB", pair(1<<10, false)},
		{"malloc/free 32 KiB", pair(32<<10, false)},
		{"calloc/free 64", pair(64, true)},
		{"realloc grow and shrink", func(a *alloc.Allocator) error {
			b, err := a.Malloc(100)
			for _, n := range []int{3000, 20 << 10, 10} {
				if err != nil {
					return err
				}
				b, err = a.Realloc(b, n)
			}
			if err != nil {
				return err
			}
			return a.Free(b)
		}},
		{"aligned", func(a *alloc.Allocator) error {
			b, err := a.AlignedAlloc(4096, 100)
			if err != nil {
				return err
			}
			return a.Free(b)
		}},
		{"usable size", func(a *alloc.Allocator) error {
			b, err := a.Malloc(100)
			if err != nil {
				return err
			}
			if a.UsableSize(b) < 100 {
				return errSmall
			}
			return a.Free(b)
		}},
		{"typed", func(a *alloc.Allocator) error {
			p, err := alloc.NewObject[point](a)
			if err != nil {
				return err
			}
			p.x, p.y = 1, 2
			if err := alloc.FreeObject(a, p); err != nil {
				return err
			}
			s, err := alloc.MakeSlice[point](a, 10)
			if err != nil {
				return err
			}
			return alloc.FreeSlice(a, s)
		}},
	}
	for _, cfg := range []struct {
		name string
		cfg  alloc.Config
	}{{"threshold", alloc.Config{}}, {"brk", alloc.Config{Policy: alloc.PolicyBrk}},
		{"dynamic", alloc.Config{DynamicThreshold: true}}} {
		for _, p := range paths {
			t.Run(cfg.name+"/"+p.name, func(t *testing.T) {
				a := newAlloc(t, cfg.cfg)
				require.NoError(t, p.op(a)) // warm: the first slab, the first cache
				var err error
				allocs := testing.AllocsPerRun(100, func() {
					if e := p.op(a); e != nil && err == nil {
						err = e
					}
				})
				require.NoError(t, err)
				assert.Zero(t, allocs)
			})
		}
	}
}

var errSmall = errors.New("UsableSize below the request")

func pair(n int, zeroed bool) func(a *alloc.Allocator) error {
	return func(a *alloc.Allocator) error {
		get := a.Malloc
		if zeroed {
			get = a.Calloc
		}
		b, err := get(n)
		if err != nil {
			return err
		}
		b[0] = 1
		return a.Free(b)
	}
}
