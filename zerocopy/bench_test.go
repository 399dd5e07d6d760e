package zerocopy_test

import (
	"io"
	"net"
	"testing"

	"github.com/brkmap/alloc/zerocopy"
)

// BenchmarkSend sends a 16 MiB file over loopback TCP each way, the
// receiver discarding in another goroutine (so both sides share the
// process: MB/s here, the sender's CPU apart in `go run ./bench
// zerocopy`). Compare runs with benchstat.
func BenchmarkSend(b *testing.B) {
	const size = 16 << 20
	data := random(size, 99)
	f := tempFileB(b, data)
	senders := map[*net.TCPConn]*zerocopy.Sender{}
	ways := []struct {
		name string
		send func(conn *net.TCPConn) error
	}{
		{"read+write", func(c *net.TCPConn) error {
			buf := make([]byte, 64<<10)
			for off := int64(0); off < size; {
				n, err := f.ReadAt(buf, off)
				if _, werr := c.Write(buf[:n]); werr != nil {
					return werr
				}
				off += int64(n)
				if err != nil && err != io.EOF {
					return err
				}
			}
			return nil
		}},
		{"sendfile", func(c *net.TCPConn) error { _, err := zerocopy.SendFile(c, f, 0, size); return err }},
		{"vmsplice", func(c *net.TCPConn) error {
			p, err := zerocopy.NewPipe()
			if err != nil {
				return err
			}
			defer p.Close()
			_, err = p.Send(c, data)
			return err
		}},
		{"msg_zerocopy", func(c *net.TCPConn) error {
			s := senders[c] // one Sender per connection, for its life
			if s == nil {
				var err error
				if s, err = zerocopy.NewSender(c); err != nil {
					return err
				}
				senders[c] = s
			}
			for off := 0; off < size; off += 1 << 20 {
				if err := s.Send(data[off:off+1<<20], func([]byte) {}); err != nil {
					return err
				}
			}
			return s.Flush()
		}},
	}
	for _, w := range ways {
		b.Run(w.name, func(b *testing.B) {
			send, recv := tcpPairB(b)
			go func() { _, _ = io.Copy(io.Discard, struct{ io.Reader }{recv}) }()
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				if err := w.send(send); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
