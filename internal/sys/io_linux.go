package sys

import "golang.org/x/sys/unix"

// Splice moves up to n bytes from in to out (one of them a pipe) inside
// the kernel; offsets as splice(2).
func (s *OS) Splice(in int, inOff *int64, out int, outOff *int64, n int, flags int) (int64, error) {
	if err := s.enter(OpSplice); err != nil {
		return 0, err
	}
	return unix.Splice(in, inOff, out, outOff, n, flags)
}

// Vmsplice maps the user pages of iov into the pipe fd.
func (s *OS) Vmsplice(fd int, iov []unix.Iovec, flags int) (int, error) {
	if err := s.enter(OpVmsplice); err != nil {
		return 0, err
	}
	return unix.Vmsplice(fd, iov, flags)
}

// RecvErrqueue reads one message of the socket fd's error queue
// (recvmsg MSG_ERRQUEUE: MSG_ZEROCOPY completions) into oob and returns
// the control bytes read.
func (s *OS) RecvErrqueue(fd int, oob []byte) (int, error) {
	if err := s.enter(OpErrqueue); err != nil {
		return 0, err
	}
	_, oobn, _, _, err := unix.Recvmsg(fd, nil, oob, unix.MSG_ERRQUEUE)
	return oobn, err
}
