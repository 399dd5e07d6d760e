package replay

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// op is one operation of a trace, 16 bytes: traces of millions of
// operations are parsed into one array of these before the timed loop, so
// the replay reads memory, not text.
type op struct {
	size int64
	id   int32
	kind byte // 'a', 'f' or 'r'
}

// Trace is a parsed malloc-lab trace.
type Trace struct {
	name   string   // file name without directory and .rep
	header []uint64 // the numbers before the first operation (two or four lines)
	ops    []op
	ids    int // highest id + 1
}

// ParseTraceFile reads and parses a trace file.
func ParseTraceFile(path string) (*Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := parseTrace(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	t.name = strings.TrimSuffix(filepath.Base(path), ".rep")
	return t, nil
}

// parseTrace parses the CS:APP malloc-lab format: header lines of one
// number each (four: heap size, ids, operations, weight; some traces
// carry only two), then `a ID SIZE`, `f ID`, `r ID SIZE` one a line.
// Blank lines are skipped. It checks that the trace is consistent — a
// block is allocated only when its id is not live, freed only when live;
// `r` on an id that is not live allocates, as realloc(NULL, n) — so the
// replay never has to.
func parseTrace(r io.Reader) (*Trace, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	t := &Trace{}
	var live []bool
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		c := text[0]
		if c >= '0' && c <= '9' {
			if len(t.ops) > 0 {
				return nil, fmt.Errorf("line %d: a number after the first operation", line)
			}
			if len(t.header) == 4 {
				return nil, fmt.Errorf("line %d: more than four header lines", line)
			}
			v, err := strconv.ParseUint(string(bytes.Fields(text)[0]), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: header: %w", line, err)
			}
			t.header = append(t.header, v)
			continue
		}
		f := bytes.Fields(text)
		want := 3
		if c == 'f' {
			want = 2
		}
		if len(f[0]) != 1 || (c != 'a' && c != 'f' && c != 'r') {
			return nil, fmt.Errorf("line %d: unknown operation %q", line, f[0])
		}
		if len(f) != want {
			return nil, fmt.Errorf("line %d: %q: want %d fields", line, text, want)
		}
		id, err := strconv.ParseUint(string(f[1]), 10, 31)
		if err != nil {
			return nil, fmt.Errorf("line %d: id: %w", line, err)
		}
		// the header says how many ids there are (the second of four
		// lines, the first of two): the replay sizes its table by it
		if n, ok := headerIDs(t.header); ok && id >= n {
			return nil, fmt.Errorf("line %d: id %d beyond the header's %d ids", line, id, n)
		}
		o := op{id: int32(id), kind: c}
		if want == 3 {
			if o.size, err = strconv.ParseInt(string(f[2]), 10, 64); err != nil || o.size < 0 || o.size > math.MaxInt32*16 {
				return nil, fmt.Errorf("line %d: size %q", line, f[2])
			}
		}
		for int(id) >= len(live) {
			live = append(live, false)
		}
		switch c {
		case 'a':
			if live[id] {
				return nil, fmt.Errorf("line %d: id %d allocated while live", line, id)
			}
			live[id] = true
		case 'f':
			if !live[id] {
				return nil, fmt.Errorf("line %d: id %d freed while not live", line, id)
			}
			live[id] = false
		case 'r':
			live[id] = true
		}
		t.ops = append(t.ops, o)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err) // a line too long stops the scan before it is counted
	}
	if len(t.header) != 2 && len(t.header) != 4 {
		return nil, fmt.Errorf("want a header of two or four lines, found %d", len(t.header))
	}
	if len(t.ops) == 0 {
		return nil, fmt.Errorf("no operations")
	}
	t.ids = len(live)
	return t, nil
}

// headerIDs returns the number of ids a header declares, if it is complete.
func headerIDs(h []uint64) (uint64, bool) {
	switch len(h) {
	case 4:
		return h[1], true
	case 2:
		return h[0], true
	}
	return 0, false
}

// livePeak returns the index of the operation after which the trace's live
// bytes (the sizes asked for) are highest, the first such one; -1 for a
// trace that never has a live byte.
func (t *Trace) livePeak() int {
	sizes := make([]int64, t.ids)
	var live, peak int64
	at := -1
	for i, o := range t.ops {
		switch o.kind {
		case 'a', 'r':
			live += o.size - sizes[o.id]
			sizes[o.id] = o.size
		case 'f':
			live -= sizes[o.id]
			sizes[o.id] = 0
		}
		if live > peak {
			peak, at = live, i
		}
	}
	return at
}
