package zcbench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/zerocopy"
	"golang.org/x/sys/unix"
)

// send runs in the child: it connects, sends the file by method, and
// measures its own CPU time around the send alone.
func send(method string, cfg Config) (Result, error) {
	res := Result{Method: method, Bytes: cfg.Size}
	res.Copies, res.CopiesNIC = copiesPerByte[method][0], copiesPerByte[method][1]
	c, err := net.Dial("tcp", cfg.Addr)
	if err != nil {
		return res, err
	}
	conn := c.(*net.TCPConn)
	defer conn.Close()
	f, err := os.Open(cfg.File)
	if err != nil {
		return res, err
	}
	defer f.Close()
	a, err := alloc.New(alloc.Config{})
	if err != nil {
		return res, err
	}
	defer a.Close()
	block := cfg.Block
	if block <= 0 {
		block = 1 << 20
	}

	var ru0, ru1 unix.Rusage
	c0 := zerocopy.ReadCounts()
	start := time.Now()
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru0); err != nil {
		return res, err
	}
	var syscalls uint64
	switch method {
	case "read+write":
		syscalls, err = readWrite(conn, f)
	case "sendfile":
		_, err = zerocopy.SendFile(conn, f, 0, cfg.Size)
	case "mmap+vmsplice":
		err = mmapVmsplice(conn, f, cfg.Size)
	case "read+msg_zerocopy":
		err = blocksZeroCopy(conn, a, block, cfg.Size, func(b []byte, off int64) (int, error) { return f.ReadAt(b, off) }, &res)
	case "odirect+msg_zerocopy":
		var d *zerocopy.Direct
		if d, err = zerocopy.OpenDirect(cfg.File); err == nil {
			res.Bypass = d.Bypass()
			err = blocksZeroCopy(conn, a, block, cfg.Size, d.ReadAt, &res)
			d.Close()
		}
	default:
		err = fmt.Errorf("unknown method %q", method)
	}
	if err == nil {
		err = conn.CloseWrite()
	}
	if rerr := unix.Getrusage(unix.RUSAGE_SELF, &ru1); err == nil {
		err = rerr
	}
	res.SendSeconds = time.Since(start).Seconds()
	res.StartUnixNs = start.UnixNano()
	res.SenderUser = tv(ru1.Utime) - tv(ru0.Utime)
	res.SenderSys = tv(ru1.Stime) - tv(ru0.Stime)
	res.SenderCPU = res.SenderUser + res.SenderSys
	c1 := zerocopy.ReadCounts()
	res.UserBytes = c1.CopiedBytes - c0.CopiedBytes
	res.Completions = c1.Completions - c0.Completions
	res.CopiedCompl = c1.CopiedCompletions - c0.CopiedCompletions
	for i := range c1.Calls {
		syscalls += c1.Calls[i] - c0.Calls[i]
	}
	res.Syscalls = syscalls
	return res, err
}

func tv(t unix.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// readWrite is the baseline: read into a 64 KiB Go []byte, write it.
// (Not io.Copy: the connection's ReadFrom would use sendfile.)
func readWrite(conn *net.TCPConn, f *os.File) (uint64, error) {
	buf := make([]byte, 64<<10)
	var calls uint64
	for {
		n, err := f.Read(buf)
		calls++
		if n > 0 {
			if _, err := conn.Write(buf[:n]); err != nil {
				return calls, err
			}
			calls++
		}
		if err == io.EOF {
			return calls, nil
		}
		if err != nil {
			return calls, err
		}
	}
}

// mmapVmsplice maps the file (read-only, shared: the pages are the page
// cache's, as a file-backed pool's blocks are) and sends the mapping with
// vmsplice+splice. Nobody writes the file, so the pages stay as sent
// until the receiver has read them: Pipe's rule holds.
func mmapVmsplice(conn *net.TCPConn, f *os.File, size int64) error {
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	defer unix.Munmap(m)
	p, err := zerocopy.NewPipe()
	if err != nil {
		return err
	}
	defer p.Close()
	const chunk = 16 << 20
	for off := 0; off < len(m); off += chunk {
		if _, err := p.Send(conn, m[off:min(len(m), off+chunk)]); err != nil {
			return err
		}
	}
	return nil
}

// blocksZeroCopy reads the file into off-heap blocks (eight in flight)
// and sends each with MSG_ZEROCOPY, refilling a block only when the
// Sender hands it back.
func blocksZeroCopy(conn *net.TCPConn, a *alloc.Allocator, block int, size int64, read func([]byte, int64) (int, error), res *Result) error {
	s, err := zerocopy.NewSender(conn)
	if err != nil {
		return err
	}
	if !s.ZeroCopy() {
		return errors.New("the socket refused SO_ZEROCOPY")
	}
	const inFlight = 8
	var free [][]byte
	for range inFlight {
		b, err := a.AlignedAlloc(zerocopy.DirectAlign, block)
		if err != nil {
			return err
		}
		free = append(free, b)
	}
	defer func() {
		for _, b := range free {
			_ = a.Free(b)
		}
	}()
	for off := int64(0); off < size; {
		for len(free) == 0 {
			if err := s.Wait(); err != nil {
				return err
			}
		}
		b := free[len(free)-1]
		free = free[:len(free)-1]
		n, err := read(b, off)
		if n == 0 && err != nil {
			free = append(free, b)
			return fmt.Errorf("read at %d: %w", off, err)
		}
		off += int64(n)
		if err := s.Send(b[:n], func([]byte) { free = append(free, b) }); err != nil {
			return err
		}
	}
	return s.Close()
}
