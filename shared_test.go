package alloc_test

import (
	"runtime"
	"testing"

	"github.com/brkmap/alloc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewShared(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("memfd is Linux's")
	}
	p, err := alloc.NewShared(1 << 20)
	require.NoError(t, err)
	defer p.Close()
	r, b, err := p.Alloc(100)
	require.NoError(t, err)
	copy(b, "shared")
	got, err := p.Bytes(r)
	require.NoError(t, err)
	assert.Equal(t, "shared", string(got[:6]))
	require.NoError(t, p.Free(r))
	assert.ErrorIs(t, p.Free(r), alloc.ErrDoubleFree)
	assert.ErrorIs(t, p.Free(r+8), alloc.ErrInvalidFree)
}
