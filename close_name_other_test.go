//go:build !linux

package alloc

// nameMapping: naming a mapping is Linux's (prctl PR_SET_VMA); elsewhere
// the test falls back to comparing the mappings before and after Close.
func nameMapping(p, n uintptr) bool { return false }
