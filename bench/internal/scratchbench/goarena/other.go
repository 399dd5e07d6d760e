//go:build !goexperiment.arenas

package main

import (
	"fmt"
	"os"
)

// Without GOEXPERIMENT=arenas there is no arena package to measure.
func main() {
	fmt.Fprintln(os.Stderr, "goarena: build with GOEXPERIMENT=arenas")
	os.Exit(2)
}
