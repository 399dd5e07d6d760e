package shmbench

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"time"
	"unsafe"

	"github.com/brkmap/alloc/bench/internal/child"
	"github.com/brkmap/alloc/shm"
	"golang.org/x/sys/unix"
)

// The descriptors the child inherits (exec.Cmd.ExtraFiles start at 3).
const (
	childSocket = 3
	childPool   = 4
)

// ErrBadPayload: the child found a payload that is not what was sent.
var ErrBadPayload = errors.New("shmbench: a payload arrived changed")

// Run measures both ways at every size of cfg, with one child process.
func Run(cfg Config) (*Result, error) {
	if len(cfg.Sizes) == 0 {
		return nil, fmt.Errorf("shmbench: no payload sizes")
	}
	for _, n := range cfg.Sizes {
		if n <= 0 || n%8 != 0 {
			return nil, fmt.Errorf("shmbench: payload size %d: must be a positive multiple of 8", n)
		}
	}
	largest := slices.Max(cfg.Sizes)
	res := &Result{PoolBytes: max(32<<20, 3*largest)}
	start := time.Now()
	pool, err := shm.Create(res.PoolBytes)
	if errors.Is(err, errors.ErrUnsupported) {
		return nil, fmt.Errorf("shmbench: %w", err)
	}
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if res.StatsEmpty, err = statsOf(pool); err != nil {
		return nil, err
	}
	res.FileBytesEmpty = fileBytes(pool.File())

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("shmbench: socketpair: %w", err)
	}
	sock := fds[0]
	defer unix.Close(sock)
	theirs := os.NewFile(uintptr(fds[1]), "shmbench-socket")
	spec, err := json.Marshal(cfg)
	if err != nil {
		theirs.Close()
		return nil, err
	}
	var rep childReport
	done := make(chan error, 1)
	go func() {
		err := child.Run(child.Job{Kind: ChildKind, Config: spec, ExtraFiles: []*os.File{theirs, pool.File()}}, &rep)
		theirs.Close() // the last reference to the child's end: a read here sees the end of the stream
		done <- err
	}()

	runtime.LockOSThread()
	perr := parent(cfg, sock, pool, res)
	runtime.UnlockOSThread()
	if perr != nil {
		unix.Shutdown(sock, unix.SHUT_RDWR) // the child sees the end and stops
	} else {
		writeFull(sock, make([]byte, 24)) // way 0: the end
	}
	cerr := <-done
	res.Seconds = time.Since(start).Seconds()
	if err := merge(res, &rep); err != nil && perr == nil {
		perr = err
	}
	if res.StatsAfter, err = statsOf(pool); err != nil && perr == nil {
		perr = err
	}
	res.FileBytesAfter = fileBytes(pool.File())
	switch {
	case cerr != nil:
		res.Error = cerr.Error()
	case perr != nil:
		res.Error = perr.Error()
	case rep.Error != "":
		res.Error = "child: " + rep.Error
	case res.StatsAfter.LiveBlocks != 0:
		res.Error = fmt.Sprintf("%d blocks still live after the child freed every payload", res.StatsAfter.LiveBlocks)
	}
	res.OK = res.Error == ""
	for _, r := range res.Rows {
		res.OK = res.OK && r.OK
	}
	return res, nil
}

// parent is the sending side, on a locked thread: a header per phase,
// then each payload and its answer.
func parent(cfg Config, sock int, pool *shm.Pool, res *Result) error {
	var buf []byte // the socket way's payload: a Go []byte, as a program would send
	var msg [8]byte
	var ack [1]byte
	for _, n := range cfg.Sizes {
		for _, way := range Ways {
			count := cfg.count(n)
			row := Row{Way: way, Size: n, Payloads: count, OK: true}
			if way == WaySocket && len(buf) < n {
				buf = make([]byte, n)
			}
			if err := writeFull(sock, header(way, n, count+1)); err != nil {
				return err
			}
			times := make([]time.Duration, 0, count)
			var u0 usage
			var wrote int
			var work float64 // CPU in fill: producing the payloads
			for k := 0; k <= count; k++ {
				if k == 1 {
					u0, wrote, work = threadUsage(), 0, 0
				}
				t0 := time.Now()
				switch way {
				case WaySocket:
					work -= threadCPU()
					fill(buf[:n], k)
					work += threadCPU()
					if err := writeFull(sock, buf[:n]); err != nil {
						return err
					}
				case WayShm:
					ref, b, err := pool.Alloc(n)
					if err != nil {
						return err
					}
					work -= threadCPU()
					fill(b, k)
					work += threadCPU()
					if k == 0 {
						addr := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
						row.Warmup = &Block{Ref: uint64(ref), Offset: ref.Offset(), ParentAddr: addr, ParentBase: addr - ref.Offset()}
					}
					binary.LittleEndian.PutUint64(msg[:], uint64(ref))
					if err := writeFull(sock, msg[:]); err != nil {
						return err
					}
				}
				if err := readFull(sock, ack[:]); err != nil {
					return fmt.Errorf("shmbench: waiting for the child's answer to a %s payload of %d bytes: %w", way, n, err)
				}
				if k > 0 {
					times = append(times, time.Since(t0))
					wrote += map[string]int{WaySocket: n, WayShm: len(msg)}[way]
				}
				if ack[0] != 1 && row.OK {
					row.OK, row.Error = false, fmt.Sprintf("payload %d: %v", k, ErrBadPayload)
				}
			}
			u := threadUsage().sub(u0)
			slices.Sort(times)
			row.MedianSeconds = times[len(times)/2].Seconds()
			row.ParentCPU = u.cpu / float64(count)
			row.ParentWork = work / float64(count)
			row.ParentFaults = float64(u.faults) / float64(count)
			row.SocketBytes = float64(wrote) / float64(count)
			row.CopiedBytes = float64(wrote+count) / float64(count) // and the answers: a byte each
			res.Rows = append(res.Rows, row)
		}
	}
	return nil
}

// merge adds the child's side of each phase to its row.
func merge(res *Result, rep *childReport) error {
	if len(rep.Phases) != len(res.Rows) {
		if rep.Error != "" {
			return fmt.Errorf("shmbench: the child: %s", rep.Error)
		}
		return fmt.Errorf("shmbench: the child reported %d phases, the parent ran %d", len(rep.Phases), len(res.Rows))
	}
	for i := range res.Rows {
		r, p := &res.Rows[i], rep.Phases[i]
		if p.Way != r.Way || p.Size != r.Size {
			return fmt.Errorf("shmbench: the child's phase %d is %s/%d, the parent's %s/%d", i, p.Way, p.Size, r.Way, r.Size)
		}
		c := float64(r.Payloads)
		r.ChildCPU = p.CPU / c
		r.ChildWork = p.Work / c
		r.ChildFaults = float64(p.Faults) / c
		// Copied: what the parent wrote and the child read, and the
		// answers the child wrote and the parent read.
		r.CopiedBytes += float64(p.Read+p.Wrote) / c
		if p.Error != "" && r.OK {
			r.OK, r.Error = false, p.Error
		}
		if r.Warmup != nil {
			r.Warmup.ChildAddr, r.Warmup.ChildBase = p.Addr, p.Addr-r.Warmup.Offset
			r.Warmup.ChildStats, r.Warmup.HeldByChild = p.Holding, true
		}
	}
	return nil
}

// childReport is what the child prints when the parent is done.
type childReport struct {
	Phases []childPhase `json:"phases"`
	Error  string       `json:"error,omitempty"`
}

// childPhase is the child's side of one way at one size, over the
// payloads after the warm-up.
type childPhase struct {
	Way     string    `json:"way"`
	Size    int       `json:"size"`
	CPU     float64   `json:"cpu_seconds"`
	Work    float64   `json:"work_cpu_seconds"` // of which in check: reading the payloads
	Faults  int64     `json:"minor_faults"`
	Read    int       `json:"read_bytes"`  // from the socket
	Wrote   int       `json:"wrote_bytes"` // into it: the answers
	Addr    uint64    `json:"addr"`        // shm: the warm-up block's address here
	Holding PoolStats `json:"holding"`     // shm: the pool's Stats while the warm-up block was held
	Error   string    `json:"error,omitempty"`
}

// ServeChild is the worker: it reads each phase's header, then each
// payload — from the socket, or in the pool by its Ref — checks it, frees
// it (shm), and answers one byte, until the parent says it is done.
func ServeChild(j child.Job) (any, bool, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pool, err := shm.Attach(os.NewFile(childPool, "pool"))
	if err != nil {
		return nil, false, fmt.Errorf("shmbench child: %w", err)
	}
	defer pool.Close()
	var rep childReport
	var buf []byte
	hdr := make([]byte, 24)
	var msg [8]byte
	for {
		if err := readFull(childSocket, hdr); err != nil {
			rep.Error = fmt.Sprintf("reading a phase's header: %v", err)
			return rep, false, nil
		}
		wayNo, n, count := int(binary.LittleEndian.Uint64(hdr)), int(binary.LittleEndian.Uint64(hdr[8:])), int(binary.LittleEndian.Uint64(hdr[16:]))
		if wayNo == 0 {
			return rep, rep.Error == "", nil
		}
		if wayNo > len(Ways) || n <= 0 || n%8 != 0 || count <= 0 {
			rep.Error = fmt.Sprintf("bad header: way %d, %d bytes, %d payloads", wayNo, n, count)
			return rep, false, nil
		}
		ph := childPhase{Way: Ways[wayNo-1], Size: n}
		if ph.Way == WaySocket && len(buf) < n {
			buf = make([]byte, n)
		}
		var u0 usage
		for k := 0; k < count; k++ {
			if k == 1 {
				u0, ph.Read, ph.Wrote, ph.Work = threadUsage(), 0, 0, 0
			}
			ok := true
			switch ph.Way {
			case WaySocket:
				if err := readFull(childSocket, buf[:n]); err != nil {
					rep.Error = fmt.Sprintf("reading a payload: %v", err)
					return rep, false, nil
				}
				ph.Read += n
				ph.Work -= threadCPU()
				ok = check(buf[:n], k)
				ph.Work += threadCPU()
			case WayShm:
				if err := readFull(childSocket, msg[:]); err != nil {
					rep.Error = fmt.Sprintf("reading a Ref: %v", err)
					return rep, false, nil
				}
				ph.Read += len(msg)
				ref := shm.Ref(binary.LittleEndian.Uint64(msg[:]))
				b, err := pool.Bytes(ref)
				if err == nil && len(b) < n {
					err = fmt.Errorf("%v has %d bytes, not %d", ref, len(b), n)
				}
				if err == nil {
					ph.Work -= threadCPU()
					ok = check(b[:n], k)
					ph.Work += threadCPU()
					if k == 0 {
						ph.Addr = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
						ph.Holding, err = statsOf(pool)
					}
				}
				if err == nil {
					err = pool.Free(ref)
				}
				if err != nil {
					ok = false
					if ph.Error == "" {
						ph.Error = err.Error()
					}
				}
			}
			if !ok && ph.Error == "" {
				ph.Error = fmt.Sprintf("payload %d of %d bytes: %v", k, n, ErrBadPayload)
			}
			ack := []byte{0}
			if ok {
				ack[0] = 1
			}
			if err := writeFull(childSocket, ack); err != nil {
				rep.Error = fmt.Sprintf("answering: %v", err)
				return rep, false, nil
			}
			if k > 0 {
				ph.Wrote++
			}
		}
		u := threadUsage().sub(u0)
		ph.CPU, ph.Faults = u.cpu, u.faults
		rep.Phases = append(rep.Phases, ph)
	}
}

func header(way string, n, count int) []byte {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint64(b, uint64(slices.Index(Ways, way)+1))
	binary.LittleEndian.PutUint64(b[8:], uint64(n))
	binary.LittleEndian.PutUint64(b[16:], uint64(count))
	return b
}

func statsOf(p *shm.Pool) (PoolStats, error) {
	s, err := p.Stats()
	if err != nil {
		return PoolStats{}, err
	}
	return PoolStats{Size: s.Size, FreeBytes: s.FreePages * shm.PageSize, LiveBlocks: s.LiveBlocks,
		LiveBytes: s.LiveBytes, Recoveries: s.Recoveries}, nil
}

// fileBytes is the memory f holds: for a memfd, its pages in RAM (or swap).
func fileBytes(f *os.File) uint64 {
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		return 0
	}
	return uint64(st.Blocks) * 512
}

// usage is a thread's CPU time (user + system, seconds) and minor faults.
type usage struct {
	cpu    float64
	faults int64
}

func (u usage) sub(v usage) usage { return usage{u.cpu - v.cpu, u.faults - v.faults} }

// threadUsage is the calling thread's usage (the caller is locked to
// it): its CPU clock and its minor faults.
func threadUsage() usage {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return usage{}
	}
	return usage{threadCPU(), ru.Minflt}
}

// threadCPU is the calling thread's CPU time, user + system, in seconds
// (CLOCK_THREAD_CPUTIME_ID: the scheduler's own count, to the nanosecond).
func threadCPU() float64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

// writeFull writes all of b to the blocking socket fd.
func writeFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("shmbench: write: %w", err)
		}
		b = b[n:]
	}
	return nil
}

// readFull reads exactly len(b) bytes from the blocking socket fd.
func readFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("shmbench: read: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("shmbench: read: the other side closed the socket with %d bytes to come", len(b))
		}
		b = b[n:]
	}
	return nil
}
