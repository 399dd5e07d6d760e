package shm

import (
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Hostile use: what a caller can do wrong, and what another process or a
// bad disk can do to a pool's file. Each must end in an error, never a
// crash, a hang, or a store into memory the pool no longer owns.

// openFds counts this process's open descriptors.
func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// poolMappings counts this process's mappings of pools' memfds (the Go
// runtime's own mappings come and go on their own).
func poolMappings(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	require.NoError(t, err)
	return strings.Count(string(b), "memfd:brkmap-shm")
}

// Every method of a closed Pool says ErrClosed, and touches nothing: the
// address range it mapped may belong to someone else by now (here, most
// likely, to the next pool made).
func TestUseAfterClose(t *testing.T) {
	a := newTestPool(t, 1<<20)
	ra, _, err := a.Alloc(100)
	require.NoError(t, err)
	require.NoError(t, a.Close())

	b := newTestPool(t, 1<<20)
	rb, _, err := b.Alloc(100)
	require.NoError(t, err)
	require.NoError(t, b.SetRoot(rb))

	assert.ErrorIs(t, a.SetRoot(0), ErrClosed)
	assert.ErrorIs(t, a.SetRoot(ra), ErrClosed)
	_, err = a.Root()
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, a.Free(ra), ErrClosed)
	_, err = a.Bytes(ra)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = a.Read(ra, 0, make([]byte, 8))
	assert.ErrorIs(t, err, ErrClosed)
	_, err = a.Write(ra, 0, []byte("x"))
	assert.ErrorIs(t, err, ErrClosed)
	_, err = a.Stats()
	assert.ErrorIs(t, err, ErrClosed)
	_, err = a.Check()
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, a.Sync(), ErrClosed)
	_, _, err = a.Alloc(10)
	assert.ErrorIs(t, err, ErrClosed)

	root, err := b.Root()
	require.NoError(t, err)
	assert.Equal(t, rb, root, "a closed pool's SetRoot reached the next pool's header")
	mustCheck(t, b)
}

// Close racing every method from several goroutines: each call either
// works or says ErrClosed (never ErrFault: the mapping must not go while
// a call is in it), the lock is never left held (a second attachment, as
// another process would, carries on), and nothing leaks: descriptors,
// mappings, goroutines.
func TestCloseRacesMethods(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc/self")
	}
	other := newTestPool(t, 1<<20)
	fds, maps, gs := openFds(t), poolMappings(t), runtime.NumGoroutine()
	require.Equal(t, 1, maps)
	for round := 0; round < 20; round++ {
		dup, err := os.OpenFile("/proc/self/fd/"+itoa(int(other.File().Fd())), os.O_RDWR, 0)
		require.NoError(t, err)
		p, err := Attach(dup)
		require.NoError(t, err)
		first := p.ref(p.h.FirstData * PageSize)
		var wg sync.WaitGroup
		errc := make(chan error, 64)
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(round), uint64(g)))
				for i := 0; ; i++ {
					var err error
					switch i % 8 {
					case 0, 1:
						var r Ref
						var n int
						if r, _, err = p.Alloc(1 + rng.IntN(6000)); err == nil {
							_, err = p.Write(r, 0, []byte("hello"))
							if err == nil {
								n, err = p.Read(r, 0, make([]byte, 5))
								_ = n
							}
							if ferr := p.Free(r); err == nil {
								err = ferr
							}
						}
					case 2:
						_, err = p.Stats()
					case 3:
						_, err = p.Check()
					case 4:
						err = p.SetRoot(0)
					case 5:
						_, err = p.Root()
					case 6:
						err = p.Sync()
					case 7:
						_, err = p.Bytes(first)
						if errors.Is(err, ErrInvalidRef) {
							err = nil
						}
					}
					if err != nil {
						if !errors.Is(err, ErrClosed) {
							errc <- err
						}
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		require.NoError(t, p.Close())
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Errorf("round %d: a call racing Close: %v", round, err)
		}
		done := make(chan error, 1)
		go func() { _, err := other.Check(); done <- err }()
		select {
		case err := <-done:
			require.NoError(t, err, "round %d", round)
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the pool's lock stayed held after Close", round)
		}
	}
	assert.Equal(t, fds, openFds(t), "descriptors")
	assert.Equal(t, maps, poolMappings(t), "mappings")
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > gs && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), gs, "goroutines")
}

// Passing descriptors with no connection, or over one the peer closed:
// errors, not a nil-pointer panic or a misleading ErrNotPool.
func TestSendRecvBadConn(t *testing.T) {
	p := newTestPool(t, 1<<20)
	for name, call := range map[string]func() error{
		"SendFile": func() error { return SendFile(nil, p.File(), nil) },
		"RecvFile": func() error { _, _, err := RecvFile(nil); return err },
		"Send":     func() error { return p.Send(nil) },
		"Receive":  func() error { _, err := Receive(nil); return err },
	} {
		func() {
			defer func() {
				if x := recover(); x != nil {
					t.Errorf("%s(nil) panicked: %v", name, x)
				}
			}()
			assert.ErrorIs(t, call(), os.ErrInvalid, name)
		}()
	}

	a, b := socketPair(t)
	defer b.Close()
	require.NoError(t, a.Close())
	before := openFds(t)
	_, _, err := RecvFile(b)
	assert.ErrorIs(t, err, io.EOF, "the peer closed: no message at all")
	assert.NotErrorIs(t, err, ErrNotPool)
	_, err = Receive(b)
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, before, openFds(t))
}

// Close while a call waits for the lock another attachment holds (as
// another process would): the waiting call gives up with ErrClosed and
// Close returns, rather than both waiting on the holder.
func TestCloseWhileWaitingForLock(t *testing.T) {
	other := newTestPool(t, 1<<20)
	dup, err := os.OpenFile("/proc/self/fd/"+itoa(int(other.File().Fd())), os.O_RDWR, 0)
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	p, err := Attach(dup)
	require.NoError(t, err)
	var held opState
	require.NoError(t, other.lock(&held))
	got := make(chan error, 1)
	go func() { _, _, err := p.Alloc(100); got <- err }()
	time.Sleep(20 * time.Millisecond) // the Alloc is waiting (sleeping between looks)
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		other.unlock(&held)
		t.Fatal("Close waited for the lock's holder")
	}
	assert.ErrorIs(t, <-got, ErrClosed)
	other.unlock(&held)
	mustCheck(t, other)
}
