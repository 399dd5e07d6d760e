package zerocopy

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxSendfile is the most one sendfile call is asked to move (Linux moves
// at most 2 GiB − 4 KiB a call anyway).
const maxSendfile = 1 << 30

// SendFile sends n bytes of src from offset off to dst (a socket; on
// Linux any descriptor, a pipe too) with sendfile: the kernel hands the
// file's page-cache pages to the socket by reference, and no byte goes
// through user space. It returns the bytes sent; fewer than n only with
// an error. src's own offset is not used nor moved.
//
// Where sendfile refuses (a destination or file it does not support:
// EINVAL, ENOSYS, EOPNOTSUPP, ENOTSOCK), the rest is sent by pread+write
// through a 64 KiB buffer (Counts.CopiedBytes says how much).
//
// Bad input: a negative off or n, or a nil src or dst, is ErrInvalid; a
// range past the end of a regular file is ErrPastEOF, checked before
// anything is sent (a file that shrinks meanwhile ends the send with
// ErrPastEOF); a closed src or dst gives the error of its SyscallConn or
// Stat (os.ErrClosed, net.ErrClosed). A blocked send parks the goroutine
// on the netpoller and honours dst's write deadline.
func SendFile(dst syscall.Conn, src *os.File, off, n int64) (int64, error) {
	const what = "zerocopy: sendfile"
	if err := checkFileRange(what, src, off, n); err != nil {
		return 0, err
	}
	rc, err := rawConn(what, dst)
	if err != nil {
		return 0, err
	}
	var sent int64
	err = withFile(what, src, func(sfd int) error {
		serr := writeLoop(rc, func() bool { return sent < n }, func(dfd int) error {
			o := off + sent
			w, err := kernel.Sendfile(dfd, sfd, &o, int(min(n-sent, maxSendfile)))
			if w > 0 {
				sent += int64(w)
			}
			if err == nil && w == 0 {
				return fmt.Errorf("file ends at %d: %w", off+sent, ErrPastEOF)
			}
			return err
		})
		if serr == nil || !sendfileRefused(serr) {
			return serr
		}
		k, err := copyRange(rc, sfd, off+sent, n-sent)
		sent += k
		return err
	})
	if err != nil {
		return sent, fmt.Errorf("%s %d bytes at %d (%d sent): %w", what, n, off, sent, err)
	}
	return sent, nil
}

// sendfileRefused reports whether sendfile's error means "not for these
// descriptors", so that a copy will do.
func sendfileRefused(err error) bool {
	for _, e := range []error{unix.EINVAL, unix.ENOSYS, unix.EOPNOTSUPP, unix.ENOTSUP, unix.ENOTSOCK, errors.ErrUnsupported} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
