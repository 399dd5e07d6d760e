package alloctest

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/brkmap/alloc/internal/sys"
)

// MinorFaults returns the process's minor page faults so far.
func MinorFaults() uint64 { return sys.MinorFaults() }

// MaxMapCountPath is the kernel's limit on a process's mappings.
const MaxMapCountPath = "/proc/sys/vm/max_map_count"

// MaxMapCount returns vm.max_map_count, the number of mappings (VMAs) a
// process may have, or an error where the kernel does not say.
func MaxMapCount() (int, error) {
	b, err := os.ReadFile(MaxMapCountPath)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", MaxMapCountPath, err)
	}
	return n, nil
}
