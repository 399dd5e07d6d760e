package shm

import (
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/stretchr/testify/require"
)

// abandoned is the panic a fuzzed hook raises to abandon an operation
// part way: the guard rolls the operation back from the undo log, as a
// process taking over a dead holder's lock would.
type abandoned struct{}

// FuzzTwoAttachments drives one pool through two attachments in this
// process (two mappings at two addresses, as two processes have) with a
// stream of operations: allocations of small and large blocks through
// either, frees through either of blocks allocated through the other
// (contents checked first), double frees and bad Refs (refused, the pool
// unchanged), and operations abandoned at a chosen step while they have
// changes logged (rolled back: the pool exactly as before). The verifier runs now and then and at the end,
// and its counts must match the model's.
func FuzzTwoAttachments(f *testing.F) {
	f.Add([]byte{0, 10, 1, 3, 2, 0, 7, 5, 4, 0, 6, 9, 0, 2, 1})
	f.Add([]byte{1, 200, 1, 40, 0, 0, 2, 1, 3, 0, 6, 3, 1, 5, 0, 2, 0, 2})
	f.Add([]byte{0, 255, 0, 255, 0, 255, 6, 30, 0, 0, 2, 0, 2, 1, 5, 5})
	f.Fuzz(fuzzOps)
}

func fuzzOps(t *testing.T, ops []byte) {
	{
		a := newTestPool(t, 2<<20)
		dup, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(a.File().Fd())), os.O_RDWR, 0)
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		b, err := Attach(dup)
		require.NoError(t, err)
		defer b.Close()
		att := [2]*Pool{a, b}

		type blk struct {
			n    int
			seed uint32
		}
		live := map[Ref]blk{}
		var order []Ref // live refs in allocation order, for picking
		var freed []Ref
		next := func() byte {
			if len(ops) == 0 {
				return 0
			}
			c := ops[0]
			ops = ops[1:]
			return c
		}
		pick := func() (Ref, bool) {
			if len(order) == 0 {
				return 0, false
			}
			i := int(next()) % len(order)
			return order[i], true
		}
		drop := func(r Ref) {
			delete(live, r)
			for i, x := range order {
				if x == r {
					order = append(order[:i], order[i+1:]...)
					break
				}
			}
			freed = append(freed, r)
		}
		for seed := uint32(1); len(ops) > 0; seed++ {
			op, p := next(), att[seed%2]
			switch op % 7 {
			case 0, 1: // allocate: small, or large
				n := int(next())*int(next()%16+1) + int(op%7)*MaxSmall
				r, s, err := p.Alloc(n)
				if errors.Is(err, ErrNoMemory) {
					continue
				}
				require.NoError(t, err)
				alloctest.Fill(s, seed)
				live[r] = blk{n, seed}
				order = append(order, r)
			case 2: // free through the other attachment, contents checked first
				r, ok := pick()
				if !ok {
					continue
				}
				s, err := p.Bytes(r)
				require.NoError(t, err)
				require.Equal(t, -1, alloctest.Intact(s[:live[r].n], live[r].seed), "block %v", r)
				require.NoError(t, att[(seed+1)%2].Free(r))
				drop(r)
			case 3: // free again a block already freed, unless it was reused
				if len(freed) == 0 {
					continue
				}
				r := freed[int(next())%len(freed)]
				if _, ok := live[r]; ok {
					continue
				}
				before := mustCheck(t, p)
				err := p.Free(r)
				require.True(t, errors.Is(err, ErrDoubleFree) || errors.Is(err, ErrInvalidFree), "%v", err)
				require.Equal(t, before, mustCheck(t, p))
			case 4: // a Ref inside a block, or another pool's
				r, ok := pick()
				if !ok {
					continue
				}
				bad := r + Ref(next()%15+1) // blocks start 16-byte aligned
				if next()%2 == 0 {
					bad = r ^ 1<<refShift
				}
				before := mustCheck(t, p)
				require.ErrorIs(t, p.Free(bad), ErrInvalidFree)
				require.Equal(t, before, mustCheck(t, p))
			case 5: // the verifier
				rep := mustCheck(t, p)
				require.Equal(t, uint64(len(live)), rep.LiveBlocks)
			case 6: // abandon the next allocation or free at a step
				at := int(next())%60 + 1
				before := mustCheck(t, p)
				steps := 0
				p.hook = func() {
					// Only while the operation has logged changes: at the
					// lock's step or the unlock's, abandoning it leaves
					// nothing to roll back (before, or already done).
					if steps++; steps >= at && p.h.Log.N != 0 {
						panic(abandoned{})
					}
				}
				r, toFree := pick()
				func() {
					defer func() {
						if x := recover(); x != nil {
							require.Equal(t, abandoned{}, x)
							p.hook = nil
							after := mustCheck(t, p)
							before.Recovered, after.Recovered = false, false
							require.Equal(t, before, after, "abandoned at step %d: rolled back", at)
						}
					}()
					if toFree && next()%2 == 0 {
						require.NoError(t, p.Free(r))
						drop(r)
					} else {
						r, s, err := p.Alloc(int(next()) * 40)
						if err == nil {
							alloctest.Fill(s, seed)
							live[r] = blk{len(s), seed}
							order = append(order, r)
						}
					}
				}()
				p.hook = nil
			}
		}
		rep := mustCheck(t, a)
		require.Equal(t, uint64(len(live)), rep.LiveBlocks)
		for r, x := range live {
			s, err := b.Bytes(r)
			require.NoError(t, err)
			require.Equal(t, -1, alloctest.Intact(s[:x.n], x.seed))
		}
	}
}

// TestFuzzOpsRandom runs the fuzz target's body over random streams.
func TestFuzzOpsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		ops := make([]byte, rng.IntN(200))
		for i := range ops {
			ops[i] = byte(rng.Uint32())
		}
		fuzzOps(t, ops)
	}
}
