package alloc_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/brkmap/alloc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chunkReader hands out its data at most max bytes a Read, as a network
// body does.
type chunkReader struct {
	data []byte
	max  int
	err  error // returned instead of io.EOF at the end
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.max)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// shortWriter takes at most max bytes a Write and says nothing of the rest.
type shortWriter struct {
	got bytes.Buffer
	max int
}

func (w *shortWriter) Write(p []byte) (int, error) {
	n := min(len(p), w.max)
	w.got.Write(p[:n])
	return n, nil
}

// A Buffer behaves as a bytes.Buffer under a random sequence of writes,
// reads, drains, resets and frees, under every policy (so its growth goes
// through slab classes, page runs and mremap'd mappings).
func TestBufferModel(t *testing.T) {
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			a := newAlloc(t, alloc.Config{Policy: p})
			rng := rand.New(rand.NewPCG(1, uint64(p)))
			buf, err := a.NewBuffer(0)
			require.NoError(t, err)
			var model bytes.Buffer
			payload := func() []byte {
				n := rng.IntN(3000)
				if rng.IntN(20) == 0 {
					n = 100<<10 + rng.IntN(300<<10) // crosses the mmap threshold
				}
				b := make([]byte, n)
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				return b
			}
			for i := range 400 {
				op := rng.IntN(10)
				switch op {
				case 0, 1:
					d := payload()
					n, err := buf.Write(d)
					require.NoError(t, err)
					require.Equal(t, len(d), n)
					model.Write(d)
				case 2:
					d := string(payload())
					n, err := buf.WriteString(d)
					require.NoError(t, err)
					require.Equal(t, len(d), n)
					model.WriteString(d)
				case 3:
					c := byte(rng.Uint32())
					require.NoError(t, buf.WriteByte(c))
					model.WriteByte(c)
				case 4:
					d := payload()
					n, err := buf.ReadFrom(&chunkReader{data: d, max: 1 + rng.IntN(5000)})
					require.NoError(t, err)
					require.Equal(t, int64(len(d)), n)
					model.Write(d)
				case 5:
					w := &shortWriter{max: rng.IntN(model.Len() + 1)}
					n, err := buf.WriteTo(w)
					want := model.Next(w.max)
					require.Equal(t, int64(len(want)), n)
					require.True(t, bytes.Equal(want, w.got.Bytes()))
					if model.Len() > 0 {
						require.ErrorIs(t, err, io.ErrShortWrite)
					} else {
						require.NoError(t, err)
					}
				case 6:
					var w bytes.Buffer
					n, err := buf.WriteTo(&w)
					require.NoError(t, err)
					require.Equal(t, int64(model.Len()), n)
					require.True(t, bytes.Equal(model.Bytes(), w.Bytes()))
					model.Reset()
				case 7:
					g := rng.IntN(1 << 16)
					require.NoError(t, buf.Grow(g))
					require.GreaterOrEqual(t, buf.Cap()-buf.Len(), g, "Grow(%d) leaves that much room", g)
				case 8:
					if rng.IntN(3) == 0 {
						buf.Reset()
					} else {
						require.NoError(t, buf.Free())
						assert.Zero(t, buf.Cap())
					}
					model.Reset()
				case 9:
					// Bytes is the content, capped at its length
					bb := buf.Bytes()
					require.Equal(t, len(bb), cap(bb))
				}
				require.Equal(t, model.Len(), buf.Len(), "op %d (%d)", i, op)
				require.True(t, bytes.Equal(model.Bytes(), buf.Bytes()), "op %d (%d): content differs", i, op)
				require.GreaterOrEqual(t, buf.Cap(), buf.Len())
			}
			require.NoError(t, buf.Free())
			require.NoError(t, buf.Free(), "freeing an empty Buffer does nothing")
			assert.Zero(t, a.Stats().LiveBlocks, "the buffer's block is all it held")
		})
	}
}

// A large Buffer grows by mremap: its bytes are not copied, the mapping
// moves or grows in place.
func TestBufferGrowsWithMremap(t *testing.T) {
	a := newAlloc(t, alloc.Config{})
	buf, err := a.NewBuffer(1 << 20)
	require.NoError(t, err)
	defer func() { require.NoError(t, buf.Free()) }()
	before := a.Counters()
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	for buf.Len() < 32<<20 {
		_, err := buf.Write(chunk)
		require.NoError(t, err)
	}
	after := a.Counters()
	assert.Equal(t, uint64(1), after.MmapCount, "one mapping, grown")
	if after.Platform.Mremap {
		assert.Equal(t, before.Mmap, after.Mmap, "no new mapping: 1 MiB doubled to 32 MiB by mremap")
		assert.Equal(t, uint64(5), after.Mremap-before.Mremap, "1 → 2 → 4 → 8 → 16 → 32 MiB")
	} else {
		assert.Equal(t, uint64(5), after.Mmap-before.Mmap, "no mremap here: map, copy, unmap")
		assert.Zero(t, after.Mremap)
	}
	for i := 0; i < buf.Len(); i += len(chunk) {
		require.Equal(t, chunk, buf.Bytes()[i:i+len(chunk)])
	}
}

// The zero Buffer takes its memory from Default.
func TestBufferZeroValue(t *testing.T) {
	var buf alloc.Buffer
	assert.Zero(t, buf.Len())
	assert.Empty(t, buf.Bytes())
	require.NoError(t, buf.Free())
	live := alloc.Default().Stats().LiveBlocks
	_, err := buf.WriteString("hello, ")
	require.NoError(t, err)
	_, err = fmt.Fprintf(&buf, "%s", "world")
	require.NoError(t, err)
	assert.Equal(t, "hello, world", string(buf.Bytes()))
	assert.Equal(t, live+1, alloc.Default().Stats().LiveBlocks)
	require.NoError(t, buf.Free())
	assert.Equal(t, live, alloc.Default().Stats().LiveBlocks)
}

// A write the allocator cannot serve fails with its error and leaves the
// content as it was; so do a closed allocator and bad arguments.
func TestBufferErrors(t *testing.T) {
	a := newAlloc(t, alloc.Config{Limit: 1 << 20})
	buf, err := a.NewBuffer(100)
	require.NoError(t, err)
	_, err = buf.WriteString("kept")
	require.NoError(t, err)

	n, err := buf.Write(make([]byte, 2<<20))
	assert.ErrorIs(t, err, alloc.ErrOutOfMemory)
	assert.Zero(t, n)
	assert.Equal(t, "kept", string(buf.Bytes()))

	rn, err := buf.ReadFrom(io.LimitReader(zeros{}, 2<<20))
	assert.ErrorIs(t, err, alloc.ErrOutOfMemory)
	assert.Equal(t, rn, int64(buf.Len()-4), "what was read before the failure stays")
	assert.Equal(t, "kept", string(buf.Bytes()[:4]))

	assert.ErrorIs(t, buf.Grow(-1), alloc.ErrInvalidSize)
	_, err = a.NewBuffer(-1)
	assert.ErrorIs(t, err, alloc.ErrInvalidSize)
	_, err = a.NewBuffer(2 << 20)
	assert.ErrorIs(t, err, alloc.ErrOutOfMemory)

	boom := errors.New("boom")
	buf.Reset()
	_, err = buf.WriteString("abc")
	require.NoError(t, err)
	rn, err = buf.ReadFrom(&chunkReader{data: []byte("def"), max: 2, err: boom})
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, int64(3), rn)
	assert.Equal(t, "abcdef", string(buf.Bytes()))
	wn, err := buf.WriteTo(failWriter{boom})
	assert.ErrorIs(t, err, boom)
	assert.Zero(t, wn)
	assert.Equal(t, "abcdef", string(buf.Bytes()), "nothing taken, nothing drained")

	require.NoError(t, buf.Free())
	require.NoError(t, a.Close())
	_, err = buf.WriteString("x")
	assert.ErrorIs(t, err, alloc.ErrClosed)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

// Bytes drained from the front are reclaimed before the buffer grows.
func TestBufferSlidesBeforeGrowing(t *testing.T) {
	a := newAlloc(t, alloc.Config{})
	buf, err := a.NewBuffer(1000)
	require.NoError(t, err)
	defer func() { require.NoError(t, buf.Free()) }()
	c := buf.Cap()
	_, err = buf.WriteString(strings.Repeat("a", c))
	require.NoError(t, err)
	w := &shortWriter{max: c - 10}
	_, err = buf.WriteTo(w)
	require.ErrorIs(t, err, io.ErrShortWrite)
	_, err = buf.WriteString(strings.Repeat("b", 100))
	require.NoError(t, err)
	assert.Equal(t, c, buf.Cap(), "10 bytes left: they slide down, no growth")
	assert.Equal(t, strings.Repeat("a", 10)+strings.Repeat("b", 100), string(buf.Bytes()))
}
