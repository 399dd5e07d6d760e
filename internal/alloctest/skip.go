package alloctest

import "testing"

// RequireChecks skips a test that frees bad pointers on purpose, or damages
// a free list, when the build has the always-on checks compiled out: there,
// a bad free corrupts the heap, as the brkmap_nochecks build warns.
func RequireChecks(t testing.TB) {
	t.Helper()
	if !Checks {
		t.Skip("built with -tags brkmap_nochecks: bad frees are not checked")
	}
}
