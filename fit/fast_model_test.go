package fit

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/budget"
	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/sys"
)

// fastConfigs are the heaps the operation streams run on: the fast bins
// with and without the purge's pass (driven by hand: its timer is an hour
// away), the purge at once (no fast bins), the runs' tops trimmed on a
// small threshold, and a budget a few runs wide, so that growing the heap
// is refused, also right after the fast bins were consolidated.
var fastConfigs = []struct {
	name   string
	opts   Options
	budget uint64
}{
	{"plain", Options{}, 0},
	{"no-fronts", Options{NoFronts: true}, 0},
	{"pass", Options{Purge: true, PurgeDelay: time.Hour}, 0},
	{"at-once", Options{Purge: true}, 0},
	{"trim", Options{TrimThreshold: 64 << 10, TopPad: 4 << 10, Purge: true, PurgeDelay: time.Hour}, 0},
	{"budget", Options{TrimThreshold: 128 << 10, Purge: true, PurgeDelay: time.Hour}, 3 << 20},
}

// runOps drives a heap of config cfg with the operation stream ops (two
// bytes an operation): fastConfigs[cfg%len], its bitmaps in the region's
// side if cfg/len is even, in Go slices if odd; checking the contents of
// every live block it touches and walk after every operation.
func runOps(t *testing.T, cfg int, ops []byte) (fastAllocs, fastFrees int) {
	c := fastConfigs[cfg%len(fastConfigs)]
	side := uint(SideShift) // the bitmaps in the region's side, or (every other config) Go slices
	if cfg/len(fastConfigs)%2 == 1 {
		side = 0
	}
	r, err := arena.New(arena.Config{Reserve: 1 << 30, TopPad: 64 << 10, TrimThreshold: 128 << 10,
		OS: &sys.OS{}, Budget: budget.New(c.budget), SideShift: side})
	require.NoError(t, err)
	h := New(r, c.opts)
	defer func() {
		h.Close()
		_ = r.Close()
	}()
	// sizes: a few medium sizes over and over (the fast bins' case),
	// tiny ones, and larger ones that merge and split
	size := func(a, b byte) uintptr {
		switch a % 8 {
		case 0:
			return uintptr(b) // tiny, 0 too
		case 1, 2, 3:
			return 1025 + uintptr(b%4)*1000
		case 4:
			return 1025 + uintptr(b)*120 // the medium range
		case 5:
			return 4000 + uintptr(b)*16 // the fast bins' last sizes, and past them
		case 6:
			return 64<<10 + uintptr(b)*1024
		}
		return uintptr(b) * 16
	}
	var live []block
	var lastFreed uintptr
	tag := byte(0)
	for i := 0; i+1 < len(ops); i += 2 {
		op, arg := ops[i], ops[i+1]
		switch {
		case op < 100 || len(live) == 0:
			n := size(op, arg)
			if op&3 == 3 && lastFreed != 0 {
				n = lastFreed // the size just freed: a front's, or a fast bin's, case
			}
			var p unsafe.Pointer
			if op&1 == 1 { // this P's front first, as the allocator does
				if p, _ = h.AllocFast(n, 0); p != nil {
					fastAllocs++
				}
			}
			var err error
			if p == nil {
				p, err = h.Alloc(n)
			}
			if err != nil {
				require.ErrorIs(t, err, errs.ErrNoMemory, "Alloc(%d)", n)
				break
			}
			tag++
			b := block{p: uintptr(p), n: n, tag: tag}
			require.Zero(t, b.p%16)
			fill(h, b)
			live = append(live, b)
		case op < 170:
			k := int(arg) % len(live)
			b := live[k]
			require.True(t, intact(h, b), "block %#x changed", b.p)
			ar := h.region.Lookup(b.p)
			if arg&1 == 1 && h.FreeFast(ar, b.p) { // into this P's front first, as the allocator does
				fastFrees++
			} else {
				n, err := h.Free(ar, b.p)
				require.NoError(t, err)
				require.Equal(t, b.n, n)
			}
			lastFreed = b.n
			live[k] = live[len(live)-1]
			live = live[:len(live)-1]
			require.False(t, h.FreeFast(ar, b.p), "a second free, without the lock")
			_, err := h.Free(ar, b.p) // held or merged: refused
			require.True(t, errors.Is(err, errs.ErrDoubleFree) || errors.Is(err, errs.ErrInvalidFree), "%v", err)
			require.False(t, h.FreeFast(ar, b.p+16))
			_, err = h.Free(ar, b.p+16)
			require.Error(t, err)
		case op < 230:
			k := int(arg) % len(live)
			b := live[k]
			n := size(op, arg*7+byte(i))
			ok, err := h.Resize(h.region.Lookup(b.p), b.p, n, 0)
			require.NoError(t, err)
			require.True(t, intact(h, block{p: b.p, n: min(n, b.n), tag: b.tag}), "a resize kept the block's first bytes")
			if ok {
				b.n = n
				fill(h, b)
				live[k] = b
			}
		case op < 240:
			h.Trim()
			require.Zero(t, h.fastBytes, "Trim empties the fast bins")
			require.Zero(t, h.Stats().Cached, "and the fronts")
		case op < 248:
			h.Idle()
		default:
			h.mu.Lock()
			armed := h.timer != nil
			h.mu.Unlock()
			if armed {
				h.purgePass()
			}
		}
		walk(t, h)
		st := h.Stats()
		require.Equal(t, uintptr(len(live)), st.LiveChunks)
		var want uintptr
		for _, b := range live {
			want += b.n
		}
		require.Equal(t, want, st.LiveBytes, "the requested bytes of the blocks in use")
	}
	for _, b := range live {
		freeIntact(t, h, b)
	}
	walk(t, h)
	h.Trim()
	walk(t, h)
	st := h.Stats()
	require.Zero(t, st.LiveChunks)
	require.Zero(t, st.Cached)
	require.Zero(t, h.fastBytes)
	require.LessOrEqual(t, st.Released, st.FreeBytes)
	require.LessOrEqual(t, st.Runs, uintptr(1))
	return fastAllocs, fastFrees
}

// TestFastModel runs random operation streams on every config.
func TestFastModel(t *testing.T) {
	rounds := 3 // walk after every operation is slow: go test -fuzz FuzzFastOps for more
	if testing.Short() {
		rounds = 1
	}
	allocs, frees := 0, 0
	for seed := range uint64(rounds) {
		rng := rand.New(rand.NewPCG(seed, 77))
		ops := make([]byte, 2*400)
		for i := range ops {
			ops[i] = byte(rng.Uint32())
		}
		for cfg := range 2 * len(fastConfigs) { // each config with the side and without (runOps)
			a, f := runOps(t, cfg, ops)
			allocs, frees = allocs+a, frees+f
		}
	}
	// the streams went through the fronts (which P runs a call is the
	// scheduler's: counted over every stream, not one)
	require.NotZero(t, frees, "blocks freed into a front")
	require.NotZero(t, allocs, "blocks taken from a front")
}

// FuzzFastOps: go test -fuzz FuzzFastOps ./fit
func FuzzFastOps(f *testing.F) {
	f.Add(uint8(0), []byte{1, 1, 1, 1, 110, 0, 110, 0, 1, 1, 1, 1})
	f.Add(uint8(1), []byte{2, 3, 2, 3, 2, 3, 120, 1, 120, 0, 200, 0, 250, 0, 250, 0})
	f.Add(uint8(4), []byte{6, 255, 6, 255, 6, 255, 6, 255, 6, 255, 130, 2, 5, 0, 200, 1})
	f.Fuzz(func(t *testing.T, cfg uint8, ops []byte) {
		if len(ops) > 4000 {
			ops = ops[:4000]
		}
		_, _ = runOps(t, int(cfg), ops)
	})
}
