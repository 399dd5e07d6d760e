package shm

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// SendFile sends f's descriptor, and msg (at least one byte is sent: a
// message carrying only a descriptor is not delivered by every system),
// over the Unix socket c (SCM_RIGHTS). The receiver gets its own
// descriptor of the same open file; f stays open here.
func SendFile(c *net.UnixConn, f *os.File, msg []byte) error {
	if len(msg) == 0 {
		msg = []byte{0}
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("shm: send file: %w", err)
	}
	var werr error
	if err := rc.Control(func(fd uintptr) {
		_, _, werr = c.WriteMsgUnix(msg, unix.UnixRights(int(fd)), nil)
	}); err != nil {
		return fmt.Errorf("shm: send file: %w", err)
	}
	if werr != nil {
		return fmt.Errorf("shm: send file: %w", werr)
	}
	return nil
}

// RecvFile receives a descriptor sent by SendFile over c, with its
// message (up to 4 KiB).
func RecvFile(c *net.UnixConn) (*os.File, []byte, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, nil, fmt.Errorf("shm: receive file: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, nil, fmt.Errorf("shm: receive file: %w", err)
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds[1:] {
			unix.Close(fd)
		}
		if len(fds) > 0 {
			unix.CloseOnExec(fds[0])
			return os.NewFile(uintptr(fds[0]), "shm-pool"), buf[:n], nil
		}
	}
	return nil, buf[:n], fmt.Errorf("shm: receive file: the message carried no descriptor: %w", ErrNotPool)
}

// Send sends the pool's file over c, for the receiver to Receive.
func (p *Pool) Send(c *net.UnixConn) error { return SendFile(c, p.f, nil) }

// Receive receives a pool's file sent by Pool.Send over c and attaches it.
func Receive(c *net.UnixConn) (*Pool, error) {
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
