package replay

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseTrace(t *testing.T) {
	four := "20000\n3\n5\n1\na 0 100\na 1 0\nr 0 300\nf 1\na 2 200000\n"
	tr, err := parseTrace(strings.NewReader(four))
	require.NoError(t, err)
	assert.Equal(t, []uint64{20000, 3, 5, 1}, tr.header)
	assert.Equal(t, 3, tr.ids)
	assert.Equal(t, []op{{100, 0, 'a'}, {0, 1, 'a'}, {300, 0, 'r'}, {0, 1, 'f'}, {200000, 2, 'a'}}, tr.ops)

	two := "3\n5\n\na 0 100\na 1 0\nr 0 300\nf 1\na 2 200000\n"
	tr2, err := parseTrace(strings.NewReader(two))
	require.NoError(t, err, "a two-line header (and a blank line) is accepted")
	assert.Equal(t, []uint64{3, 5}, tr2.header)
	assert.Equal(t, tr.ops, tr2.ops)

	for name, bad := range map[string]string{
		"free of a dead id":  "1\n1\na 0 1\nf 0\nf 0\n",
		"double allocation":  "1\n1\na 0 1\na 0 2\n",
		"unknown operation":  "1\n1\nx 0 1\n",
		"missing size":       "1\n1\na 0\n",
		"negative size":      "1\n1\na 0 -5\n",
		"three header lines": "1\n1\n1\na 0 1\n",
		"no operations":      "1\n1\n",
		"number after ops":   "1\n1\na 0 1\n7\n",
		// issue 11, item 17: the child sized its table by this id (48 GiB)
		"id beyond the header's count (four lines)": "20000\n3\n5\n1\na 0 1\na 2147483000 8\n",
		"id beyond the header's count (two lines)":  "3\n5\na 3 1\n",
	} {
		_, err := parseTrace(strings.NewReader(bad))
		assert.Error(t, err, name)
	}
	// a line past the scanner's buffer names its line
	long := "1\n2\na 0 1\n" + strings.Repeat("9", 2<<20) + "\n"
	_, err = parseTrace(strings.NewReader(long))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "line 4")
}

// TestLivePeak: the operation after which the live bytes are highest,
// allocations, reallocations and frees counted by the sizes asked for.
func TestLivePeak(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"a 0 10\na 1 20\nf 0\na 2 5\n", 1},
		{"a 0 10\nr 0 40\nf 0\na 1 39\n", 1},
		{"a 0 10\nf 0\na 1 10\n", 0}, // the first of equals
		{"a 0 0\nf 0\n", -1},
	} {
		tr, err := parseTrace(strings.NewReader("3\n5\n\n" + tc.in))
		require.NoError(t, err)
		assert.Equal(t, tc.want, tr.livePeak(), "%q", tc.in)
	}
}
