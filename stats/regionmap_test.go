package stats

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRegionMapAdd(t *testing.T) {
	var m RegionMap
	m.Add(4096, PageLive)
	m.Add(8192, PageLive)
	m.Add(0, PageTrapped)
	m.Add(4096, PageTrapped)
	m.Add(4096, PageReleased)
	m.Add(4096, PageLive)
	assert.Equal(t, []Extent{
		{0, 12288, PageLive}, {12288, 4096, PageTrapped}, {16384, 4096, PageReleased}, {20480, 4096, PageLive},
	}, m.Extents)
	assert.Equal(t, uint64(24576), m.Break)
	assert.Equal(t, uint64(16384), m.Bytes(PageLive))
	assert.Equal(t, uint64(4096), m.Trapped())
	assert.Equal(t, "trapped", PageTrapped.String())
}
