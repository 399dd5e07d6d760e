package stats

import (
	"bytes"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/google/pprof/profile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeMalloc stands for the allocator's entry point, which Hide cuts.
//
//go:noinline
func fakeMalloc() []uintptr {
	pcs := make([]uintptr, 32)
	return pcs[:runtime.Callers(1, pcs)]
}

//go:noinline
func allocatingFunction() []uintptr { return fakeMalloc() }

//go:noinline
func otherAllocatingFunction() []uintptr { return fakeMalloc() }

func hideFake(fn string) bool { return strings.HasSuffix(fn, ".fakeMalloc") }

func testProfile() *HeapProfile {
	return &HeapProfile{
		Rate: DefaultProfileRate,
		Records: []HeapRecord{
			{AllocObjects: 10, AllocBytes: 10 * 4096, FreeObjects: 4, FreeBytes: 4 * 4096, Stack: allocatingFunction()},
			{AllocObjects: 3, AllocBytes: 3 << 20, Stack: otherAllocatingFunction()},
		},
		Hide: hideFake,
	}
}

// The profile parses back with the Go heap profile's sample types, names
// the allocating functions at the leaves (the allocator's frame cut), and
// carries scaled estimates.
func TestHeapProfileParses(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, testProfile().Write(&buf))
	p, err := profile.Parse(&buf)
	require.NoError(t, err)
	require.NoError(t, p.CheckValid())

	var types []string
	for _, st := range p.SampleType {
		types = append(types, st.Type+"/"+st.Unit)
	}
	assert.Equal(t, []string{"alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes"}, types)
	assert.Equal(t, "inuse_space", p.DefaultSampleType)
	assert.Equal(t, int64(DefaultProfileRate), p.Period)
	require.Len(t, p.Sample, 2)

	leaf := func(s *profile.Sample) string {
		l := s.Location[0].Line
		return l[len(l)-1].Function.Name // outermost line of the leaf location
	}
	assert.True(t, strings.HasSuffix(leaf(p.Sample[0]), ".allocatingFunction"), leaf(p.Sample[0]))
	assert.True(t, strings.HasSuffix(leaf(p.Sample[1]), ".otherAllocatingFunction"), leaf(p.Sample[1]))
	for _, f := range p.Function {
		assert.NotContains(t, f.Name, "fakeMalloc", "the allocator's frame is cut")
	}

	// 4 KiB blocks at a 512 KiB rate: each sampled one stands for
	// 1/(1-exp(-1/128)) ≈ 128.5 blocks.
	sc := 1 / (1 - math.Exp(-4096.0/DefaultProfileRate))
	v := p.Sample[0].Value
	assert.Equal(t, int64(10*sc), v[0])
	assert.Equal(t, int64(10*4096*sc), v[1])
	assert.Equal(t, int64(6*sc), v[2])
	assert.Equal(t, int64(6*4096*sc), v[3])
	assert.Equal(t, []int64{4096}, p.Sample[0].NumLabel["bytes"])
	// 1 MiB blocks are sampled almost surely: scale ≈ 1.16.
	assert.Equal(t, int64(3*(1/(1-math.Exp(-2)))), p.Sample[1].Value[0])
}

// Rate 1 records every allocation and scales nothing.
func TestHeapProfileUnsampled(t *testing.T) {
	h := testProfile()
	h.Rate = 1
	v := h.Profile().Sample[0].Value
	assert.Equal(t, []int64{10, 10 * 4096, 6, 6 * 4096}, v)
}

// scale is runtime/pprof's scaleHeapSample.
func TestScale(t *testing.T) {
	for _, c := range []struct{ count, size, rate, wantN, wantB int64 }{
		{0, 0, 512 << 10, 0, 0},
		{5, 500, 1, 5, 500},
		{5, 500, 0, 5, 500},
		{1, 512 << 10, 512 << 10, 1, 829411}, // 524288 / (1-1/e) = 524288 × 1.5819767
	} {
		n, b := scale(c.count, c.size, c.rate)
		assert.Equal(t, c.wantN, n, "%+v", c)
		assert.Equal(t, c.wantB, b, "%+v", c)
	}
}

// The text format has Go's header and the symbolized stacks, largest in
// use first.
func TestHeapProfileText(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, testProfile().WriteText(&buf))
	out := buf.String()
	assert.True(t, strings.HasPrefix(out, "heap profile: "), out)
	assert.Contains(t, out, "@ heap/1048576\n")
	i, j := strings.Index(out, ".otherAllocatingFunction+"), strings.Index(out, ".allocatingFunction+")
	require.Positive(t, i, out)
	require.Positive(t, j, out)
	assert.Less(t, i, j, "3 MiB in use sorts before 24 KiB")
	assert.NotContains(t, out, "fakeMalloc")
}
