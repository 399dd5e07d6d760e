package alloctest

import "github.com/brkmap/alloc/internal/sys"

// MinorFaults returns the process's minor page faults so far: the counted
// wrapper's getrusage, under the name the tests read.
func MinorFaults() uint64 { return sys.MinorFaults() }
