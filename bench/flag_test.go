package main

import "flag"

// flagValue returns the value of a command-line flag of the test binary,
// or "" if it is not defined.
func flagValue(name string) string {
	if f := flag.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}
