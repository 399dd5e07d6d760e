package alloc_test

import (
	"fmt"
	"testing"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHeapProfileMedium: blocks of the best-fit heap (a front's size and
// larger ones), every one sampled by the heap under its lock, through the
// Allocator and through a Local (whose medium calls take the Allocator's
// path): the profile names the allocating function at its leaf, counts
// exactly what it allocated and freed, through either Free, and cuts the
// allocator's frames.
func TestHeapProfileMedium(t *testing.T) {
	for _, size := range []int{1500, 3000, 20000} {
		for _, local := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/local=%v", size, local), func(t *testing.T) {
				a := newAlloc(t, alloc.Config{ColdBlocks: alloctest.AllCold, ProfileRate: 1})
				l := a.NewLocal()
				defer func() { require.NoError(t, l.Close()) }()
				var bs [][]byte
				leaf := ".allocateForProfile"
				if local {
					bs, leaf = localAllocateForProfile(l, 10, size), ".localAllocateForProfile"
				} else {
					bs = allocateForProfile(a, 10, size)
				}
				for i, b := range bs[:4] {
					if i%2 == 0 {
						require.NoError(t, l.Free(b))
					} else {
						require.NoError(t, a.Free(b))
					}
				}
				p := parseProfile(t, a)
				v, found := site(p, leaf)
				require.True(t, found, "no sample names the allocating function")
				assert.Equal(t, [4]int64{10, int64(10 * size), 6, int64(6 * size)}, v)
				for _, f := range p.Function {
					assert.NotContains(t, f.Name, "(*Allocator)", "the allocator's own frames are cut")
					assert.NotContains(t, f.Name, "(*Local)", "the Local's own frames are cut")
				}
				for _, b := range bs[4:] {
					require.NoError(t, a.Free(b))
				}
				v, _ = site(parseProfile(t, a), leaf)
				assert.Equal(t, [4]int64{10, int64(10 * size), 0, 0}, v, "all freed")
			})
		}
	}
}

// TestHeapProfileMediumChurn: goroutines allocate and free medium blocks
// of the fronts' sizes and larger, through the Allocator and Locals,
// handing blocks to each other, at a rate that samples some: the fronts
// hand out and take back chunks the heap sampled and chunks they sampled
// themselves. Once every block is freed, no record is live.
func TestHeapProfileMediumChurn(t *testing.T) {
	a := newAlloc(t, alloc.Config{ColdBlocks: alloctest.AllCold, ProfileRate: 8 << 10})
	sizes := []int{1025, 1500, 2000, 2030, 3000, 9000}
	ch := make(chan []byte, 64)
	done := make(chan struct{})
	const workers = 4
	for g := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			l := a.NewLocal()
			defer func() { _ = l.Close() }()
			var mine [][]byte
			for i := range 4000 {
				n := sizes[(i*7+g)%len(sizes)]
				var b []byte
				var err error
				if i%3 == 0 {
					b, err = l.Malloc(n)
				} else {
					b, err = a.Malloc(n)
				}
				if err != nil {
					t.Error(err)
					return
				}
				select {
				case ch <- b:
				default:
					mine = append(mine, b)
				}
				if len(mine) > 8 || i%2 == 0 {
					var x []byte
					select {
					case x = <-ch:
					default:
						if len(mine) == 0 {
							continue
						}
						x, mine = mine[len(mine)-1], mine[:len(mine)-1]
					}
					if i%5 == 0 {
						err = l.Free(x)
					} else {
						err = a.Free(x)
					}
					if err != nil {
						t.Error(err)
						return
					}
				}
			}
			for _, b := range mine {
				if err := a.Free(b); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for range workers {
		<-done
	}
	close(ch)
	for b := range ch {
		require.NoError(t, a.Free(b))
	}
	require.Zero(t, a.Stats().LiveBlocks)
	sampled := int64(0)
	for _, r := range a.HeapProfile().Records {
		sampled += r.AllocObjects
		require.Zero(t, r.InUseObjects(), "every block is freed: no record is live")
	}
	require.Positive(t, sampled, "some blocks were sampled")
}
