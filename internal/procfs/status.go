package procfs

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"strconv"
)

// StatusPath is the file ReadProcMemory reads.
var StatusPath = "/proc/self/status"

// ProcMemory is the process's own accounting of its memory, from
// /proc/self/status: what the kernel charges the whole process (Go
// runtime, other allocators, this one), as opposed to Resident, which
// measures only this allocator's mappings.
type ProcMemory struct {
	RSS     uint64 // VmRSS, bytes
	PeakRSS uint64 // VmHWM, bytes: the high-water mark since start or ResetPeakRSS
}

// ReadProcMemory reads VmRSS and VmHWM from /proc/self/status.
func ReadProcMemory() (ProcMemory, error) {
	b, err := os.ReadFile(StatusPath)
	if err != nil {
		return ProcMemory{}, err
	}
	var m ProcMemory
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Bytes()
		var dst *uint64
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			dst = &m.RSS
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			dst = &m.PeakRSS
		default:
			continue
		}
		// "VmRSS:	    1234 kB"
		f := bytes.Fields(line[6:])
		if len(f) != 2 || string(f[1]) != "kB" {
			return ProcMemory{}, errors.New("procfs: unexpected line in /proc/self/status: " + string(line))
		}
		kb, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil {
			return ProcMemory{}, err
		}
		*dst = kb << 10
		found++
	}
	if found != 2 {
		return ProcMemory{}, errors.New("procfs: VmRSS or VmHWM missing from /proc/self/status")
	}
	return m, nil
}

// ResetPeakRSS resets the process's VmHWM to its current RSS by writing 5
// to /proc/self/clear_refs, so that a later PeakRSS is the peak of what
// happened after this call.
func ResetPeakRSS() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}
