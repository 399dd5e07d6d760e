package procfs

import (
	"bytes"
	"os"
	"strconv"
)

// SmapsPath is the file AnonHugePages is read from.
var SmapsPath = "/proc/self/smaps"

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
