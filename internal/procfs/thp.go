package procfs

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// Transparent huge pages (THP): what the kernel allows, and what it did.
//
// The kernel's THP mode is read from sysfs once, when an allocator is made:
// "always" (every suitably aligned anonymous range may get huge pages),
// "madvise" (only ranges advised MADV_HUGEPAGE) or "never". How much of a
// range the kernel actually backs with huge pages is only visible in
// /proc/self/smaps (AnonHugePages, per mapping), which is read on demand by
// Stats and never on the allocation path.

// THPEnabledPath and THPSizePath are where the kernel publishes its THP
// mode and its huge page size. They are variables so that a test can point
// them at a file of its own (for example one holding "always madvise
// [never]") and see how the allocator behaves on another kernel.
var (
	THPEnabledPath = "/sys/kernel/mm/transparent_hugepage/enabled"
	THPSizePath    = "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"
)

// THPMode is the kernel's transparent huge page mode.
type THPMode string

const (
	THPAlways  THPMode = "always"
	THPMadvise THPMode = "madvise"
	THPNever   THPMode = "never"
)

// Enabled reports whether the kernel gives huge pages to a range advised
// MADV_HUGEPAGE.
func (m THPMode) Enabled() bool { return m == THPAlways || m == THPMadvise }

// DefaultHugePageSize is the huge page size assumed when the kernel does not
// say (x86-64's PMD size).
const DefaultHugePageSize = 2 << 20

// ReadTHP reads the kernel's THP mode (the bracketed word of
// THPEnabledPath) and its huge page size. A missing or unreadable file, or
// one without a bracketed word, means THPNever: a kernel without THP.
func ReadTHP() (THPMode, uintptr) {
	size := uintptr(DefaultHugePageSize)
	if b, err := os.ReadFile(THPSizePath); err == nil {
		if n, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64); err == nil && n > 0 && n&(n-1) == 0 {
			size = uintptr(n)
		}
	}
	b, err := os.ReadFile(THPEnabledPath)
	if err != nil {
		return THPNever, size
	}
	return ParseTHPMode(string(b)), size
}

// ParseTHPMode returns the selected word of a sysfs THP file such as
// "always [madvise] never", or THPNever if there is none it knows.
func ParseTHPMode(s string) THPMode {
	i := strings.IndexByte(s, '[')
	j := strings.IndexByte(s, ']')
	if i < 0 || j < i {
		return THPNever
	}
	switch m := THPMode(s[i+1 : j]); m {
	case THPAlways, THPMadvise, THPNever:
		return m
	}
	return THPNever
}
