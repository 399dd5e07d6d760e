package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/brkmap/alloc/bench/internal/harness"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFormat(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB",
		1 << 20: "1.00 MiB", 3 << 29: "1536.00 MiB"} {
		assert.Equal(t, want, FormatBytes(n), n)
	}
	for s, want := range map[float64]string{2.5: "2.50 s", 0.0125: "12.50 ms", 0.000042: "42 µs"} {
		assert.Equal(t, want, FormatSeconds(s), s)
	}
}

func calls(n uint64) *uint64 { return &n }

// Each result is a row; this allocator's are scored against the best of
// their trace on peak resident and system calls (1 on both is 1.00; time
// is not scored), glibc's are not; a run that never
// started says why, and a failed one is marked.
func TestPrintTable(t *testing.T) {
	zero := calls(0)
	rs := []*harness.Result{
		{Trace: "t", Policy: "threshold", Seconds: 0.01, PeakLiveBytes: 1 << 20, PeakResidentBytes: 2 << 20,
			MmapCalls: calls(3), MunmapCalls: zero, MadviseCalls: zero, MprotectCalls: zero, OK: true, OpsPerSec: 1000},
		{Trace: "t", Policy: "mmap", Seconds: 0.02, PeakLiveBytes: 1 << 20, PeakResidentBytes: 4 << 20,
			MmapCalls: calls(3), MunmapCalls: zero, MadviseCalls: zero, MprotectCalls: zero, OK: true, Note: "a note"},
		{Trace: "t", Policy: "libc", Seconds: 0.01, PeakLiveBytes: 1 << 20, OK: true, ResidentFrom: "rss"},
		{Trace: "t", Policy: "brk", Seconds: 0.01, OK: false, Error: "op 3: changed", MmapCalls: zero,
			MunmapCalls: zero, MadviseCalls: zero, MprotectCalls: zero},
		{Trace: "t", Policy: "dynamic", Error: "child process failed"},
	}
	var out bytes.Buffer
	PrintTable(&out, "", rs)
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	require.Len(t, lines, 1+len(rs)+2, "a header, a row each, and the notes:\n%s", out.String())
	assert.Equal(t, []string{"trace", "policy", "time", "syscalls"}, strings.Fields(lines[0])[:4])
	assert.Equal(t, "ops/s", strings.Fields(lines[0])[len(strings.Fields(lines[0]))-1])
	assert.Equal(t, []string{"t", "threshold", "10.00", "ms", "3"}, strings.Fields(lines[1])[:5])
	assert.Contains(t, lines[1], " 1.00 ")
	assert.Contains(t, lines[2], " 1.41 ", "twice the time (not scored) and twice the resident: the square root of 2")
	assert.Equal(t, 2, strings.Count(lines[3], "n/a"), "glibc's syscalls and trapped bytes cannot be seen")
	assert.Contains(t, lines[3], "—", "glibc is not scored")
	assert.Contains(t, lines[4], "brk FAILED")
	assert.Contains(t, lines[5], "dynamic")
	assert.Contains(t, lines[5], "failed: child process failed")
	assert.Equal(t, "  mmap: a note", lines[6])
	assert.Equal(t, "  brk error: op 3: changed", lines[7])
}

// The shared pool's plot labels its log axis in whole powers of ten.
func TestPowerLabel(t *testing.T) {
	for e, want := range map[int]string{-7: "100 ns", -6: "1 µs", -5: "10 µs", -4: "100 µs", -3: "1 ms", -2: "10 ms", 0: "1 s", 1: "10 s"} {
		assert.Equal(t, want, powerLabel(e), "10^%d s", e)
	}
}
