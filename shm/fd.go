package shm

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Conn is a Unix-domain socket to pass a pool's descriptor over:
// *net.UnixConn is one (this package does not import net, so that the
// module's root, which imports it, does not either).
type Conn interface {
	SyscallConn() (syscall.RawConn, error)
}

// SendFile sends f's descriptor, with msg (at least one byte is sent: a
// message carrying only a descriptor is not delivered by every system),
// over the Unix socket c (SCM_RIGHTS). The receiver gets its own
// descriptor of the same open file; f stays open here.
func SendFile(c Conn, f *os.File, msg []byte) error {
	if c == nil || f == nil {
		return fmt.Errorf("shm: send file: no connection or no file: %w", os.ErrInvalid)
	}
	if len(msg) == 0 {
		msg = []byte{0}
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("shm: send file: %w", err)
	}
	frc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("shm: send file: %w", err)
	}
	var serr error
	cerr := frc.Control(func(ffd uintptr) {
		rights := unix.UnixRights(int(ffd))
		err = rc.Write(func(fd uintptr) bool {
			serr = unix.Sendmsg(int(fd), msg, rights, nil, 0)
			return serr != unix.EAGAIN
		})
	})
	for _, e := range []error{cerr, err, serr} {
		if e != nil {
			return fmt.Errorf("shm: send file: %w", e)
		}
	}
	return nil
}

// RecvFile receives a descriptor sent by SendFile over c, with its
// message (up to 4 KiB). A message without a descriptor is an error
// wrapping ErrNotPool; a connection its peer closed, io.EOF.
func RecvFile(c Conn) (*os.File, []byte, error) {
	if c == nil {
		return nil, nil, fmt.Errorf("shm: receive file: no connection: %w", os.ErrInvalid)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("shm: receive file: %w", err)
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	var n, oobn int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, 0)
		return rerr != unix.EAGAIN
	}); err != nil {
		return nil, nil, fmt.Errorf("shm: receive file: %w", err)
	}
	if rerr != nil {
		return nil, nil, fmt.Errorf("shm: receive file: %w", rerr)
	}
	if n == 0 && oobn == 0 {
		return nil, nil, fmt.Errorf("shm: receive file: %w", io.EOF)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, nil, fmt.Errorf("shm: receive file: %w", err)
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil || len(fds) == 0 {
			continue
		}
		for _, fd := range fds[1:] {
			unix.Close(fd)
		}
		unix.CloseOnExec(fds[0])
		return os.NewFile(uintptr(fds[0]), "shm-pool"), buf[:n], nil
	}
	return nil, buf[:n], fmt.Errorf("shm: receive file: the message carried no descriptor: %w", ErrNotPool)
}

// Send sends the pool's file over c, for the receiver to Receive.
func (p *Pool) Send(c Conn) error { return SendFile(c, p.f, nil) }

// Receive receives a pool's file sent by Pool.Send over c and attaches it.
func Receive(c Conn) (*Pool, error) {
	f, _, err := RecvFile(c)
	if err != nil {
		return nil, err
	}
	p, err := Attach(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return p, nil
}
