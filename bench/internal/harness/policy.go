package harness

import (
	"errors"
	"fmt"
	"os"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/internal/libc"
)

// Policy is one way of serving requests, compared side by side with the
// others.
type Policy struct {
	Name  string
	Cfg   alloc.Config
	Libc  bool // glibc's malloc through cgo instead of this allocator
	About string
}

// Policies are the policies -policy chooses from, in the order of every
// table.
var Policies = []Policy{
	{Name: "threshold", Cfg: alloc.Config{MmapThreshold: alloc.DefaultMmapThreshold},
		About: "glibc's policy with the threshold pinned at 128 KiB: small from the region, large in their own mappings"},
	{Name: "dynamic", Cfg: alloc.Config{DynamicThreshold: true},
		About: "the same with glibc's sliding threshold (the zero Config's default): freeing a mapped block raises the threshold to its size"},
	{Name: "brk", Cfg: alloc.Config{Policy: alloc.PolicyBrk},
		About: "everything from the brk-like region"},
	{Name: "mmap", Cfg: alloc.Config{Policy: alloc.PolicyMmap},
		About: "every block its own mapping"},
	{Name: "libc", Libc: true,
		About: "glibc's malloc through cgo, with its defaults (sliding threshold on); resident is the process's RSS growth"},
}

// PolicyNames returns the names accepted by -policy, "all" last.
func PolicyNames() []string {
	var names []string
	for _, p := range Policies {
		names = append(names, p.Name)
	}
	return append(names, "all")
}

// SelectPolicies returns the policies that name selects ("all": every one).
func SelectPolicies(name string) ([]Policy, error) {
	if name == "all" {
		return Policies, nil
	}
	for _, p := range Policies {
		if p.Name == name {
			return []Policy{p}, nil
		}
	}
	return nil, fmt.Errorf("unknown policy %q (want one of %v)", name, PolicyNames())
}

// ErrLibcMissing says why the libc policy is skipped.
var ErrLibcMissing = errors.New("the libc policy needs cgo (this binary was built with CGO_ENABLED=0): skipped")

// DropLibcIfMissing removes the libc policy when this binary has no cgo,
// saying so.
func DropLibcIfMissing(ps []Policy) []Policy {
	if libc.Available {
		return ps
	}
	var kept []Policy
	for _, p := range ps {
		if p.Libc {
			Warn("%v", ErrLibcMissing)
			continue
		}
		kept = append(kept, p)
	}
	return kept
}

// Warn prints a warning of the bench command on stderr.
func Warn(format string, args ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...) }
