package sys

import "golang.org/x/sys/unix"

// The I/O calls of package zerocopy, which moves blocks' bytes to and
// from sockets, pipes and files: counted and refusable like the memory
// calls, each under its own Op so that zerocopy.ReadCounts can say what a
// transfer cost. They take descriptors the caller keeps open meanwhile
// (through syscall.RawConn) and return the kernel's answer unchanged
// (EAGAIN, EINTR included): waiting and retrying are the caller's.

// Sendfile copies up to n bytes of the file in, from *off (advanced),
// to out inside the kernel (sendfile).
func (s *OS) Sendfile(out, in int, off *int64, n int) (int, error) {
	if err := s.enter(OpSendfile); err != nil {
		return 0, err
	}
	return unix.Sendfile(out, in, off, n)
}

// Sendmsg sends p on the socket fd with flags (MSG_ZEROCOPY).
func (s *OS) Sendmsg(fd int, p []byte, flags int) (int, error) {
	if err := s.enter(OpSendmsg); err != nil {
		return 0, err
	}
	return unix.SendmsgN(fd, p, nil, nil, flags)
}

// Read reads into p from fd (counted as OpRead).
func (s *OS) Read(fd int, p []byte) (int, error) {
	if err := s.enter(OpRead); err != nil {
		return 0, err
	}
	return unix.Read(fd, p)
}

// Pread reads into p from fd at off (counted as OpRead).
func (s *OS) Pread(fd int, p []byte, off int64) (int, error) {
	if err := s.enter(OpRead); err != nil {
		return 0, err
	}
	return unix.Pread(fd, p, off)
}

// Write writes p to fd (counted as OpWrite).
func (s *OS) Write(fd int, p []byte) (int, error) {
	if err := s.enter(OpWrite); err != nil {
		return 0, err
	}
	return unix.Write(fd, p)
}

// Pwrite writes p to fd at off (counted as OpWrite).
func (s *OS) Pwrite(fd int, p []byte, off int64) (int, error) {
	if err := s.enter(OpWrite); err != nil {
		return 0, err
	}
	return unix.Pwrite(fd, p, off)
}

// Open opens path with the open(2) flags mode and returns the descriptor.
func (s *OS) Open(path string, mode int, perm uint32) (int, error) {
	if err := s.enter(OpOpen); err != nil {
		return -1, err
	}
	return unix.Open(path, mode, perm)
}
