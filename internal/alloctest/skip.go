package alloctest

// Skipper is what RequireChecks needs of a test: *testing.T and
// *testing.B have these methods. (An interface, not testing.TB, so that
// this package does not import testing: the bench's soak drives the model
// from a command.)
type Skipper interface {
	Helper()
	Skip(args ...any)
}

// RequireChecks skips a test that frees bad pointers on purpose, or damages
// a free list, when the build has the always-on checks compiled out: there,
// a bad free corrupts the heap, as the brkmap_nochecks build warns.
func RequireChecks(t Skipper) {
	t.Helper()
	if !Checks {
		t.Skip("built with -tags brkmap_nochecks: bad frees are not checked")
	}
}
