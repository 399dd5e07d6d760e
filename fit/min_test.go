package fit

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/budget"
	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/sys"
)

// TestMinModel: blocks with room for more than they ask for (a cold
// class's: AllocFast, AllocSampled, Resize with a least), among medium ones,
// on every config of the operation streams: each has room for its least
// (Usable) and reports its requested size, written whole it touches no
// other, a resize keeps its first bytes, and walk finds the heap sound
// after every operation, its requested bytes exact.
func TestMinModel(t *testing.T) {
	type minBlock struct {
		block         // n: the bytes written (max of the request and its least)
		req   uintptr // the request
	}
	for seed := range uint64(1) {
		for _, c := range fastConfigs {
			r, err := arena.New(arena.Config{Reserve: 1 << 30, TopPad: 64 << 10, TrimThreshold: 128 << 10,
				OS: &sys.OS{}, Budget: budget.New(c.budget)})
			require.NoError(t, err)
			h := New(r, c.opts)
			rng := rand.New(rand.NewPCG(seed, 99))
			size := func() (n, least uintptr) {
				switch n = uintptr(rng.IntN(2049)); rng.IntN(8) {
				case 0:
					return 2049 + uintptr(rng.IntN(10000)), 0 // medium
				case 1:
					return n, 0
				}
				return n, n + uintptr(rng.IntN(300))
			}
			usable := func(b minBlock, least uintptr) {
				size, req, err := h.Usable(r.Lookup(b.p), b.p)
				require.NoError(t, err)
				require.Equal(t, b.req, req)
				require.GreaterOrEqual(t, size, least)
			}
			var live []minBlock
			tag := byte(0)
			for range 300 {
				switch op := rng.IntN(10); {
				case op < 5 || len(live) == 0:
					n, least := size()
					p, _ := h.AllocFast(n, least)
					if p == nil {
						if p, _, err = h.AllocSampled(n, least); err != nil {
							require.ErrorIs(t, err, errs.ErrNoMemory)
							break
						}
					}
					tag++
					b := minBlock{block{uintptr(p), max(n, least), tag}, n}
					usable(b, max(n, least))
					fill(h, b.block)
					live = append(live, b)
				case op < 8:
					k := rng.IntN(len(live))
					b := live[k]
					require.True(t, intact(h, b.block), "block %#x changed", b.p)
					ar := r.Lookup(b.p)
					if rng.IntN(2) == 0 || !h.FreeFast(ar, b.p) {
						n, err := h.Free(ar, b.p)
						require.NoError(t, err)
						require.Equal(t, b.req, n)
					}
					live[k] = live[len(live)-1]
					live = live[:len(live)-1]
					_, err := h.Free(ar, b.p)
					require.True(t, errors.Is(err, errs.ErrDoubleFree) || errors.Is(err, errs.ErrInvalidFree), "%v", err)
				default:
					k := rng.IntN(len(live))
					b := live[k]
					n, least := size()
					ok, err := h.Resize(r.Lookup(b.p), b.p, n, least)
					require.NoError(t, err)
					require.True(t, intact(h, block{b.p, min(b.n, max(n, least)), b.tag}), "a resize kept the block's first bytes")
					if ok {
						b.n, b.req = max(n, least), n
						usable(b, b.n)
						fill(h, b.block)
						live[k] = b
					}
				}
				walk(t, h)
				var want uintptr
				for _, b := range live {
					want += b.req
				}
				st := h.Stats()
				require.Equal(t, uintptr(len(live)), st.LiveChunks)
				require.Equal(t, want, st.LiveBytes, "the requested bytes of the blocks in use")
			}
			for _, b := range live {
				freeIntact(t, h, b.block)
			}
			h.Trim()
			walk(t, h)
			require.Zero(t, h.Stats().LiveChunks)
			h.Close()
			require.NoError(t, r.Close())
		}
	}
}
