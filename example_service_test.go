package alloc_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/google/pprof/profile"
	"golang.org/x/sys/unix"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/stats"
	"github.com/brkmap/alloc/stats/statshttp"
)

// An off-heap buffer for one request: allocated when the request starts,
// freed when it ends. The buffer never becomes garbage, so a busy service
// makes the collector no work however many requests it serves. Its owner —
// the handler — frees it exactly once, and nothing keeps a slice of it
// afterwards (copy out what must outlive the request).
func Example_requestBuffer() {
	a, err := alloc.New(alloc.Config{})
	if err != nil {
		panic(err)
	}
	defer a.Close()

	handle := func(body io.Reader) (string, error) {
		buf, err := a.Malloc(64 << 10)
		if err != nil {
			return "", err
		}
		defer a.Free(buf) // the handler owns buf; nothing may use it after this

		n, err := io.ReadFull(body, buf)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return "", err
		}
		reply := strings.ToUpper(string(buf[:n])) // string() copies: it may outlive buf
		return reply, nil
	}

	reply, err := handle(strings.NewReader("hello, off-heap"))
	fmt.Println(reply, err)
	fmt.Println("live blocks after the request:", a.Stats().LiveBlocks)
	// Output:
	// HELLO, OFF-HEAP <nil>
	// live blocks after the request: 0
}

// A 4096-aligned buffer from AlignedAlloc, as O_DIRECT reads need: the
// buffer's address, the file offset and the length must all be multiples
// of the device's logical block size, and reads bypass the page cache.
// File systems that refuse O_DIRECT (tmpfs answers EINVAL at open) are
// read the ordinary way instead, with the same buffer.
func Example_directIO() {
	a, err := alloc.New(alloc.Config{})
	if err != nil {
		panic(err)
	}
	defer a.Close()

	// A 1 MiB file to read.
	dir, err := os.MkdirTemp("", "directio")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	name := filepath.Join(dir, "data")
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	if err := os.WriteFile(name, want, 0o600); err != nil {
		panic(err)
	}

	const block = 4096
	buf, err := a.AlignedAlloc(block, 256<<10)
	if err != nil {
		panic(err)
	}
	defer a.Free(buf)

	f, err := os.OpenFile(name, os.O_RDONLY|oDirect, 0) // 0 on macOS, which has none (odirect_*_test.go)
	if errors.Is(err, unix.EINVAL) {
		f, err = os.Open(name) // no O_DIRECT here: same buffer, page cache
	}
	if err != nil {
		panic(err)
	}
	defer f.Close()

	var got []byte
	for off := int64(0); ; off += int64(len(buf)) {
		n, err := f.ReadAt(buf, off) // offset and length stay multiples of 4096
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
	}
	fmt.Println("buffer aligned:", uintptr(unsafe.Pointer(&buf[0]))%block == 0)
	fmt.Println("read", len(got), "bytes, intact:", bytes.Equal(got, want))
	// Output:
	// buffer aligned: true
	// read 1048576 bytes, intact: true
}

// allocateImages is what a service's heap profile should point at.
//
//go:noinline
func allocateImages(a *alloc.Allocator) ([]byte, error) { return a.Malloc(4 << 20) }

// Serving the allocator's state on a debug port: the heap profile at
// /debug/offheap/heap (`go tool pprof http://host/debug/offheap/heap`),
// the Snapshot as JSON at /debug/offheap/stats, and the Snapshot in expvar
// (expvar.Publish("offheap", statshttp.Var(a)), served at /debug/vars).
func Example_serveProfile() {
	old := alloc.ProfileRate
	alloc.ProfileRate = 1 // record every allocation, so the output is exact
	a, err := alloc.New(alloc.Config{})
	alloc.ProfileRate = old
	if err != nil {
		panic(err)
	}
	defer a.Close()
	img, _ := allocateImages(a)
	defer a.Free(img)

	mux := http.NewServeMux()
	mux.Handle("/debug/offheap/", statshttp.Handler(a))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/debug/offheap/heap")
	if err != nil {
		panic(err)
	}
	p, err := profile.Parse(resp.Body)
	resp.Body.Close()
	if err != nil {
		panic(err)
	}
	for _, s := range p.Sample {
		lines := s.Location[0].Line
		fmt.Printf("%s: %d bytes in use\n", lines[len(lines)-1].Function.Name, s.Value[3])
	}

	resp, err = http.Get(srv.URL + "/debug/offheap/stats")
	if err != nil {
		panic(err)
	}
	var snap stats.Snapshot
	err = json.NewDecoder(resp.Body).Decode(&snap)
	resp.Body.Close()
	fmt.Println(snap.LiveBlocks, snap.MmapBytes>>20, "MiB mapped", err)
	// Output:
	// github.com/brkmap/alloc_test.allocateImages: 4194304 bytes in use
	// 1 4 MiB mapped <nil>
}
