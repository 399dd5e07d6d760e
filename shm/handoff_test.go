package shm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A mailbox is a single-producer single-consumer ring of blocks handed
// from one process to another, itself a block of the pool: the producer
// owns tail and done, the consumer head; each entry is a block's Ref, its
// length and its pattern's seed.
const (
	boxCap   = 256
	boxBytes = 192 + boxCap*24
	inEnv    = "BRKMAP_SHM_IN"
	outEnv   = "BRKMAP_SHM_OUT"
)

type mailbox struct{ b []byte }

func (m mailbox) word(off int) *uint64 { return (*uint64)(unsafe.Pointer(&m.b[off])) }

func (m mailbox) put(r Ref, n int, seed uint32) bool {
	tail := *m.word(0)
	if tail-atomic.LoadUint64(m.word(64)) == boxCap {
		return false
	}
	e := 192 + int(tail%boxCap)*24
	*m.word(e), *m.word(e + 8), *m.word(e + 16) = uint64(r), uint64(n), uint64(seed)
	atomic.StoreUint64(m.word(0), tail+1)
	return true
}

func (m mailbox) get() (r Ref, n int, seed uint32, ok bool) {
	head := *m.word(64)
	if head == atomic.LoadUint64(m.word(0)) {
		return 0, 0, 0, false
	}
	e := 192 + int(head%boxCap)*24
	r, n, seed = Ref(*m.word(e)), int(*m.word(e + 8)), uint32(*m.word(e + 16))
	atomic.StoreUint64(m.word(64), head+1)
	return r, n, seed, true
}

func (m mailbox) finish()    { atomic.StoreUint64(m.word(128), 1) }
func (m mailbox) done() bool { return atomic.LoadUint64(m.word(128)) != 0 }

func openBox(p *Pool, env string) (mailbox, error) {
	v, err := strconv.ParseUint(os.Getenv(env), 10, 64)
	if err != nil {
		return mailbox{}, err
	}
	b, err := p.Bytes(Ref(v))
	return mailbox{b}, err
}

func init() {
	// The hand-off worker allocates n blocks with its own patterns; every
	// other one goes to the peer through the out mailbox, the rest it
	// checks and frees itself; meanwhile it checks and frees what the peer
	// sends. It prints how many blocks it sent and how many it received.
	children["handoff"] = func() error {
		p, err := childPool()
		if err != nil {
			return err
		}
		in, err := openBox(p, inEnv)
		if err != nil {
			return err
		}
		out, err := openBox(p, outEnv)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(os.Getenv(blocksEnv))
		if err != nil {
			return err
		}
		pid := uint32(os.Getpid())
		rng := rand.New(rand.NewPCG(uint64(pid), 2))
		sent, received := 0, 0
		receive := func() error {
			for {
				r, n, seed, ok := in.get()
				if !ok {
					return nil
				}
				b, err := p.Bytes(r)
				if err != nil {
					return fmt.Errorf("pid %d: the peer's block %v: %w", pid, r, err)
				}
				if i := alloctest.Intact(b[:n], seed); i >= 0 {
					return fmt.Errorf("pid %d: the peer's block %v (%d bytes, seed %#x) corrupt at byte %d", pid, r, n, seed, i)
				}
				if err := p.Free(r); err != nil {
					return err
				}
				received++
			}
		}
		for i := range n {
			size := 16 + rng.IntN(2000)
			r, b, err := p.Alloc(size)
			if err != nil {
				return err
			}
			seed := pid<<12 ^ uint32(i)
			alloctest.Fill(b, seed)
			if i%2 == 0 {
				for !out.put(r, size, seed) {
					if err := receive(); err != nil {
						return err
					}
					runtime.Gosched()
				}
				sent++
			} else {
				if i := alloctest.Intact(b, seed); i >= 0 {
					return fmt.Errorf("pid %d: own block corrupt at %d", pid, i)
				}
				if err := p.Free(r); err != nil {
					return err
				}
			}
			if err := receive(); err != nil {
				return err
			}
		}
		out.finish()
		for !in.done() {
			if err := receive(); err != nil {
				return err
			}
			runtime.Gosched()
		}
		if err := receive(); err != nil {
			return err
		}
		fmt.Println(sent, received)
		return p.Close()
	}
}

// TestHandOff: two processes hand blocks to each other through the pool;
// each checks the contents the other wrote (its pattern, seeded with the
// sender's pid) and frees the block the other allocated.
func TestHandOff(t *testing.T) {
	n := 50_000
	if testing.Short() {
		n = 10_000
	}
	p := newTestPool(t, 64<<20)
	box1, _, err := p.Alloc(boxBytes)
	require.NoError(t, err)
	box2, _, err := p.Alloc(boxBytes)
	require.NoError(t, err)
	for _, r := range []Ref{box1, box2} {
		b, err := p.Bytes(r)
		require.NoError(t, err)
		clear(b[:192])
	}
	env := func(in, out Ref) []string {
		return []string{fmt.Sprintf("%s=%d", inEnv, in), fmt.Sprintf("%s=%d", outEnv, out), fmt.Sprintf("%s=%d", blocksEnv, n)}
	}
	a := child(p, "handoff", env(box1, box2)...)
	b := child(p, "handoff", env(box2, box1)...)
	var outA, outB bytes.Buffer
	a.Stdout, b.Stdout = &outA, &outB
	require.NoError(t, a.Start())
	require.NoError(t, b.Start())
	require.NoError(t, a.Wait(), "process A")
	require.NoError(t, b.Wait(), "process B")

	var sentA, recvA, sentB, recvB int
	_, err = fmt.Sscan(outA.String(), &sentA, &recvA)
	require.NoError(t, err)
	_, err = fmt.Sscan(outB.String(), &sentB, &recvB)
	require.NoError(t, err)
	assert.Equal(t, n/2, sentA)
	assert.Equal(t, sentA, recvB, "B checked and freed every block A sent")
	assert.Equal(t, sentB, recvA, "A checked and freed every block B sent")
	t.Logf("each process sent %d blocks to the other, which checked and freed them", sentA)

	rep := mustCheck(t, p)
	assert.Equal(t, uint64(2), rep.LiveBlocks, "only the mailboxes")
	require.NoError(t, p.Free(box1))
	require.NoError(t, p.Free(box2))
	assert.Zero(t, mustCheck(t, p).LiveBlocks)
}
