package zerocopy_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// random returns n bytes of seeded random contents.
func random(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 1})
	_, _ = r.Read(b)
	return b
}

// tempFile writes data to a new file in a test folder (on disk where the
// test folder is) and returns it open for reading.
func tempFile(t *testing.T, data []byte) *os.File { return tempFileB(t, data) }

// tempFileB is tempFile for tests and benchmarks.
func tempFileB(t testing.TB, data []byte) *os.File {
	t.Helper()
	name := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.WriteFile(name, data, 0o600))
	f, err := os.Open(name)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// tcpPair returns the two ends of a loopback TCP connection. sndbuf,
// when not 0, sets the sender's SO_SNDBUF (small: sends go partial and
// meet EAGAIN).
func tcpPair(t *testing.T, sndbuf int) (send, recv *net.TCPConn) { return tcpPairTB(t, sndbuf) }

// tcpPairB is tcpPair for benchmarks, with the kernel's buffer sizes.
func tcpPairB(b *testing.B) (send, recv *net.TCPConn) { return tcpPairTB(b, 0) }

func tcpPairTB(t testing.TB, sndbuf int) (send, recv *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	s := <-accepted
	require.NotNil(t, s)
	send, recv = c.(*net.TCPConn), s.(*net.TCPConn)
	if sndbuf > 0 {
		require.NoError(t, send.SetWriteBuffer(sndbuf))
	}
	t.Cleanup(func() { _ = send.Close(); _ = recv.Close() })
	return send, recv
}

// receiver reads n bytes from r in a goroutine; wait returns them.
func receiver(r io.Reader, n int) (wait func() ([]byte, error)) {
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		b := make([]byte, n)
		_, err := io.ReadFull(r, b)
		ch <- res{b, err}
	}()
	return func() ([]byte, error) { r := <-ch; return r.b, r.err }
}

// requireSame fails with the first differing offset rather than two
// dumps of megabytes.
func requireSame(t *testing.T, want, got []byte) {
	t.Helper()
	require.Equal(t, len(want), len(got), "length")
	if !bytes.Equal(want, got) {
		i := 0
		for want[i] == got[i] {
			i++
		}
		t.Fatalf("bytes differ first at offset %d of %d: want %#x, got %#x", i, len(want), want[i], got[i])
	}
}

// sizes are the transfer sizes every path is tried with: empty, tiny,
// around a page, around a pipe's worth, and several MiB, none (but 0) a
// multiple of a page.
var sizes = []int{0, 1, 4095, 4097, 65537, 1<<20 + 123, 5<<20 + 7}
