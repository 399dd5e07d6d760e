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

// TestSmallChunks: blocks of up to 24 and 40 bytes take chunks of 32 and
// 48 bytes (glibc's smallest), which no fast bin or front holds, packed
// between chunks of 64 bytes and more that those do hold: every block
// written whole touches no other, a free merges them as any, an interior
// pointer or a second free of one is refused and changes nothing, and walk
// finds the heap sound after every step, on every config.
func TestSmallChunks(t *testing.T) {
	for _, c := range fastConfigs {
		t.Run(c.name, func(t *testing.T) {
			r, err := arena.New(arena.Config{Reserve: 1 << 30, TopPad: 64 << 10, TrimThreshold: 128 << 10,
				OS: &sys.OS{}, Budget: budget.New(c.budget)})
			require.NoError(t, err)
			h := New(r, c.opts)
			for _, n := range []uintptr{0, 1, 16, 24} {
				require.Equal(t, uintptr(32), chunkSize(n), "%d bytes", n)
			}
			for _, n := range []uintptr{25, 40} {
				require.Equal(t, uintptr(48), chunkSize(n), "%d bytes", n)
			}
			require.Equal(t, uintptr(64), chunkSize(41))
			require.Negative(t, fastIndex(32))
			require.Negative(t, fastIndex(48))
			var live []block
			alloc := func(n uintptr) {
				p, _ := h.AllocFast(n, 0)
				if p == nil {
					p, _, err = h.AllocSampled(n, 0)
					require.NoError(t, err)
				}
				b := block{p: uintptr(p), n: n, tag: byte(len(live))}
				fill(h, b)
				live = append(live, b)
			}
			sizes := []uintptr{8, 40, 100, 24, 16, 56, 30, 2000, 20}
			for i := range 400 {
				alloc(sizes[i%len(sizes)])
			}
			walk(t, h)
			small := live[0] // 8 bytes, a 32-byte chunk
			freeIntact(t, h, small)
			_, err = h.Free(r.Lookup(small.p), small.p)
			require.True(t, errors.Is(err, errs.ErrDoubleFree) || errors.Is(err, errs.ErrInvalidFree), "%v", err)
			inner := live[3] // 24 bytes
			_, err = h.Free(r.Lookup(inner.p+16), inner.p+16)
			require.Error(t, err, "an interior pointer of a 32-byte chunk")
			walk(t, h)
			rng := rand.New(rand.NewPCG(7, 8))
			rest := live[1:]
			rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
			for i := 0; i < len(rest); i++ {
				freeIntact(t, h, rest[i])
				if i%37 == 0 {
					walk(t, h)
				}
				if i%3 == 0 {
					alloc(sizes[i%len(sizes)])
					rest = append(rest, live[len(live)-1])
				}
			}
			walk(t, h)
			require.Zero(t, h.Stats().LiveChunks)
		})
	}
}
