package zerocopy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// rawConn returns c's raw connection, refusing a nil one.
func rawConn(what string, c syscall.Conn) (syscall.RawConn, error) {
	if c == nil {
		return nil, fmt.Errorf("%s: nil connection: %w", what, ErrInvalid)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return rc, nil
}

// withFile runs fn with f's descriptor, kept open meanwhile.
func withFile(what string, f *os.File, fn func(fd int) error) error {
	if f == nil {
		return fmt.Errorf("%s: nil file: %w", what, ErrInvalid)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	var inner error
	if err := rc.Control(func(fd uintptr) { inner = fn(int(fd)) }); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return inner
}

// checkFileRange refuses a range of a regular file that runs past its
// end (a closed file's Stat error is returned wrapped).
func checkFileRange(what string, f *os.File, off, n int64) error {
	if err := checkRange(what, off, n); err != nil {
		return err
	}
	if f == nil {
		return fmt.Errorf("%s: nil file: %w", what, ErrInvalid)
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if st.Mode().IsRegular() && off+n > st.Size() {
		return fmt.Errorf("%s: [%d, %d) of %s, %d bytes long: %w", what, off, off+n, f.Name(), st.Size(), ErrPastEOF)
	}
	return nil
}

// retry reports whether err means "try again": EINTR.
func retry(err error) bool { return errors.Is(err, unix.EINTR) }

// wouldBlock reports whether err means "wait for the descriptor".
func wouldBlock(err error) bool { return errors.Is(err, unix.EAGAIN) }

// writeAll writes p to rc's descriptor, waiting on the netpoller when the
// descriptor is full. It counts p as copied: the bytes came from a
// user-space buffer.
func writeAll(rc syscall.RawConn, p []byte) (int, error) {
	var done int
	err := writeLoop(rc, func() bool { return done < len(p) }, func(fd int) error {
		n, err := kernel.Write(fd, p[done:])
		if n > 0 {
			done += n
			counts.copied.Add(uint64(n))
		}
		if err == nil && n == 0 {
			return io.ErrShortWrite
		}
		return err
	})
	return done, err
}

// writeLoop is the loop of every send: it calls call on rc's descriptor
// while more reports true, retrying an interrupted call and waiting on
// the netpoller while the call would block, and stops at any other error
// call returns. call makes one system call and counts what it moved; one
// that moved nothing returns an error of its own (a short write, an early
// end of file), since calling again would spin.
func writeLoop(rc syscall.RawConn, more func() bool, call func(fd int) error) error {
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for more() {
			switch err := call(int(fd)); {
			case err == nil, retry(err):
			case wouldBlock(err):
				return false
			default:
				werr = err
				return true
			}
		}
		return true
	})
	if err == nil {
		err = werr
	}
	return err
}

// copyRange is the fallback of every send from a file: pread into a
// 64 KiB buffer and write it to dst, n bytes from off.
func copyRange(dst syscall.RawConn, srcFd int, off, n int64) (int64, error) {
	buf := make([]byte, min(n, fallbackBuf))
	var sent int64
	for sent < n {
		k, err := kernel.Pread(srcFd, buf[:min(n-sent, int64(len(buf)))], off+sent)
		if retry(err) {
			continue
		}
		if err != nil {
			return sent, err
		}
		if k == 0 {
			return sent, fmt.Errorf("file ends at %d: %w", off+sent, ErrPastEOF)
		}
		w, err := writeAll(dst, buf[:k])
		sent += int64(w)
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}
