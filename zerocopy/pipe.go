package zerocopy

import (
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// Pipe is a kernel pipe kept as the middle of splice transfers: a block's
// pages go into it by reference (vmsplice) and on to a socket or pipe
// (splice), and a socket's buffers go into it and on to a file.
//
// The ownership rule of Send: the kernel takes references to the block's
// pages and keeps them after Send returns — until a TCP peer acknowledges
// the bytes, and, for a local reader (loopback, a pipe), until that reader
// has read them. The kernel gives no notice of that moment. So the block
// must not be changed, freed or reused until the receiver has read every
// byte (it confirms it at the protocol level, say), or the receiver may
// read the new bytes instead. Send is for blocks that do not change (a
// file-backed pool's pages of a file nobody writes, an immutable payload);
// to send a block that is freed or reused afterwards, use Sender, which
// hands it back only when the kernel is done.
//
// A Pipe is safe for concurrent use; its transfers are serialized. It
// holds two descriptors until Close. Off Linux there is no splice: a Pipe
// copies through a 64 KiB buffer and ZeroCopy reports false.
type Pipe struct {
	mu     sync.Mutex // serializes transfers; guards r, w
	r, w   int        // the pipe's ends; -1 once closed (Linux only)
	size   int        // bytes the pipe holds
	closed bool
}

// NewPipe makes a pipe of up to 1 MiB (the kernel may grant less:
// /proc/sys/fs/pipe-max-size for an unprivileged process).
func NewPipe() (*Pipe, error) {
	p := &Pipe{r: -1, w: -1, size: fallbackBuf}
	if err := p.open(); err != nil {
		return nil, fmt.Errorf("zerocopy: pipe: %w", err)
	}
	return p, nil
}

// ZeroCopy reports whether Send and RecvFile splice (Linux) rather than
// copy.
func (p *Pipe) ZeroCopy() bool { return hasSplice }

// Close releases the pipe (and any page references still in it).
func (p *Pipe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("zerocopy: pipe close: %w", ErrClosed)
	}
	p.closed = true
	return p.closeFds()
}

// Send sends b to dst — a socket, or the write end of a pipe (an
// *os.File) — with vmsplice into the pipe then splice to dst: the bytes
// are never copied by the CPU on the sender's side. It returns the bytes
// delivered to dst; fewer than len(b) only with an error (a broken
// connection, dst's write deadline), and then the pipe's remainder is
// dropped. A full dst parks the goroutine on the netpoller.
//
// Read the ownership rule on Pipe: b must stay unchanged until the
// receiver has read it.
func (p *Pipe) Send(dst syscall.Conn, b []byte) (int, error) {
	const what = "zerocopy: pipe send"
	rc, err := p.lockFor(what, dst)
	if err != nil {
		return 0, err
	}
	defer p.mu.Unlock()
	n, err := p.send(rc, b)
	if err != nil {
		return n, fmt.Errorf("%s of %d bytes (%d sent): %w", what, len(b), n, err)
	}
	return n, nil
}

// RecvFile receives n bytes from src (a socket or a pipe's read end) into
// dst at offset off, splicing the socket's buffers into the pipe and the
// pipe into dst's page cache: one copy by the kernel instead of two
// through a user buffer, and none of it in user space. Received bytes are
// never put in user memory: to have them in a block, read into the block
// (one copy, as any receive). It returns the bytes written; fewer than n
// only with an error (io.ErrUnexpectedEOF when src ends first).
func (p *Pipe) RecvFile(dst *os.File, off int64, src syscall.Conn, n int64) (int64, error) {
	const what = "zerocopy: pipe receive to file"
	if err := checkRange(what, off, n); err != nil {
		return 0, err
	}
	rc, err := p.lockFor(what, src)
	if err != nil {
		return 0, err
	}
	defer p.mu.Unlock()
	var got int64
	err = withFile(what, dst, func(ffd int) error {
		var err error
		got, err = p.recvFile(rc, ffd, off, n)
		return err
	})
	if err != nil {
		return got, fmt.Errorf("%s, %d bytes at %d (%d received): %w", what, n, off, got, err)
	}
	return got, nil
}

// lockFor returns c's raw connection with p locked, for one transfer of
// what; the caller unlocks p. Without a raw connection, or with p closed,
// it returns the error with p unlocked.
func (p *Pipe) lockFor(what string, c syscall.Conn) (syscall.RawConn, error) {
	rc, err := rawConn(what, c)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("%s: %w", what, ErrClosed)
	}
	return rc, nil
}

// readSome reads once into buf from rc's descriptor, waiting on the
// netpoller while there is nothing to read; 0 bytes and io.EOF at the
// end.
func readSome(rc syscall.RawConn, buf []byte) (int, error) {
	return readOnce(rc, func(fd int) (int, error) { return kernel.Read(fd, buf) }, io.EOF)
}

// readOnce calls op on rc's descriptor until it does not block, waiting
// on the netpoller meanwhile and retrying an interrupted call, and returns
// what it read: 0 and end when op read nothing, 0 and op's error when it
// failed (never the -1 a failed system call returns as its count).
func readOnce(rc syscall.RawConn, op func(fd int) (int, error), end error) (int, error) {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		for {
			m, err := op(int(fd))
			switch {
			case retry(err):
				continue
			case wouldBlock(err):
				return false
			case err != nil:
				rerr = err
				return true
			case m == 0:
				rerr = end
			}
			n = m
			return true
		}
	})
	if err == nil {
		err = rerr
	}
	return n, err
}

// copyRecvFile is RecvFile's fallback: read into a 64 KiB buffer, pwrite
// to the file.
func copyRecvFile(rc syscall.RawConn, ffd int, off, n int64) (int64, error) {
	buf := make([]byte, min(n, fallbackBuf))
	var got int64
	for got < n {
		k, err := readSome(rc, buf[:min(n-got, int64(len(buf)))])
		if err == io.EOF {
			return got, io.ErrUnexpectedEOF
		}
		if err != nil {
			return got, err
		}
		for w := 0; w < k; {
			m, err := kernel.Pwrite(ffd, buf[w:k], off+got)
			if retry(err) {
				continue
			}
			if err != nil {
				return got, err
			}
			w += m
			got += int64(m)
			counts.copied.Add(uint64(m))
		}
	}
	return got, nil
}
