package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/brkmap/alloc/bench/internal/child"
	"github.com/brkmap/alloc/bench/internal/harness"
	"github.com/brkmap/alloc/bench/internal/libc"
	"github.com/brkmap/alloc/bench/internal/replay"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeTrace writes a random trace that exercises every path: small,
// mid-size and large blocks, zero sizes, reallocs that grow, shrink and
// cross the threshold, and blocks left live at the end.
func writeTrace(t *testing.T, dir, name string, header int) (path string, peakLive uint64) {
	r := rand.New(rand.NewPCG(7, 8))
	const ids = 400
	sizes := make([]int, ids)
	live := make([]bool, ids)
	var lines []string
	var cur uint64
	size := func() int {
		switch r.IntN(20) {
		case 0:
			return 0
		case 1:
			return 100<<10 + r.IntN(200<<10) // around the threshold
		case 2:
			return 33<<10 + r.IntN(60<<10) // mid-size
		}
		return 1 + r.IntN(3000)
	}
	for range 3000 {
		id := r.IntN(ids)
		switch {
		case !live[id]:
			n := size()
			lines = append(lines, fmt.Sprintf("a %d %d", id, n))
			live[id], sizes[id] = true, n
			cur += uint64(n)
		case r.IntN(3) == 0:
			n := size()
			lines = append(lines, fmt.Sprintf("r %d %d", id, n))
			cur += uint64(n) - uint64(sizes[id])
			sizes[id] = n
		default:
			lines = append(lines, fmt.Sprintf("f %d", id))
			live[id] = false
			cur -= uint64(sizes[id])
		}
		peakLive = max(peakLive, cur)
	}
	head := fmt.Sprintf("%d\n%d\n", ids, len(lines))
	if header == 4 {
		head = fmt.Sprintf("0\n%d\n%d\n1\n", ids, len(lines))
	}
	path = filepath.Join(dir, name+".rep")
	require.NoError(t, os.WriteFile(path, []byte(head+strings.Join(lines, "\n")+"\n"), 0o644))
	return path, peakLive
}

// A generated trace replays under every policy, each in its own child
// process, with every content check passing.
func TestReplayEveryPolicy(t *testing.T) {
	path, peakLive := writeTrace(t, t.TempDir(), "mixed", 4)
	for _, p := range harness.Policies {
		t.Run(p.Name, func(t *testing.T) {
			if p.Libc && !libc.Available {
				t.Skip(harness.ErrLibcMissing)
			}
			r := runChild(child.Job{Kind: kindReplay, Target: path, Policy: p.Name})
			require.Empty(t, r.Error)
			assert.True(t, r.OK)
			assert.Equal(t, "mixed", r.Trace)
			assert.Equal(t, 3000, r.Ops)
			assert.Equal(t, peakLive, r.PeakLiveBytes, "peak live is the trace's own")
			assert.Positive(t, r.Seconds)
			assert.Positive(t, r.PeakResidentBytes)
			assert.InDelta(t, float64(r.PeakResidentBytes)/float64(r.PeakLiveBytes), r.Fragmentation, 1e-9)
			if p.Libc {
				assert.Nil(t, r.MmapCalls, "glibc's calls are not counted")
				assert.Equal(t, "rss", r.ResidentFrom)
			} else {
				require.NotNil(t, r.MmapCalls)
				assert.Equal(t, "mincore", r.ResidentFrom)
				// sampled right after the operation at which the live bytes
				// peak, when every live byte is written and so resident
				assert.GreaterOrEqual(t, r.PeakResidentBytes, r.PeakLiveBytes, "the blocks were written, so they are resident")
			}
			if p.Name == "mmap" {
				assert.GreaterOrEqual(t, *r.MmapCalls, uint64(1000), "a mapping per block")
			}
		})
	}
}

// The libc column is glibc's footprint, not the Go process's growth: a
// trace of 150,000 ids (a 3.6 MB table of blocks, which the old column
// counted as glibc's as its pages were first written) replays with the Go
// runtime still, and the peak is the live bytes written plus glibc's
// overhead, within glibc's own count of its heap (mallinfo2).
func TestLibcColumnIsGlibcs(t *testing.T) {
	if !libc.Available {
		t.Skip(harness.ErrLibcMissing)
	}
	if raceEnabled {
		t.Skip("under -race the process's RSS holds the race detector's shadow of every byte written")
	}
	const ids = 150000
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n%d\n", ids, 2*ids)
	for id := range ids {
		fmt.Fprintf(&b, "a %d 40\n", id)
	}
	for id := range ids {
		fmt.Fprintf(&b, "f %d\n", id)
	}
	path := filepath.Join(t.TempDir(), "ids.rep")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	r := runChild(child.Job{Kind: kindReplay, Target: path, Policy: "libc"})
	require.True(t, r.OK, r.Error)
	live := uint64(40 * ids)
	assert.Equal(t, live, r.PeakLiveBytes)
	assert.Less(t, r.GoGrowthBytes, uint64(256<<10), "the Go runtime kept still")
	assert.GreaterOrEqual(t, r.PeakResidentBytes, live, "every byte was written")
	assert.LessOrEqual(t, r.PeakResidentBytes, live*6/5+(512<<10), "48-byte chunks for 40-byte blocks, and no table of blocks: %d", r.PeakResidentBytes)
	assert.LessOrEqual(t, r.PeakResidentBytes, r.LibcHeapPeakBytes+(256<<10), "no more than glibc's own heap")
	assert.GreaterOrEqual(t, r.LibcHeapPeakBytes, live)
}

// A corrupted block fails its content check: ok is false, and the
// command exits non-zero.
func TestReplayCatchesCorruption(t *testing.T) {
	path, _ := writeTrace(t, t.TempDir(), "corrupt", 2)
	t.Setenv(replay.CorruptEnv, "100")
	r := runChild(child.Job{Kind: kindReplay, Target: path, Policy: "threshold"})
	assert.False(t, r.OK)
	assert.Contains(t, r.Error, "changed")
	assert.Error(t, failures([]*harness.Result{r}))

	// The child's own exit status says so too.
	cmd, err := child.Command(child.Job{Kind: kindReplay, Target: path, Policy: "brk"})
	require.NoError(t, err)
	out, err := cmd.Output()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "want a non-zero exit, got %v", err)
	assert.Equal(t, 3, exit.ExitCode())
	assert.Contains(t, string(out), `"ok":false`)
}

// The JSON lines carry the contract's field names, exactly.
func TestReplayJSONFields(t *testing.T) {
	path, _ := writeTrace(t, t.TempDir(), "fields", 4)
	r := runChild(child.Job{Kind: kindReplay, Target: path, Policy: "threshold"})
	require.True(t, r.OK, r.Error)
	line, err := json.Marshal(r.Contract())
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(line, &m))
	for _, k := range []string{"trace", "policy", "threshold", "ops", "seconds", "peak_live_bytes",
		"peak_resident_bytes", "final_resident_bytes", "fragmentation", "mmap_calls", "munmap_calls",
		"madvise_calls", "ok"} {
		assert.Contains(t, m, k)
	}
	assert.Equal(t, float64(128<<10), m["threshold"])
	assert.Equal(t, true, m["ok"])
	for _, k := range []string{"series", "peak_map", "moments"} {
		assert.NotContains(t, m, k, "report-only fields stay out of replay -json")
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t.Log(keys)
}
