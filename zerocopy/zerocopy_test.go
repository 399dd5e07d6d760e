package zerocopy_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/zerocopy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// refuse makes every call of op fail with EINVAL, as a kernel or
// filesystem that does not take it, until the test ends.
func refuse(t *testing.T, op zerocopy.Op) {
	t.Cleanup(zerocopy.SetFailHook(func(o zerocopy.Op) error {
		if o == op {
			return unix.EINVAL
		}
		return nil
	}))
}

// SendFile delivers exactly the range asked for, at every size and
// offset, to a TCP socket (with a small send buffer, so that sendfile goes
// partial and waits on EAGAIN) and to a pipe, and copies nothing through
// user space.
func TestSendFile(t *testing.T) {
	data := random(6<<20, 1)
	f := tempFile(t, data)
	for _, n := range sizes {
		for _, off := range []int{0, 1, 4096 + 3} {
			t.Run(fmt.Sprintf("tcp/%d@%d", n, off), func(t *testing.T) {
				send, recv := tcpPair(t, 64<<10)
				wait := receiver(recv, n)
				before := zerocopy.ReadCounts()
				sent, err := zerocopy.SendFile(send, f, int64(off), int64(n))
				require.NoError(t, err)
				assert.Equal(t, int64(n), sent)
				got, err := wait()
				require.NoError(t, err)
				requireSame(t, data[off:off+n], got)
				after := zerocopy.ReadCounts()
				assert.Equal(t, before.CopiedBytes, after.CopiedBytes, "no byte through user space")
			})
		}
	}
	t.Run("pipe", func(t *testing.T) {
		r, w, err := os.Pipe()
		require.NoError(t, err)
		defer r.Close()
		defer w.Close()
		n := 1<<20 + 5
		wait := receiver(r, n)
		sent, err := zerocopy.SendFile(w, f, 7, int64(n))
		require.NoError(t, err)
		assert.Equal(t, int64(n), sent)
		got, err := wait()
		require.NoError(t, err)
		requireSame(t, data[7:7+n], got)
	})
}

// A receiver that does not read for a while, with a small receive
// buffer: the window closes, sendfile and splice go partial and meet
// EAGAIN, the goroutine waits on the netpoller, and the bytes still
// arrive whole.
func TestPartialSends(t *testing.T) {
	const n = 4<<20 + 1
	data := random(n, 15)
	f := tempFile(t, data)
	p, err := zerocopy.NewPipe()
	require.NoError(t, err)
	defer p.Close()
	for _, tc := range []struct {
		name string
		op   zerocopy.Op
		send func(conn *net.TCPConn) error
	}{
		{"sendfile", zerocopy.OpSendfile, func(c *net.TCPConn) error { _, err := zerocopy.SendFile(c, f, 0, n); return err }},
		{"vmsplice", zerocopy.OpSplice, func(c *net.TCPConn) error { _, err := p.Send(c, data); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			send, recv := tcpPair(t, 64<<10)
			require.NoError(t, recv.SetReadBuffer(64<<10))
			start := make(chan struct{})
			wait := receiver(gate{recv, start}, n)
			time.AfterFunc(50*time.Millisecond, func() { close(start) })
			before := zerocopy.ReadCounts()
			require.NoError(t, tc.send(send))
			got, err := wait()
			require.NoError(t, err)
			requireSame(t, data, got)
			calls := zerocopy.ReadCounts().Call(tc.op) - before.Call(tc.op)
			t.Logf("%d %s calls for %d bytes", calls, tc.op, n)
			if runtime.GOOS == "linux" {
				// at most 64 KiB + 128 KiB fit before the receiver reads:
				// more calls than the bytes need at a pipe's worth a call
				assert.Greater(t, calls, uint64(n/(1<<20)+1))
			}
		})
	}
}

// gate is a reader that reads only once start is closed.
type gate struct {
	r     io.Reader
	start <-chan struct{}
}

func (g gate) Read(p []byte) (int, error) {
	<-g.start
	return g.r.Read(p)
}

// Where sendfile is refused, SendFile copies through a 64 KiB buffer and
// the bytes are the same.
func TestSendFileFallback(t *testing.T) {
	data := random(3<<20+11, 2)
	f := tempFile(t, data)
	refuse(t, zerocopy.OpSendfile)
	send, recv := tcpPair(t, 64<<10)
	n := len(data) - 10
	wait := receiver(recv, n)
	before := zerocopy.ReadCounts()
	sent, err := zerocopy.SendFile(send, f, 10, int64(n))
	require.NoError(t, err)
	assert.Equal(t, int64(n), sent)
	got, err := wait()
	require.NoError(t, err)
	requireSame(t, data[10:], got)
	assert.Equal(t, uint64(n), zerocopy.ReadCounts().CopiedBytes-before.CopiedBytes)
}

// Bad input gets an error that says what was wrong, before any byte is
// sent.
func TestSendFileBadInput(t *testing.T) {
	f := tempFile(t, random(10000, 3))
	send, _ := tcpPair(t, 0)
	closedFile := tempFile(t, []byte("x"))
	require.NoError(t, closedFile.Close())
	closedConn, _ := tcpPair(t, 0)
	require.NoError(t, closedConn.Close())

	for _, tc := range []struct {
		name   string
		dst    syscall.Conn
		src    *os.File
		off, n int64
		want   error
	}{
		{"negative offset", send, f, -1, 10, zerocopy.ErrInvalid},
		{"negative length", send, f, 0, -10, zerocopy.ErrInvalid},
		{"overflow", send, f, 1 << 62, 1 << 62, zerocopy.ErrInvalid},
		{"nil file", send, nil, 0, 1, zerocopy.ErrInvalid},
		{"nil conn", nil, f, 0, 1, zerocopy.ErrInvalid},
		{"offset past EOF", send, f, 10001, 0, zerocopy.ErrPastEOF},
		{"range past EOF", send, f, 9000, 1001, zerocopy.ErrPastEOF},
		{"closed file", send, closedFile, 0, 1, os.ErrClosed},
		{"closed conn", closedConn, f, 0, 1, net.ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := zerocopy.SendFile(tc.dst, tc.src, tc.off, tc.n)
			require.ErrorIs(t, err, tc.want)
			assert.Zero(t, n)
			assert.Contains(t, err.Error(), "zerocopy: sendfile")
		})
	}
	n, err := zerocopy.SendFile(send, f, 10000, 0) // an empty range at the end is fine
	require.NoError(t, err)
	assert.Zero(t, n)
}

// Pipe.Send delivers a block's bytes — off-heap blocks of every size,
// resliced so that they start mid-page — to TCP (a small send buffer:
// partial splices, EAGAIN) and to a pipe, with vmsplice and splice only.
func TestPipeSend(t *testing.T) {
	a, err := alloc.New(alloc.Config{})
	require.NoError(t, err)
	defer a.Close()
	p, err := zerocopy.NewPipe()
	require.NoError(t, err)
	defer p.Close()
	for _, n := range sizes {
		for _, skip := range []int{0, 3} {
			t.Run(fmt.Sprintf("tcp/%d+%d", n, skip), func(t *testing.T) {
				block, err := a.Malloc(n + skip)
				require.NoError(t, err)
				defer a.Free(block)
				want := random(n, uint64(n+skip))
				copy(block[skip:], want)
				send, recv := tcpPair(t, 64<<10)
				wait := receiver(recv, n)
				before := zerocopy.ReadCounts()
				sent, err := p.Send(send, block[skip:])
				require.NoError(t, err)
				assert.Equal(t, n, sent)
				got, err := wait() // the block stays unchanged until read: the rule
				require.NoError(t, err)
				requireSame(t, want, got)
				after := zerocopy.ReadCounts()
				if p.ZeroCopy() {
					assert.Equal(t, before.CopiedBytes, after.CopiedBytes, "no byte through user space")
				}
				if p.ZeroCopy() && n > 0 {
					assert.Positive(t, after.Call(zerocopy.OpVmsplice)-before.Call(zerocopy.OpVmsplice))
					assert.Positive(t, after.Call(zerocopy.OpSplice)-before.Call(zerocopy.OpSplice))
				}
			})
		}
	}
	t.Run("pipe", func(t *testing.T) {
		r, w, err := os.Pipe()
		require.NoError(t, err)
		defer r.Close()
		defer w.Close()
		want := random(3<<20+1, 9)
		wait := receiver(r, len(want))
		sent, err := p.Send(w, want)
		require.NoError(t, err)
		assert.Equal(t, len(want), sent)
		got, err := wait()
		require.NoError(t, err)
		requireSame(t, want, got)
	})
}

// Where vmsplice is refused, Pipe.Send copies, with the same bytes.
func TestPipeSendFallback(t *testing.T) {
	p, err := zerocopy.NewPipe()
	require.NoError(t, err)
	defer p.Close()
	refuse(t, zerocopy.OpVmsplice)
	want := random(2<<20+3, 4)
	send, recv := tcpPair(t, 64<<10)
	wait := receiver(recv, len(want))
	before := zerocopy.ReadCounts()
	sent, err := p.Send(send, want)
	require.NoError(t, err)
	assert.Equal(t, len(want), sent)
	got, err := wait()
	require.NoError(t, err)
	requireSame(t, want, got)
	assert.Equal(t, uint64(len(want)), zerocopy.ReadCounts().CopiedBytes-before.CopiedBytes)
}

// A send that breaks midway (the peer closes) returns the bytes
// delivered and an error; the pipe is usable afterwards, holding nothing
// of the old block.
func TestPipeSendBroken(t *testing.T) {
	p, err := zerocopy.NewPipe()
	require.NoError(t, err)
	defer p.Close()
	send, recv := tcpPair(t, 64<<10)
	require.NoError(t, recv.SetReadBuffer(64<<10))
	require.NoError(t, recv.Close())
	n, err := p.Send(send, random(8<<20, 5))
	require.Error(t, err)
	assert.Less(t, n, 8<<20)

	send2, recv2 := tcpPair(t, 0)
	want := random(100000, 6)
	wait := receiver(recv2, len(want))
	_, err = p.Send(send2, want)
	require.NoError(t, err)
	got, err := wait()
	require.NoError(t, err)
	requireSame(t, want, got)
}

func TestPipeBadInput(t *testing.T) {
	p, err := zerocopy.NewPipe()
	require.NoError(t, err)
	send, _ := tcpPair(t, 0)
	_, err = p.Send(nil, []byte("x"))
	require.ErrorIs(t, err, zerocopy.ErrInvalid)
	f := tempFile(t, nil)
	_, err = p.RecvFile(f, -1, send, 1)
	require.ErrorIs(t, err, zerocopy.ErrInvalid)
	_, err = p.RecvFile(nil, 0, send, 1)
	require.ErrorIs(t, err, zerocopy.ErrInvalid)
	closedConn, _ := tcpPair(t, 0)
	require.NoError(t, closedConn.Close())
	_, err = p.Send(closedConn, []byte("x"))
	require.ErrorIs(t, err, net.ErrClosed)

	require.NoError(t, p.Close())
	_, err = p.Send(send, []byte("x"))
	require.ErrorIs(t, err, zerocopy.ErrClosed)
	_, err = p.RecvFile(f, 0, send, 1)
	require.ErrorIs(t, err, zerocopy.ErrClosed)
	require.ErrorIs(t, p.Close(), zerocopy.ErrClosed)
}

// RecvFile writes exactly the bytes received at the offset asked for,
// spliced or (refused) copied; a sender that stops early is
// io.ErrUnexpectedEOF with the bytes so far written.
func TestRecvFile(t *testing.T) {
	for _, refused := range []bool{false, true} {
		t.Run(fmt.Sprintf("refused=%v", refused), func(t *testing.T) {
			if refused {
				refuse(t, zerocopy.OpSplice)
			}
			p, err := zerocopy.NewPipe()
			require.NoError(t, err)
			defer p.Close()
			want := random(3<<20+77, 7)
			name := filepath.Join(t.TempDir(), "out")
			f, err := os.Create(name)
			require.NoError(t, err)
			defer f.Close()
			send, recv := tcpPair(t, 64<<10)
			go func() { _, _ = send.Write(want); _ = send.CloseWrite() }()
			before := zerocopy.ReadCounts()
			got, err := p.RecvFile(f, 100, recv, int64(len(want)))
			require.NoError(t, err)
			assert.Equal(t, int64(len(want)), got)
			onDisk, err := os.ReadFile(name)
			require.NoError(t, err)
			requireSame(t, append(make([]byte, 100), want...), onDisk)
			copied := zerocopy.ReadCounts().CopiedBytes - before.CopiedBytes
			if refused || !p.ZeroCopy() {
				assert.Equal(t, uint64(len(want)), copied)
			} else {
				assert.Zero(t, copied)
			}

			_, err = p.RecvFile(f, 0, recv, 10) // the sender is done
			require.ErrorIs(t, err, io.ErrUnexpectedEOF)
		})
	}
}

// Sender delivers every block, of every size, and hands each back exactly
// once; afterwards nothing is pending.
func TestSender(t *testing.T) {
	a, err := alloc.New(alloc.Config{})
	require.NoError(t, err)
	defer a.Close()
	send, recv := tcpPair(t, 256<<10)
	s, err := zerocopy.NewSender(send)
	require.NoError(t, err)
	if runtime.GOOS == "linux" {
		assert.True(t, s.ZeroCopy(), "loopback TCP takes SO_ZEROCOPY")
	}
	var want []byte
	var blocks [][]byte
	for i, n := range sizes {
		b, err := a.Malloc(n)
		require.NoError(t, err)
		copy(b, random(n, uint64(i)))
		want = append(want, b...)
		blocks = append(blocks, b)
	}
	wait := receiver(recv, len(want))
	var mu sync.Mutex
	released := map[*byte]int{}
	before := zerocopy.ReadCounts()
	for _, b := range blocks {
		require.NoError(t, s.Send(b, func(b []byte) {
			mu.Lock()
			released[unsafeData(b)]++
			mu.Unlock()
			require.NoError(t, a.Free(b))
		}))
	}
	got, err := wait()
	require.NoError(t, err)
	requireSame(t, want, got)
	require.NoError(t, s.Flush())
	assert.Zero(t, s.Pending())
	assert.Len(t, released, len(blocks))
	for _, c := range released {
		assert.Equal(t, 1, c)
	}
	after := zerocopy.ReadCounts()
	if s.ZeroCopy() {
		assert.Positive(t, after.Call(zerocopy.OpSendmsg)-before.Call(zerocopy.OpSendmsg))
		assert.Positive(t, after.Completions-before.Completions)
		assert.Equal(t, before.CopiedBytes, after.CopiedBytes, "only the empty block is written, and it has no bytes")
	}
	require.NoError(t, s.Close())
	require.ErrorIs(t, s.Send([]byte("x"), func([]byte) {}), zerocopy.ErrClosed)
	require.ErrorIs(t, s.Close(), zerocopy.ErrClosed)
}

// On what is not a TCP socket (a pipe), Sender copies and releases each
// block when Send returns.
func TestSenderCopyMode(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	s, err := zerocopy.NewSender(w)
	require.NoError(t, err)
	assert.False(t, s.ZeroCopy())
	want := random(1<<20+9, 8)
	wait := receiver(r, len(want))
	released := false
	require.NoError(t, s.Send(want, func([]byte) { released = true }))
	assert.True(t, released, "a copied block is released by Send")
	got, err := wait()
	require.NoError(t, err)
	requireSame(t, want, got)
	assert.Zero(t, s.Pending())
}

func TestSenderBadInput(t *testing.T) {
	_, err := zerocopy.NewSender(nil)
	require.ErrorIs(t, err, zerocopy.ErrInvalid)
	send, _ := tcpPair(t, 0)
	s, err := zerocopy.NewSender(send)
	require.NoError(t, err)
	require.ErrorIs(t, s.Send([]byte("x"), nil), zerocopy.ErrInvalid)
	require.NoError(t, send.Close())
	require.ErrorIs(t, s.Send([]byte("x"), func([]byte) {}), net.ErrClosed)
}

// Direct reads a file on disk into an aligned block, bypassing the page
// cache where the filesystem takes O_DIRECT; a misaligned buffer is
// ErrMisaligned there; the end of the file is a short read and io.EOF.
func TestDirect(t *testing.T) {
	a, err := alloc.New(alloc.Config{})
	require.NoError(t, err)
	defer a.Close()
	data := random(5*4096+123, 10)
	f := tempFile(t, data)
	d, err := zerocopy.OpenDirect(f.Name())
	require.NoError(t, err)
	defer d.Close()
	t.Logf("O_DIRECT in effect on the test folder's filesystem: %v", d.Bypass())

	b, err := a.AlignedAlloc(zerocopy.DirectAlign, 4*4096)
	require.NoError(t, err)
	defer a.Free(b)
	n, err := d.ReadAt(b, 4096)
	require.NoError(t, err)
	assert.Equal(t, len(b), n)
	requireSame(t, data[4096:5*4096], b)

	n, err = d.ReadAt(b[:2*4096], 4*4096) // 4096+123 bytes left
	require.ErrorIs(t, err, io.EOF)
	assert.Equal(t, 4096+123, n)
	requireSame(t, data[4*4096:], b[:n])

	_, err = d.ReadAt(b, -4096)
	require.ErrorIs(t, err, zerocopy.ErrInvalid)
	if d.Bypass() {
		assert.Equal(t, zerocopy.DirectAlign, d.Align())
		for _, tc := range []struct {
			b   []byte
			off int64
		}{{b[1 : 1+4096], 0}, {b[:4095], 0}, {b[:4096], 100}} {
			_, err = d.ReadAt(tc.b, tc.off)
			require.ErrorIs(t, err, zerocopy.ErrMisaligned)
		}
	}
}

// A filesystem that refuses O_DIRECT at open, or at the first read, gets
// cached reads, with no alignment asked.
func TestDirectFallback(t *testing.T) {
	data := random(3*4096+5, 11)
	f := tempFile(t, data)
	for _, op := range []zerocopy.Op{zerocopy.OpOpen, zerocopy.OpRead} {
		t.Run(op.String(), func(t *testing.T) {
			first := true
			t.Cleanup(zerocopy.SetFailHook(func(o zerocopy.Op) error {
				if o == op && first {
					first = false
					return unix.EINVAL
				}
				return nil
			}))
			d, err := zerocopy.OpenDirect(f.Name())
			require.NoError(t, err)
			defer d.Close()
			if op == zerocopy.OpOpen {
				assert.False(t, d.Bypass())
			}
			a, err := alloc.New(alloc.Config{})
			require.NoError(t, err)
			defer a.Close()
			aligned, err := a.AlignedAlloc(zerocopy.DirectAlign, 2*4096)
			require.NoError(t, err)
			defer a.Free(aligned)
			n, err := d.ReadAt(aligned, 0) // refused at the first read: read again, cached
			require.NoError(t, err)
			assert.Equal(t, len(aligned), n)
			requireSame(t, data[:len(aligned)], aligned)
			assert.False(t, d.Bypass())
			assert.Equal(t, 1, d.Align())

			b := make([]byte, len(data)-1) // a Go slice, any alignment
			n, err = d.ReadAt(b, 1)
			require.NoError(t, err)
			assert.Equal(t, len(b), n)
			requireSame(t, data[1:], b)
		})
	}
}

func TestOpenDirectMissing(t *testing.T) {
	_, err := zerocopy.OpenDirect(filepath.Join(t.TempDir(), "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
	assert.True(t, errors.Is(err, unix.ENOENT))
}

// A sender that keeps four blocks in flight and refills each as Wait
// hands it back sends the right bytes: the pattern of a service streaming
// a file through a few off-heap buffers.
func TestSenderWait(t *testing.T) {
	a, err := alloc.New(alloc.Config{})
	require.NoError(t, err)
	defer a.Close()
	send, recv := tcpPair(t, 0)
	s, err := zerocopy.NewSender(send)
	require.NoError(t, err)
	const chunk, chunks, inFlight = 256<<10 + 1, 40, 4
	want := random(chunk*chunks, 14)
	wait := receiver(recv, len(want))
	var free [][]byte
	for range inFlight {
		b, err := a.Malloc(chunk)
		require.NoError(t, err)
		free = append(free, b)
	}
	for i := range chunks {
		for len(free) == 0 {
			require.NoError(t, s.Wait())
		}
		b := free[len(free)-1]
		free = free[:len(free)-1]
		copy(b, want[i*chunk:])
		require.NoError(t, s.Send(b, func(b []byte) { free = append(free, b) }))
	}
	require.NoError(t, s.Flush())
	assert.Len(t, free, inFlight)
	got, err := wait()
	require.NoError(t, err)
	requireSame(t, want, got)
	for _, b := range free {
		require.NoError(t, a.Free(b))
	}
}

// Readers in several goroutines while one of them meets the refusal and
// reopens the file: every read succeeds with the right bytes.
func TestDirectFallbackConcurrent(t *testing.T) {
	data := random(16*4096, 16)
	f := tempFile(t, data)
	var once sync.Once
	t.Cleanup(zerocopy.SetFailHook(func(o zerocopy.Op) error {
		var err error
		if o == zerocopy.OpRead {
			once.Do(func() { err = unix.EINVAL })
		}
		return err
	}))
	d, err := zerocopy.OpenDirect(f.Name())
	require.NoError(t, err)
	defer d.Close()
	if !d.Bypass() {
		t.Skip("the test folder's filesystem refuses O_DIRECT: nothing to fall back from")
	}
	a, err := alloc.New(alloc.Config{})
	require.NoError(t, err)
	defer a.Close()
	var wg sync.WaitGroup
	for g := range 4 {
		b, err := a.AlignedAlloc(zerocopy.DirectAlign, 4096)
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				off := int64((g*50+i)%16) * 4096
				n, err := d.ReadAt(b, off)
				if !assert.NoError(t, err) || !assert.Equal(t, 4096, n) {
					return
				}
				assert.Equal(t, data[off:off+4096], b)
			}
		}()
	}
	wg.Wait()
	assert.False(t, d.Bypass())
}

// A second Sender on a connection whose zero-copy sends another Sender
// numbered copies instead (it could not match the kernel's completions)
// and so never waits for completions that are not its own.
func TestSecondSenderCopies(t *testing.T) {
	send, recv := tcpPair(t, 0)
	first, err := zerocopy.NewSender(send)
	require.NoError(t, err)
	want := random(3<<20, 18)
	wait := receiver(recv, 2*len(want))
	require.NoError(t, first.Send(want, func([]byte) {}))
	require.NoError(t, first.Close())

	second, err := zerocopy.NewSender(send)
	require.NoError(t, err)
	assert.False(t, second.ZeroCopy())
	released := false
	require.NoError(t, second.Send(want, func([]byte) { released = true }))
	assert.True(t, released)
	require.NoError(t, second.Flush())
	got, err := wait()
	require.NoError(t, err)
	requireSame(t, append(append([]byte(nil), want...), want...), got)
}

// A failed system call returns -1 as its count: readOnce reports 0 bytes
// with the error (RecvFile falls back to a copy only when a refused splice
// moved nothing), retries an interrupted call, and ends with the given
// error when nothing was read.
func TestReadOnceCounts(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	rc, err := r.SyscallConn()
	require.NoError(t, err)

	n, err := zerocopy.ReadOnce(rc, func(int) (int, error) { return -1, unix.EINVAL }, io.EOF)
	assert.Equal(t, 0, n)
	assert.ErrorIs(t, err, unix.EINVAL)

	calls := 0
	n, err = zerocopy.ReadOnce(rc, func(int) (int, error) {
		calls++
		if calls == 1 {
			return -1, unix.EINTR
		}
		return 7, nil
	}, io.EOF)
	assert.Equal(t, 7, n)
	assert.NoError(t, err)
	assert.Equal(t, 2, calls)

	n, err = zerocopy.ReadOnce(rc, func(int) (int, error) { return 0, nil }, io.ErrUnexpectedEOF)
	assert.Equal(t, 0, n)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
}
