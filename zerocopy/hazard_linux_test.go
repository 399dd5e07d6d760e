package zerocopy_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/zerocopy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// way is one way of sending blocks that are reused: send takes a block
// and the function that reuses it, to be called when the way says the
// block may be reused; flush waits for the way to be done.
type way func(conn *net.TCPConn) (send func(b []byte, reuse func([]byte)) error, flush func() error)

// reuse is the scenario that catches a block reused too soon: blocks of
// size bytes are sent over loopback TCP to a receiver that starts reading
// late (halfway through the sends) and slowly, and each block is
// overwritten with 0xEE, then freed, the moment the way says it may be.
// It returns how many received bytes differ from what the blocks held
// when they were sent.
func reuse(t *testing.T, blocks, size int, w way) int {
	t.Helper()
	a, err := alloc.New(alloc.Config{})
	require.NoError(t, err)
	defer a.Close()
	conn, recv := tcpPair(t, 0)
	require.NoError(t, recv.SetReadBuffer(64<<10))
	start := make(chan struct{})
	wait := receiver(slowReader{recv, start}, blocks*size)
	send, flush := w(conn)

	var want []byte
	for i := range blocks {
		b, err := a.Malloc(size)
		require.NoError(t, err)
		copy(b, random(size, uint64(100+i)))
		want = append(want, b...)
		if i == blocks/2 {
			close(start)
		}
		require.NoError(t, send(b, func(b []byte) {
			for j := range b {
				b[j] = 0xEE
			}
			assert.NoError(t, a.Free(b))
		}))
	}
	require.NoError(t, flush())
	got, err := wait()
	require.NoError(t, err)
	bad := 0
	for i := range want {
		if want[i] != got[i] {
			bad++
		}
	}
	return bad
}

// slowReader reads only once start is closed, then 32 KiB a millisecond.
type slowReader struct {
	r     io.Reader
	start <-chan struct{}
}

func (s slowReader) Read(p []byte) (int, error) {
	<-s.start
	time.Sleep(time.Millisecond)
	return s.r.Read(p[:min(len(p), 32<<10)])
}

// The test that would catch a reuse too soon, run against the ways of
// sending a block that is reused. Sender (MSG_ZEROCOPY) hands a block
// back only on the kernel's completion: not one byte changes. Releasing
// when the send call returns — what vmsplice (Pipe.Send) would have to
// do, having no completion to wait for — changes what the receiver
// reads: the test catches it.
func TestReuseTooSoon(t *testing.T) {
	const blocks, size = 16, 256 << 10
	t.Run("Sender", func(t *testing.T) {
		before := zerocopy.ReadCounts()
		bad := reuse(t, blocks, size, func(conn *net.TCPConn) (func([]byte, func([]byte)) error, func() error) {
			s, err := zerocopy.NewSender(conn)
			require.NoError(t, err)
			require.True(t, s.ZeroCopy())
			return s.Send, s.Flush
		})
		assert.Zero(t, bad, "bytes changed after the Sender released their block")
		after := zerocopy.ReadCounts()
		assert.Positive(t, after.Completions-before.Completions)
		// loopback: the kernel copies each block when it delivers it
		assert.Positive(t, after.CopiedCompletions-before.CopiedCompletions)
	})
	t.Run("vmsplice, reused when Send returns", func(t *testing.T) {
		bad := reuse(t, blocks, size, func(conn *net.TCPConn) (func([]byte, func([]byte)) error, func() error) {
			p, err := zerocopy.NewPipe()
			require.NoError(t, err)
			t.Cleanup(func() { _ = p.Close() })
			return func(b []byte, reuse func([]byte)) error {
				_, err := p.Send(conn, b)
				reuse(b)
				return err
			}, func() error { return nil }
		})
		t.Logf("%d of %d bytes received changed", bad, blocks*size)
		assert.Positive(t, bad, "reuse when a vmsplice send returns was expected to change the bytes sent")
	})
}

// The hazard of vmsplice, shown. A block sent with Pipe.Send and
// overwritten when Send returns, or even once the socket's send queue is
// empty (every byte acknowledged: SIOCOUTQ 0), reaches the loopback
// receiver changed, because the receiver's queue still references the
// block's pages. This is why Pipe.Send's rule is "unchanged until the
// receiver has read it", and why a block that is reused goes through
// Sender. (If a kernel ever copies here, this test fails and the
// documentation is to be revisited.)
func TestPipeSendHazard(t *testing.T) {
	for _, waitAcked := range []bool{false, true} {
		t.Run(fmt.Sprintf("waitAcked=%v", waitAcked), func(t *testing.T) {
			p, err := zerocopy.NewPipe()
			require.NoError(t, err)
			defer p.Close()
			send, recv := tcpPair(t, 0)
			block := random(32<<10, 13)
			want := append([]byte(nil), block...)
			_, err = p.Send(send, block)
			require.NoError(t, err)
			if waitAcked {
				rc, err := send.SyscallConn()
				require.NoError(t, err)
				require.Eventually(t, func() bool {
					var q int
					var qerr error
					require.NoError(t, rc.Control(func(fd uintptr) { q, qerr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }))
					require.NoError(t, qerr)
					return q == 0
				}, 5*time.Second, time.Millisecond)
			}
			for i := range block {
				block[i] = 0xEE
			}
			got, err := receiver(recv, len(block))()
			require.NoError(t, err)
			changed := 0
			for i := range got {
				if got[i] != want[i] {
					changed++
				}
			}
			t.Logf("%d of %d bytes received changed", changed, len(got))
			assert.Positive(t, changed, "vmsplice'd pages were expected to be still referenced")
		})
	}
}

// Random block sizes, random numbers of blocks in flight, a receiver
// with random pauses: each block is refilled with new bytes the moment
// the Sender hands it back, and the receiver must see every byte as it
// was when its block was sent.
func TestSenderReuseRandom(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 17))
			a, err := alloc.New(alloc.Config{})
			require.NoError(t, err)
			defer a.Close()
			conn, recv := tcpPair(t, 0)
			require.NoError(t, recv.SetReadBuffer(32<<10+r.IntN(256<<10)))
			s, err := zerocopy.NewSender(conn)
			require.NoError(t, err)

			inFlight := 1 + r.IntN(8)
			var free [][]byte
			for range inFlight {
				b, err := a.Malloc(1 + r.IntN(300<<10))
				require.NoError(t, err)
				free = append(free, b)
			}
			// the receiver starts first: want is complete before it
			// has read the last byte (it is filled as blocks are sent)
			sends := 20 + r.IntN(40)
			sizes := make([]int, sends)
			total := 0
			for i := range sizes {
				sizes[i] = 1 + r.IntN(300<<10)
				total += sizes[i]
			}
			pause := time.Duration(r.IntN(3)) * time.Millisecond
			wait := receiver(pausing{recv, pause}, total)
			var want []byte
			for i := range sends {
				for len(free) == 0 {
					require.NoError(t, s.Wait())
				}
				b := free[len(free)-1]
				free = free[:len(free)-1]
				n := min(sizes[i], len(b))
				if n < sizes[i] { // this block is too small: send the rest as a Go slice
					extra := random(sizes[i]-n, seed<<40|uint64(i))
					copy(b, random(n, seed<<20|uint64(i)))
					want = append(want, b[:n]...)
					require.NoError(t, s.Send(b[:n], func(sent []byte) {
						for j := range sent {
							sent[j] = 0xEE
						}
						free = append(free, b)
					}))
					want = append(want, extra...)
					require.NoError(t, s.Send(extra, func(sent []byte) {
						for j := range sent {
							sent[j] = 0xEE
						}
					}))
					continue
				}
				copy(b, random(n, seed<<20|uint64(i)))
				want = append(want, b[:n]...)
				require.NoError(t, s.Send(b[:n], func(sent []byte) {
					for j := range sent {
						sent[j] = 0xEE // reused at once
					}
					free = append(free, b)
				}))
			}
			require.NoError(t, s.Close())
			got, err := wait()
			require.NoError(t, err)
			requireSame(t, want, got)
			for _, b := range free {
				require.NoError(t, a.Free(b))
			}
		})
	}
}

// pausing reads 16 KiB at a time with a pause before each read.
type pausing struct {
	r     io.Reader
	pause time.Duration
}

func (p pausing) Read(b []byte) (int, error) {
	time.Sleep(p.pause)
	return p.r.Read(b[:min(len(b), 16<<10)])
}
