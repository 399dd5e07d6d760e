package zerocopy_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/zerocopy"
)

// A service sends off-heap blocks to a peer without copying them: the
// Sender owns each block until the kernel is done with its pages, then
// hands it back — here straight to Free. A file's range goes out with
// SendFile, from the page cache.
func ExampleSender() {
	a, err := alloc.New(alloc.Config{})
	if err != nil {
		panic(err)
	}
	defer a.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	received := make(chan []byte)
	go func() { // the peer
		c, err := ln.Accept()
		if err != nil {
			panic(err)
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		received <- b
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}

	s, err := zerocopy.NewSender(conn.(*net.TCPConn))
	if err != nil {
		panic(err)
	}
	freed := 0
	for i := range 3 {
		block, err := a.Malloc(1 << 20)
		if err != nil {
			panic(err)
		}
		for j := range block {
			block[j] = byte('a' + i)
		}
		// From here the block is the Sender's: not to be touched until
		// the release function gets it back.
		if err := s.Send(block, func(b []byte) { _ = a.Free(b); freed++ }); err != nil {
			panic(err)
		}
	}
	if err := s.Close(); err != nil { // waits for the kernel to be done
		panic(err)
	}

	name := filepath.Join(os.TempDir(), "zerocopy-example")
	if err := os.WriteFile(name, []byte("header|payload|trailer"), 0o600); err != nil {
		panic(err)
	}
	defer os.Remove(name)
	f, err := os.Open(name)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	if _, err := zerocopy.SendFile(conn.(*net.TCPConn), f, 7, 7); err != nil {
		panic(err)
	}
	conn.Close()

	got := <-received
	fmt.Println(len(got), freed, a.Stats().LiveBlocks)
	fmt.Println(bytes.Count(got, []byte{'b'}), bytes.Count(got, []byte{'c'}), string(got[3<<20:]))
	// Output:
	// 3145735 3 0
	// 1048576 1048576 payload
}

// An O_DIRECT read goes from the disk straight into an aligned off-heap
// block, without the page cache; where the filesystem refuses O_DIRECT
// the same call reads through the cache (Bypass says which).
func ExampleOpenDirect() {
	name := filepath.Join(os.TempDir(), "zerocopy-direct-example")
	data := bytes.Repeat([]byte("0123456789abcdef"), 3*4096/16)
	if err := os.WriteFile(name, append(data, "tail"...), 0o600); err != nil {
		panic(err)
	}
	defer os.Remove(name)

	a, err := alloc.New(alloc.Config{})
	if err != nil {
		panic(err)
	}
	defer a.Close()
	d, err := zerocopy.OpenDirect(name)
	if err != nil {
		panic(err)
	}
	defer d.Close()
	block, err := a.AlignedAlloc(zerocopy.DirectAlign, 2*4096)
	if err != nil {
		panic(err)
	}
	defer a.Free(block)

	n, err := d.ReadAt(block, 4096)
	fmt.Println(n, err, bytes.Equal(block, data[4096:]))
	n, err = d.ReadAt(block, 2*4096) // the last page and the 4-byte tail
	fmt.Println(n, err, string(block[n-4:n]))
	// Output:
	// 8192 <nil> true
	// 4100 EOF tail
}
