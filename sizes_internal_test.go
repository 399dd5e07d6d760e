package alloc

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/fit"
	"github.com/brkmap/alloc/slab"
)

// TestFitSizeTable: the table Malloc's fast path reads says, for every
// size, what comparing the class's block with the heap's chunk says.
func TestFitSizeTable(t *testing.T) {
	for n := uintptr(fit.MinRequest); n <= slab.MaxSize; n++ {
		require.Equal(t, slab.ClassSize(int(slab.ClassOf(n))) > fit.BlockSize(n), fitSize[(n+7)>>3], "%d bytes", n)
	}
}
