package procfs

import (
	"bytes"
	"os"
	"strconv"
)

// MapsPath and MaxMapCountPath are the process's list of mappings and the
// kernel's cap on their number.
var (
	MapsPath        = "/proc/self/maps"
	MaxMapCountPath = "/proc/sys/vm/max_map_count"
)

// MapCount returns the number of lines of /proc/self/maps: the process's
// mappings (VMAs), which vm.max_map_count caps. It returns -1 if the file
// cannot be read.
func MapCount() int {
	b, err := os.ReadFile(MapsPath)
	if err != nil {
		return -1
	}
	return bytes.Count(b, []byte("\n"))
}

// MaxMapCount returns vm.max_map_count, or -1 if it cannot be read.
func MaxMapCount() int {
	b, err := os.ReadFile(MaxMapCountPath)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil {
		return -1
	}
	return n
}
