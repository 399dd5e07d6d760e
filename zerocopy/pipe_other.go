//go:build !linux

package zerocopy

import "syscall"

// hasSplice: no splice nor vmsplice here.
const hasSplice = false

func (p *Pipe) open() error     { return nil }
func (p *Pipe) closeFds() error { return nil }

// send copies: write b from user memory.
func (p *Pipe) send(rc syscall.RawConn, b []byte) (int, error) { return writeAll(rc, b) }

func (p *Pipe) recvFile(rc syscall.RawConn, ffd int, off, n int64) (int64, error) {
	return copyRecvFile(rc, ffd, off, n)
}
