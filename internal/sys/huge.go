package sys

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
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

// SmapsPath is the file AnonHugePages is read from.
var SmapsPath = "/proc/self/smaps"

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

// MadviseHuge advises [p, p+n) MADV_HUGEPAGE: let the kernel back it with
// huge pages (in THP madvise mode, only advised ranges get them). Counted
// as a madvise call.
func (s *OS) MadviseHuge(p unsafe.Pointer, n uintptr) error {
	return s.Madvise(p, n, unix.MADV_HUGEPAGE)
}

// MremapInPlace resizes the mapping [p, p+old) to n bytes without moving
// it; it fails (ENOMEM) if the pages after it are taken.
func (s *OS) MremapInPlace(p unsafe.Pointer, old, n uintptr) error {
	if err := s.enter(OpMremap); err != nil {
		return err
	}
	_, err := unix.MremapPtr(p, old, nil, n, 0)
	return err
}

// MremapTo moves the mapping [p, p+old) to dst, resized to n bytes,
// replacing whatever was mapped at [dst, dst+n). Page tables move with it:
// huge pages stay huge when p and dst are both huge-page aligned.
func (s *OS) MremapTo(p unsafe.Pointer, old, n uintptr, dst unsafe.Pointer) (unsafe.Pointer, error) {
	if err := s.enter(OpMremap); err != nil {
		return nil, err
	}
	return unix.MremapPtr(p, old, dst, n, unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED)
}

// MmapAligned maps n bytes (a multiple of the page size) starting at a
// multiple of align (a power of two above the page size) by mapping
// n+align-page bytes and unmapping the head and tail. It costs one mmap and
// one or two munmaps.
func (s *OS) MmapAligned(n, align uintptr, prot, flags int) (unsafe.Pointer, error) {
	extra := align - PageSize
	if n+extra < n {
		return nil, ErrNoMemory
	}
	p, err := s.Mmap(n+extra, prot, flags)
	if err != nil {
		return nil, err
	}
	start := uintptr(p)
	head := (start+align-1)&^(align-1) - start
	if head > 0 {
		if err := s.Munmap(p, head); err != nil {
			_ = s.Munmap(p, n+extra)
			return nil, err
		}
		p = unsafe.Add(p, head)
	}
	if tail := extra - head; tail > 0 {
		if err := s.Munmap(unsafe.Add(p, n), tail); err != nil {
			_ = s.Munmap(p, n+tail)
			return nil, err
		}
	}
	return p, nil
}

// Range is [Start, End) of address space.
type Range struct{ Start, End uintptr }

// SmapsEntry is one mapping of /proc/self/smaps: its range, the bytes of
// it backed by anonymous huge pages, and its VmFlags (two-letter codes:
// "hg" means advised MADV_HUGEPAGE, "nh" MADV_NOHUGEPAGE).
type SmapsEntry struct {
	Range
	AnonHugePages uintptr
	VmFlags       []string
}

// HasFlag reports whether the mapping's VmFlags hold flag.
func (e SmapsEntry) HasFlag(flag string) bool {
	for _, f := range e.VmFlags {
		if f == flag {
			return true
		}
	}
	return false
}

// ReadSmaps parses the smaps file (SmapsPath) into buf's storage (reused
// between calls; may be nil) and calls fn for every mapping.
func ReadSmaps(buf *[]byte, fn func(SmapsEntry)) error {
	f, err := os.Open(SmapsPath)
	if err != nil {
		return err
	}
	defer f.Close()
	b := (*buf)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := f.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil || n == 0 {
			break
		}
	}
	*buf = b
	ParseSmaps(b, fn)
	return nil
}

// ParseSmaps calls fn for every mapping described in text, in the format
// of /proc/PID/smaps.
func ParseSmaps(text []byte, fn func(SmapsEntry)) {
	var cur SmapsEntry
	have := false
	for len(text) > 0 {
		line := text
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = nil
		}
		if len(line) == 0 {
			continue
		}
		if r, ok := parseRangeLine(line); ok {
			if have {
				fn(cur)
			}
			cur, have = SmapsEntry{Range: r}, true
			continue
		}
		switch {
		case bytes.HasPrefix(line, []byte("AnonHugePages:")):
			f := bytes.Fields(line[len("AnonHugePages:"):])
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(string(f[0]), 10, 64)
				cur.AnonHugePages = uintptr(kb) << 10
			}
		case bytes.HasPrefix(line, []byte("VmFlags:")):
			cur.VmFlags = cur.VmFlags[:0]
			for _, f := range bytes.Fields(line[len("VmFlags:"):]) {
				cur.VmFlags = append(cur.VmFlags, string(f))
			}
		}
	}
	if have {
		fn(cur)
	}
}

// parseRangeLine parses the header line of a mapping, "start-end perms …",
// with start and end in hex. Field lines ("Size:  4 kB") never parse.
func parseRangeLine(line []byte) (Range, bool) {
	dash := bytes.IndexByte(line, '-')
	sp := bytes.IndexByte(line, ' ')
	if dash <= 0 || sp <= dash {
		return Range{}, false
	}
	lo, err1 := strconv.ParseUint(string(line[:dash]), 16, 64)
	hi, err2 := strconv.ParseUint(string(line[dash+1:sp]), 16, 64)
	if err1 != nil || err2 != nil {
		return Range{}, false
	}
	return Range{uintptr(lo), uintptr(hi)}, true
}

// HugeResident returns the bytes backed by anonymous huge pages in the
// mappings of smaps that lie in ranges (sorted by Start, not overlapping).
// A mapping that lies only partly in ranges (the kernel merged one of ours
// with a neighbour of the same flags) is counted up to the overlap. buf is
// scratch space, reused between calls.
func HugeResident(ranges []Range, buf *[]byte) (uintptr, error) {
	var total uintptr
	err := ReadSmaps(buf, func(e SmapsEntry) {
		if e.AnonHugePages == 0 {
			return
		}
		var overlap uintptr
		for _, r := range ranges {
			if r.Start >= e.End {
				break
			}
			lo, hi := max(r.Start, e.Start), min(r.End, e.End)
			if lo < hi {
				overlap += hi - lo
			}
		}
		total += min(overlap, e.AnonHugePages)
	})
	return total, err
}
