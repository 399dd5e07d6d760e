package sampler

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
)

// The sampler reads /proc without allocating: the files stay open, and one
// buffer is reused. A sample must not grow the heap it measures (the libc
// policy's resident figure is the process's RSS), and near the mapping cap
// (mmap-wall) the Go runtime must not need a new mapping.
var proc struct {
	sync.Mutex
	status, maps *os.File
	buf          [64 << 10]byte
}

// errStatus says /proc/self/status did not have the lines it should.
var errStatus = errors.New("sampler: VmRSS or VmHWM missing from /proc/self/status")

// ReadStatus returns the process's VmRSS and VmHWM in bytes.
func ReadStatus() (rss, hwm uint64, err error) {
	proc.Lock()
	defer proc.Unlock()
	if proc.status == nil {
		if proc.status, err = os.Open("/proc/self/status"); err != nil {
			return 0, 0, err
		}
	}
	n, err := proc.status.ReadAt(proc.buf[:], 0)
	if err != nil && err != io.EOF {
		return 0, 0, err
	}
	b := proc.buf[:n]
	rss, ok1 := statusKB(b, "\nVmRSS:")
	hwm, ok2 := statusKB(b, "\nVmHWM:")
	if !ok1 || !ok2 {
		return 0, 0, errStatus
	}
	return rss, hwm, nil
}

// statusKB returns the value of a "Name:   1234 kB" line, in bytes.
func statusKB(b []byte, field string) (uint64, bool) {
	i := bytes.Index(b, []byte(field))
	if i < 0 {
		return 0, false
	}
	var v uint64
	digits := 0
	for _, c := range b[i+len(field):] {
		switch {
		case c == ' ' || c == '\t':
			if digits > 0 {
				return v << 10, true
			}
		case c >= '0' && c <= '9':
			v = 10*v + uint64(c-'0')
			digits++
		default:
			return v << 10, digits > 0
		}
	}
	return v << 10, digits > 0
}

// CountMaps returns the number of the process's mappings (the lines of
// /proc/self/maps, which vm.max_map_count caps), or -1 if they cannot be
// read.
func CountMaps() int {
	proc.Lock()
	defer proc.Unlock()
	if proc.maps == nil {
		f, err := os.Open("/proc/self/maps")
		if err != nil {
			return -1
		}
		proc.maps = f
	}
	if _, err := proc.maps.Seek(0, io.SeekStart); err != nil {
		return -1
	}
	lines := 0
	for {
		n, err := proc.maps.Read(proc.buf[:])
		lines += bytes.Count(proc.buf[:n], []byte{'\n'})
		if err == io.EOF || n == 0 {
			return lines
		}
		if err != nil {
			return -1
		}
	}
}
