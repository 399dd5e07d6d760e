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
	} {
		_, err := parseTrace(strings.NewReader(bad))
		assert.Error(t, err, name)
	}
}
