package alloc

import (
	"fmt"

	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/brkmap/alloc/slab"
)

// ConfigOf turns one of the shared test variants into a Config. It is in a
// test file of package alloc so that both the internal tests and the
// external ones (package alloc_test) can call it.
func ConfigOf(v alloctest.Variant) Config {
	c := Config{
		DynamicThreshold: v.DynamicThreshold,
		MmapThreshold:    v.MmapThreshold,
		TrimThreshold:    v.TrimThreshold,
		TopPad:           v.TopPad,
		Debug:            v.Debug,
		ColdBlocks:       v.ColdBlocks,
	}
	if v.Policy != "" {
		c.Policy = policyNamed(v.Policy)
	}
	if v.HugePages != "" {
		c.HugePages = hugePagesNamed(v.HugePages)
	}
	switch v.Purge {
	case "":
	case "never":
		c.PurgeDelay = PurgeNever
	case "immediately":
		c.PurgeDelay = PurgeImmediately
	default:
		panic(fmt.Sprintf("alloctest: no purge setting %q", v.Purge))
	}
	return c
}

func policyNamed(name string) Policy {
	for _, p := range []Policy{PolicyThreshold, PolicyBrk, PolicyMmap} {
		if p.String() == name {
			return p
		}
	}
	panic(fmt.Sprintf("alloctest: no policy %q", name))
}

func hugePagesNamed(name string) HugePages {
	for _, h := range []HugePages{HugePagesOff, HugePagesLarge, HugePagesAll} {
		if h.String() == name {
			return h
		}
	}
	panic(fmt.Sprintf("alloctest: no huge page setting %q", name))
}

// FirstSlabBlocks returns how many blocks of size bytes a first slab of
// their class holds (for package alloc_test: coldClass's rule).
func FirstSlabBlocks(a *Allocator, size int) int {
	return a.slabs.FirstBlocks(slab.SizeClass(uintptr(size)))
}
