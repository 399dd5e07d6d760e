//go:build brkmap_nochecks

package alloctest

// Checks is false: -tags brkmap_nochecks compiled the always-on checks
// out (see checks.go).
const Checks = false
