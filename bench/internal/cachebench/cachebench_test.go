package cachebench

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/bench/internal/child"
)

// TestRunEveryStore runs each workload on each store at a small size, as
// a child would, and checks the results make sense.
func TestRunEveryStore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every store")
	}
	for _, w := range []string{"uniform", "zipf", "ttl"} {
		for _, st := range storeNames {
			res := run(spec{Store: st, Workload: w, Entries: 20000, Ops: 4000, Goroutines: []int{1, 4}, Seed: 1})
			if w == "ttl" && !ttlCapable(st) {
				assert.NotEmpty(t, res.Skipped)
				continue
			}
			require.Empty(t, res.Skipped, "%s on %s", st, w)
			assert.Greater(t, res.HitRatio, 0.1, "%s on %s", st, w)
			assert.LessOrEqual(t, res.HitRatio, 1.0)
			assert.Len(t, res.GetNs, 2)
			assert.Len(t, res.SetNs, 2)
			assert.Greater(t, res.Held, 0, "%s on %s", st, w)
			if st != "bigcache" { // its entries expire when its cleaner runs, not on Get
				assert.Zero(t, res.Stale, "%s on %s: values returned after their TTL", st, w)
			}
		}
	}
}

func TestShiftKeepsTheNewestInTheCache(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 64 MiB")
	}
	res := run(spec{Store: "cache", Workload: "shift"})
	assert.GreaterOrEqual(t, res.Kept32K, 0.95)
	assert.GreaterOrEqual(t, res.KeptFit, 0.95)
}

func TestZipfIsSkewed(t *testing.T) {
	const n = 1000
	z := newZipf(n, 0.99)
	r := rand.New(rand.NewPCG(1, 2))
	counts := make([]int, n)
	for range 200000 {
		counts[z.next(r)]++
	}
	hottest := counts[0] // rank 0 maps to id 0
	for id, c := range counts {
		assert.LessOrEqual(t, c, hottest, "id %d", id)
	}
	// P(rank 0) = 1/zeta(n) ≈ 0.13 for n = 1000, theta = 0.99
	assert.InDelta(t, 1/z.zetan, float64(hottest)/200000, 0.01)
}

func TestMedianAndTable(t *testing.T) {
	rs := []result{
		{Store: "a", Workload: "uniform", GetNs: map[string]float64{"1": 30}, SetNs: map[string]float64{"1": 3}, HitRatio: 0.5},
		{Store: "a", Workload: "uniform", GetNs: map[string]float64{"1": 10}, SetNs: map[string]float64{"1": 1}, HitRatio: 0.7},
		{Store: "a", Workload: "uniform", GetNs: map[string]float64{"1": 20}, SetNs: map[string]float64{"1": 2}, HitRatio: 0.6},
	}
	m := median(rs)
	assert.Equal(t, 20.0, m.GetNs["1"])
	assert.Equal(t, 2.0, m.SetNs["1"])
	assert.Equal(t, 0.6, m.HitRatio)
	var out bytes.Buffer
	table(&out, []result{m, {Store: "b", Workload: "ttl", Skipped: "no expiry"}}, []int{1})
	assert.Contains(t, out.String(), "get g=1")
	assert.Contains(t, out.String(), "skipped: no expiry")
	assert.Equal(t, 3, strings.Count(out.String(), "\n"))
}

// ServeChild runs the spec its job carries, and refuses a job that does
// not decode or whose store and spec disagree.
func TestServeChild(t *testing.T) {
	sp := spec{Store: "map", Workload: "uniform", Entries: 2000, Ops: 1000, Goroutines: []int{1}, Seed: 1}
	b, err := json.Marshal(sp)
	require.NoError(t, err)
	out, ok, err := ServeChild(child.Job{Kind: ChildKind, Target: "map", Config: b})
	require.NoError(t, err)
	assert.True(t, ok)
	res, isResult := out.(result)
	require.True(t, isResult)
	assert.Equal(t, "map", res.Store)
	assert.Equal(t, 2000, res.Entries)
	assert.Positive(t, res.HitRatio)

	_, _, err = ServeChild(child.Job{Kind: ChildKind, Target: "cache", Config: b})
	assert.ErrorIs(t, err, errBadJob)
	_, _, err = ServeChild(child.Job{Kind: ChildKind, Target: "map", Config: []byte("{")})
	assert.Error(t, err)
}

// The report folder holds the page with the table and every plot inline,
// each plot also as an SVG file, and the results.
func TestWriteReport(t *testing.T) {
	gs := []int{1, 2}
	var rs []result
	for i, st := range []string{"cache", "fastcache"} {
		f := float64(i + 1)
		rs = append(rs,
			result{Store: st, Workload: "uniform", Entries: 1000, GetNs: map[string]float64{"1": 100 * f, "2": 60 * f},
				SetNs: map[string]float64{"1": 200 * f, "2": 120 * f}, HitRatio: 0.4 + f/10, RSSEntry: 600 * f},
			result{Store: st, Workload: "shift", Entries: 1_500_000, SetNs: map[string]float64{"1": 900}, Kept32K: 1, HitRatio: 0.99})
	}
	ordered := []result{rs[0], rs[2], rs[1], rs[3]} // by workload, as parent makes them
	dir := t.TempDir()
	index, err := writeReport(dir, "go run ./bench cache -entries 1000", ordered, gs, 100, 1, []byte(`{}`))
	require.NoError(t, err)
	page, err := os.ReadFile(index)
	require.NoError(t, err)
	for _, f := range []string{"uniform-1000-get.svg", "uniform-1000-set.svg", "hit-ratio.svg", "rss-per-entry.svg", "shift-kept.svg"} {
		_, err := os.Stat(filepath.Join(dir, f))
		assert.NoError(t, err, f)
		assert.Contains(t, string(page), `data-file="`+f+`"`)
	}
	assert.Equal(t, 5, strings.Count(string(page), "<svg"), "one inline plot per file")
	assert.Contains(t, string(page), "go run ./bench cache -entries 1000")
	assert.Contains(t, string(page), "get g=2", "the table of medians")
	_, err = os.Stat(filepath.Join(dir, "results.json"))
	assert.NoError(t, err)
	assert.Equal(t, [][]result{{rs[0], rs[2]}, {rs[1], rs[3]}}, groups(ordered))
}
