package zerocopy_test

import (
	"io"
	"os"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/brkmap/alloc/zerocopy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Hostile use of Sender: release functions that panic or call back in.

// gatedSends sends 64 KiB blocks on s while nobody reads the other end,
// until at least want blocks are pending (the peer's window is full:
// their bytes sit unacknowledged in the send queue) or the socket is
// full; it returns the number of bytes sent. release is each block's.
func gatedSends(t *testing.T, s *zerocopy.Sender, send interface{ SetWriteDeadline(time.Time) error }, want int, release func([]byte)) int {
	t.Helper()
	total := 0
	require.NoError(t, send.SetWriteDeadline(time.Now().Add(2*time.Second)))
	for i := 0; i < 4096 && s.Pending() < want; i++ {
		b := random(64<<10, uint64(i))
		if err := s.Send(b, release); err != nil {
			t.Skipf("the socket filled before %d blocks were pending: %v", want, err)
		}
		total += len(b)
	}
	require.NoError(t, send.SetWriteDeadline(time.Time{}))
	if s.Pending() < want {
		t.Skipf("only %d blocks pending", s.Pending())
	}
	return total
}

// A release function that panics: the panic reaches the caller of Flush,
// and the blocks completed with it are not lost — each is still handed
// back exactly once, by the next call.
func TestSenderReleasePanics(t *testing.T) {
	send, recv := tcpPair(t, 0)
	s, err := zerocopy.NewSender(send)
	require.NoError(t, err)
	if !s.ZeroCopy() {
		t.Skip("no MSG_ZEROCOPY: every block is released by its own Send")
	}
	var mu sync.Mutex
	calls, armed, panicked := 0, false, false
	release := func([]byte) {
		mu.Lock()
		calls++
		boom := armed && !panicked
		panicked = panicked || boom
		mu.Unlock()
		if boom {
			panic("release")
		}
	}
	total := gatedSends(t, s, send, 4, release)
	blocks := total / (64 << 10)
	mu.Lock()
	armed = true
	mu.Unlock()
	got := make(chan error, 1)
	go func() { _, err := io.CopyN(io.Discard, recv, int64(total)); got <- err }()

	var r any
	for range 3 { // the first panics; the next hand back what it left
		func() {
			defer func() {
				if x := recover(); x != nil {
					r = x
				}
			}()
			assert.NoError(t, s.Flush())
		}()
	}
	require.NoError(t, <-got)
	assert.Equal(t, "release", r, "the release's panic reaches the caller")
	assert.Zero(t, s.Pending())
	mu.Lock()
	assert.Equal(t, blocks, calls, "every block handed back once, the ones completed with the panicking one included")
	mu.Unlock()
	require.NoError(t, s.Close())
}

// A release function run by Close that sends again (calls back in): the
// Sender is closing, so that Send is refused with ErrClosed — it must not
// leave a block pending that nobody will ever hand back once Close has
// returned.
func TestSenderSendDuringClose(t *testing.T) {
	send, recv := tcpPair(t, 0)
	s, err := zerocopy.NewSender(send)
	require.NoError(t, err)
	if !s.ZeroCopy() {
		t.Skip("no MSG_ZEROCOPY: every block is released by its own Send")
	}
	var mu sync.Mutex
	armed, resent := false, false
	var resendErr error
	extraReleased := false
	release := func([]byte) {
		mu.Lock()
		again := armed && !resent
		resent = resent || again
		mu.Unlock()
		if again {
			// More than the peer will take: it stops reading (below).
			require.NoError(t, send.SetWriteDeadline(time.Now().Add(time.Second)))
			resendErr = s.Send(random(16<<20, 99), func([]byte) { extraReleased = true })
		}
	}
	total := gatedSends(t, s, send, 2, release)
	mu.Lock()
	armed = true
	mu.Unlock()
	got := make(chan error, 1)
	go func() { _, err := io.CopyN(io.Discard, recv, int64(total)); got <- err }()
	closeErr := s.Close()
	require.NoError(t, <-got)
	require.True(t, resent)
	assert.NoError(t, closeErr)
	assert.ErrorIs(t, resendErr, zerocopy.ErrClosed, "a Send from a release run by Close")
	assert.Zero(t, s.Pending(), "Close returned with a block pending")
	assert.False(t, extraReleased && resendErr != nil, "a refused block is not the Sender's to release")
}

// Readers racing the fallback from O_DIRECT, many times over: a reader
// that took the O_DIRECT file just before another reader's fallback
// closed it must not fail ("use of closed file") — it reads through the
// new one.
func TestDirectFallbackRace(t *testing.T) {
	data := random(16*4096, 21)
	f := tempFile(t, data)
	rounds := 3000
	if testing.Short() {
		rounds = 300
	}
	for round := range rounds {
		var once sync.Once
		restore := zerocopy.SetFailHook(func(o zerocopy.Op) error {
			var err error
			if o == zerocopy.OpRead {
				once.Do(func() { err = unix.EINVAL })
			}
			return err
		})
		d, err := zerocopy.OpenDirect(f.Name())
		require.NoError(t, err)
		if !d.Bypass() {
			restore()
			d.Close()
			t.Skip("the test folder's filesystem refuses O_DIRECT: nothing to fall back from")
		}
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b := alignedBuf(4096)
				for i := range 8 {
					off := int64((g*8+i)%16) * 4096
					if _, err := d.ReadAt(b, off); err != nil {
						t.Errorf("round %d: %v", round, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		restore()
		require.NoError(t, d.Close())
		if t.Failed() {
			return
		}
	}
}

// alignedBuf returns n bytes at an address aligned for O_DIRECT, from
// the Go heap (over-allocated and sliced).
func alignedBuf(n int) []byte {
	b := make([]byte, n+zerocopy.DirectAlign)
	a := int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) % zerocopy.DirectAlign)
	if a != 0 {
		a = zerocopy.DirectAlign - a
	}
	return b[a : a+n : a+n]
}

// Descriptors: pipes made and closed, a pipe reset by a broken send,
// Direct files opened, fallen back and closed, sends to a closed peer —
// none leaks one.
func TestNoDescriptorLeak(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc/self/fd")
	}
	count := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		require.NoError(t, err)
		return len(ents)
	}
	data := random(8*4096, 22)
	f := tempFile(t, data)
	before := count()
	for i := range 10 {
		func() {
			send, recv := tcpPair(t, 64<<10)
			defer send.Close()
			p, err := zerocopy.NewPipe()
			require.NoError(t, err)
			defer func() { require.NoError(t, p.Close()) }()
			require.NoError(t, recv.Close())
			_, err = p.Send(send, random(4<<20, uint64(i)))
			require.Error(t, err, "the peer is gone")
			_, err = zerocopy.SendFile(send, f, 0, int64(len(data)))
			require.Error(t, err, "the peer is gone")

			var once sync.Once
			restore := zerocopy.SetFailHook(func(o zerocopy.Op) error {
				var err error
				if o == zerocopy.OpRead {
					once.Do(func() { err = unix.EINVAL })
				}
				return err
			})
			defer restore()
			d, err := zerocopy.OpenDirect(f.Name())
			require.NoError(t, err)
			_, err = d.ReadAt(alignedBuf(4096), 0)
			require.NoError(t, err)
			require.NoError(t, d.Close())
		}()
	}
	assert.Equal(t, before, count())
}

// The peer resets the connection in the middle of a Sender's sends: Send
// fails, and Flush returns — every block released, or (a completion the
// kernel never sends after a reset: about one run in five on loopback)
// an error with the rest still pending — instead of waiting for the
// write deadline, or forever without one.
func TestSenderPeerClosesMidSend(t *testing.T) {
	send, recv := tcpPair(t, 0)
	s, err := zerocopy.NewSender(send)
	require.NoError(t, err)
	go func() {
		_, _ = io.CopyN(io.Discard, recv, 1<<20)
		_ = recv.SetLinger(0)
		_ = recv.Close() // unread bytes: a reset
	}()
	var mu sync.Mutex
	released := 0
	require.NoError(t, send.SetWriteDeadline(time.Now().Add(10*time.Second)))
	var sendErr error
	sent := 0
	for i := 0; i < 64 && sendErr == nil; i++ {
		sendErr = s.Send(random(1<<20, uint64(i)), func([]byte) { mu.Lock(); released++; mu.Unlock() })
		sent++
	}
	require.Error(t, sendErr, "the peer is gone")
	assert.NotErrorIs(t, sendErr, os.ErrDeadlineExceeded, "a reset, not the deadline")
	require.NoError(t, send.SetWriteDeadline(time.Now().Add(5*time.Second)))
	ferr := s.Flush()
	assert.NotErrorIs(t, ferr, os.ErrDeadlineExceeded, "Flush waited for completions that never came")
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d blocks sent, %d released; flush: %v", sent, released, ferr)
	assert.Equal(t, sent, released+s.Pending(), "every block released or pending, none lost")
	if ferr == nil {
		assert.Equal(t, sent, released)
	}
}
