package zerocopy

import (
	"errors"
	"fmt"
	"io"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hasSplice: Linux splices.
const hasSplice = true

// pipeWant is the pipe size asked for.
const pipeWant = 1 << 20

// open makes the pipe, non-blocking (the descriptors are never shared:
// every wait is on the other end, a socket, through the netpoller).
func (p *Pipe) open() error {
	fds := make([]int, 2)
	if err := unix.Pipe2(fds, unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return err
	}
	p.r, p.w = fds[0], fds[1]
	// Refused over pipe-max-size for an unprivileged process: the pipe
	// keeps its default size, which F_GETPIPE_SZ reads.
	_, _ = unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, pipeWant)
	if sz, err := unix.FcntlInt(uintptr(p.w), unix.F_GETPIPE_SZ, 0); err == nil && sz > 0 {
		p.size = sz
	}
	return nil
}

func (p *Pipe) closeFds() error {
	err := errors.Join(unix.Close(p.r), unix.Close(p.w))
	p.r, p.w = -1, -1
	return err
}

// reset drops whatever the pipe holds (references to a sender's pages,
// bytes of a socket) by making a new one.
func (p *Pipe) reset() error {
	if err := p.closeFds(); err != nil {
		return err
	}
	return p.open()
}

// send: vmsplice up to a pipe's worth of b, splice it all to dst, again.
func (p *Pipe) send(rc syscall.RawConn, b []byte) (int, error) {
	sent := 0
	for sent < len(b) {
		chunk := b[sent:min(len(b), sent+p.size)]
		iov := []unix.Iovec{{Base: unsafe.SliceData(chunk)}}
		iov[0].SetLen(len(chunk))
		m, err := kernel.Vmsplice(p.w, iov, unix.SPLICE_F_NONBLOCK)
		if retry(err) {
			continue
		}
		if err != nil && sent == 0 && spliceRefused(err) {
			return writeAll(rc, b) // a kernel without vmsplice for this memory
		}
		if err != nil {
			return sent, fmt.Errorf("vmsplice: %w", err)
		}
		if m == 0 { // the pipe is empty here: cannot happen, and must not spin
			return sent, fmt.Errorf("vmsplice took no byte: %w", io.ErrShortWrite)
		}
		k, err := p.drain(rc, m)
		sent += k
		if err != nil {
			return sent, errors.Join(err, p.reset())
		}
	}
	return sent, nil
}

// drain splices m bytes from the pipe to rc's descriptor.
func (p *Pipe) drain(rc syscall.RawConn, m int) (int, error) {
	done := 0
	err := writeLoop(rc, func() bool { return done < m }, func(fd int) error {
		k, err := kernel.Splice(p.r, nil, fd, nil, m-done, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if k > 0 {
			done += int(k)
		}
		switch {
		case err == nil && k == 0:
			return io.ErrShortWrite
		case err == nil, retry(err), wouldBlock(err):
			return err
		}
		return fmt.Errorf("splice: %w", err)
	})
	return done, err
}

// recvFile: splice from the socket into the pipe, from the pipe into the
// file, until n bytes. Where the kernel refuses splice for these
// descriptors (EINVAL), the rest is copied.
func (p *Pipe) recvFile(rc syscall.RawConn, ffd int, off, n int64) (int64, error) {
	var got int64
	for got < n {
		k, err := readOnce(rc, func(fd int) (int, error) {
			m, err := kernel.Splice(fd, nil, p.w, nil, int(min(n-got, int64(p.size))), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			return int(m), err
		}, io.ErrUnexpectedEOF)
		if err != nil && got == 0 && k == 0 && spliceRefused(err) {
			return copyRecvFile(rc, ffd, off, n)
		}
		if err != nil {
			return got, err
		}
		for k > 0 {
			o := off + got
			w, err := kernel.Splice(p.r, nil, ffd, &o, k, unix.SPLICE_F_MOVE)
			if retry(err) {
				continue
			}
			if err != nil {
				return got, errors.Join(fmt.Errorf("splice to file: %w", err), p.reset())
			}
			k -= int(w)
			got += w
		}
	}
	return got, nil
}

// spliceRefused reports whether a splice or vmsplice error means "not for
// these descriptors" (EINVAL, ENOSYS), so that a copy will do.
func spliceRefused(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS)
}
