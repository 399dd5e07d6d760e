// Package zcbench measures the ways of sending a file over a local TCP
// socket (`go run ./bench zerocopy`): read+write through a 64 KiB Go
// []byte, and the zero-copy ways of package zerocopy.
//
// The file is made once (random bytes, on the filesystem of -dir, which
// must not be tmpfs: the point of several ways is the page cache) and
// read once through, so that it is in the page cache for every run but
// O_DIRECT's, which reads the disk whatever the cache holds. Each run is
// one child process, the sender: it connects to the parent over
// loopback, sends the whole file one way, and reports its own CPU time
// (getrusage RUSAGE_SELF, user + system, around the send only) and
// package zerocopy's counts. The parent is the receiver: it reads into a
// 256 KiB buffer and checksums everything (CRC-32C), so every run is
// checked byte for byte; its CPU time (its receiving thread's, RUSAGE_THREAD)
// is reported apart. Throughput is the file's size over the time from
// the sender's first call to the receiver's last byte.
package zcbench

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/brkmap/alloc/bench/internal/child"
)

// Methods are the ways, in the table's order.
var Methods = []string{"read+write", "sendfile", "mmap+vmsplice", "read+msg_zerocopy", "odirect+msg_zerocopy"}

// Baseline is the method the others are compared with.
const Baseline = "read+write"

// copiesPerByte is what each way costs the sender's CPU in copies of
// every byte, on loopback and to a network card (the kernel copies a
// MSG_ZEROCOPY send at local delivery). From the mechanism; the counts
// of each run (user-space bytes, completions copied) confirm it.
var copiesPerByte = map[string][2]int{
	"read+write":           {2, 2},
	"sendfile":             {0, 0},
	"mmap+vmsplice":        {0, 0},
	"read+msg_zerocopy":    {2, 1},
	"odirect+msg_zerocopy": {1, 0},
}

// Config is one measurement.
type Config struct {
	File  string `json:"file"`  // the file sent
	Size  int64  `json:"size"`  // its size
	Addr  string `json:"addr"`  // the receiver's address (set per run)
	Block int    `json:"block"` // block size of the off-heap ways
}

// Result is one run (one JSON object a line with -json).
type Result struct {
	Method      string  `json:"method"`
	Bytes       int64   `json:"bytes"`
	Seconds     float64 `json:"seconds"`            // first send call to last byte received
	SendSeconds float64 `json:"sender_seconds"`     // the sender's own wall time
	MBps        float64 `json:"mb_per_sec"`         // MB = 10^6 bytes
	SenderCPU   float64 `json:"sender_cpu_seconds"` // user + system
	SenderUser  float64 `json:"sender_user_seconds"`
	SenderSys   float64 `json:"sender_sys_seconds"`
	ReceiverCPU float64 `json:"receiver_cpu_seconds"`
	Copies      int     `json:"copies_per_byte_loopback"`
	CopiesNIC   int     `json:"copies_per_byte_nic"`
	UserBytes   uint64  `json:"user_space_bytes"` // bytes the zerocopy package moved through a buffer
	Completions uint64  `json:"zerocopy_completions"`
	CopiedCompl uint64  `json:"zerocopy_completions_copied"`
	Syscalls    uint64  `json:"syscalls"` // the zerocopy package's, or read+write's own
	Bypass      bool    `json:"odirect_bypass,omitempty"`
	Cached      float64 `json:"file_cached_fraction"` // page cache residency before the run
	OK          bool    `json:"ok"`                   // every byte arrived, checksum equal
	Error       string  `json:"error,omitempty"`
	StartUnixNs int64   `json:"sender_start_unix_ns"`
}

// ChildKind is the child.Job kind of one sending run.
const ChildKind = "zerocopy"

// Prepare makes (or reuses) the file of size bytes in dir, reads it
// once through (into the page cache) and returns its path, its checksum,
// and the filesystem's name.
func Prepare(dir string, size int64, progress io.Writer) (name string, sum uint32, fs string, err error) {
	fs, tmpfs := fsType(dir)
	if tmpfs {
		return "", 0, fs, fmt.Errorf("zerocopy bench: %s is on tmpfs; give -dir on a disk filesystem", dir)
	}
	name = filepath.Join(dir, fmt.Sprintf("brkmap-zerocopy-%d.dat", size))
	if st, err := os.Stat(name); err != nil || st.Size() != size {
		fmt.Fprintf(progress, "writing %s (%d bytes of random data)\n", name, size)
		if err := write(name, size); err != nil {
			return "", 0, fs, err
		}
	}
	f, err := os.Open(name)
	if err != nil {
		return "", 0, fs, err
	}
	defer f.Close()
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return "", 0, fs, err
	}
	return name, h.Sum32(), fs, nil
}

func write(name string, size int64) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	r := rand.NewChaCha8([32]byte{'z', 'c'})
	buf := make([]byte, 1<<20)
	for left := size; left > 0; left -= int64(len(buf)) {
		_, _ = r.Read(buf)
		if _, err := f.Write(buf[:min(left, int64(len(buf)))]); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// Run measures each method runs times (each run a child), in turn
// (method 1, 2, …, then again), so that a slow spell of the machine
// spreads over all methods.
func Run(cfg Config, methods []string, runs int, sum uint32, progress io.Writer) ([]Result, error) {
	var out []Result
	for r := range runs {
		for _, m := range methods {
			fmt.Fprintf(progress, "run %d/%d: %s\n", r+1, runs, m)
			res, err := runOne(cfg, m, sum)
			if err != nil {
				return out, err
			}
			out = append(out, res)
		}
	}
	return out, nil
}

// received is the receiver's side of a run.
type received struct {
	n   int64
	sum uint32
	end time.Time
	cpu float64
	err error
}

func runOne(cfg Config, method string, sum uint32) (Result, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Result{}, err
	}
	defer ln.Close()
	cfg.Addr = ln.Addr().String()
	cached := cachedFraction(cfg.File)
	done := make(chan received, 1)
	go func() { done <- receive(ln) }()
	spec, err := json.Marshal(cfg)
	if err != nil {
		return Result{}, err
	}
	var res Result
	cerr := child.Run(child.Job{Kind: ChildKind, Target: method, Config: spec}, &res)
	if cerr != nil {
		ln.Close()
		<-done
		return Result{}, cerr
	}
	rcv := <-done
	res.Cached = cached
	res.ReceiverCPU = rcv.cpu
	res.Seconds = float64(rcv.end.UnixNano()-res.StartUnixNs) / 1e9
	if res.Seconds > 0 {
		res.MBps = float64(res.Bytes) / res.Seconds / 1e6
	}
	switch {
	case rcv.err != nil:
		res.OK, res.Error = false, rcv.err.Error()
	case rcv.n != cfg.Size || rcv.sum != sum:
		res.OK, res.Error = false, fmt.Sprintf("received %d bytes, checksum %#x; want %d, %#x", rcv.n, rcv.sum, cfg.Size, sum)
	}
	return res, nil
}

// receive accepts one connection and reads it to the end into a 256 KiB
// buffer, checksumming, on one locked thread whose CPU time it measures.
func receive(ln net.Listener) received {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c, err := ln.Accept()
	if err != nil {
		return received{err: err}
	}
	defer c.Close()
	cpu0 := threadCPU()
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	n, err := io.CopyBuffer(h, struct{ io.Reader }{c}, make([]byte, 256<<10))
	return received{n: n, sum: h.Sum32(), end: time.Now(), cpu: threadCPU() - cpu0, err: err}
}

// ServeChild is the sender: it connects, sends the file one way and
// reports.
func ServeChild(j child.Job) (any, bool, error) {
	var cfg Config
	if err := json.Unmarshal(j.Config, &cfg); err != nil {
		return nil, false, err
	}
	if !slices.Contains(Methods, j.Target) {
		return nil, false, fmt.Errorf("zerocopy bench: unknown method %q", j.Target)
	}
	res, err := send(j.Target, cfg)
	if err != nil {
		res.Error = err.Error()
	}
	res.OK = err == nil
	return res, true, nil
}

// Medians returns, per method, the run with the median sender CPU time,
// with throughput replaced by its median over the runs.
func Medians(results []Result, methods []string) []Result {
	var out []Result
	for _, m := range methods {
		var rs []Result
		for _, r := range results {
			if r.Method == m {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		slices.SortFunc(rs, func(a, b Result) int { return cmp.Compare(a.SenderCPU, b.SenderCPU) })
		med := rs[len(rs)/2]
		mb := make([]float64, len(rs))
		rc := make([]float64, len(rs))
		ok := true
		for i, r := range rs {
			mb[i], rc[i] = r.MBps, r.ReceiverCPU
			ok = ok && r.OK
		}
		slices.Sort(mb)
		slices.Sort(rc)
		med.MBps, med.ReceiverCPU, med.OK = mb[len(mb)/2], rc[len(rc)/2], ok
		out = append(out, med)
	}
	return out
}

// ErrNoBaseline is returned by Ratio when the baseline did not run.
var ErrNoBaseline = errors.New("zerocopy bench: no read+write run to compare with")

// Ratio returns r's sender CPU over the baseline's, from medians.
func Ratio(meds []Result, r Result) (float64, error) {
	for _, b := range meds {
		if b.Method == Baseline && b.SenderCPU > 0 {
			return r.SenderCPU / b.SenderCPU, nil
		}
	}
	return 0, ErrNoBaseline
}
