package alloctest

// Variant is one configuration the tests run the allocator under, in
// plain values so that this package need not import the allocator: the
// root package's tests turn it into an alloc.Config (alloc.ConfigOf).
type Variant struct {
	Name             string
	Policy           string // "threshold" (the default), "brk" or "mmap": Policy.String()
	DynamicThreshold bool
	MmapThreshold    int
	TrimThreshold    int
	TopPad           int
	Debug            bool
	HugePages        string // "" (off), "large" or "all": HugePages.String()
	Purge            string // "" (the default delay), "never" or "immediately"
	ColdBlocks       int    // Config.ColdBlocks
}

// Plain reports whether v is one of the plain variants: no Debug, no huge
// pages. The kernel-failure suites count system calls, so they run only
// these.
func (v Variant) Plain() bool { return !v.Debug && v.HugePages == "" }

// Variants is every configuration the model and the fuzzer run under: each
// policy, the sliding threshold, a low threshold (so that mid-size blocks
// are mapped and the break moves often), Debug, and huge pages (where the
// kernel gives them; elsewhere those rows are the plain ones again), and
// small classes all in the best-fit heap (cold-all: every class cold,
// glibc's way) or all on their slabs from their first block (cold-none).
var Variants = []Variant{
	{Name: "default"}, // Config{}: glibc's sliding threshold, the default purge
	{Name: "threshold", MmapThreshold: 128 << 10},
	{Name: "brk", Policy: "brk"},
	{Name: "mmap", Policy: "mmap"},
	{Name: "dynamic", DynamicThreshold: true},
	{Name: "low-threshold", MmapThreshold: 8 << 10, TrimThreshold: 16 << 10, TopPad: -1},
	{Name: "debug", Debug: true},
	{Name: "debug-mmap", Debug: true, Policy: "mmap"},
	{Name: "huge-large", HugePages: "large"},
	{Name: "huge-all", HugePages: "all", TrimThreshold: 16 << 10, TopPad: -1},
	{Name: "huge-all-brk", HugePages: "all", Policy: "brk"},
	{Name: "purge-now", Purge: "immediately"},
	{Name: "purge-never", Purge: "never"},
	{Name: "cold-all", ColdBlocks: AllCold},
	{Name: "cold-none", ColdBlocks: -1},
}

// AllCold is a Config.ColdBlocks that keeps every small class cold for
// good: every small block from the best-fit heap.
const AllCold = 1 << 30

// VariantNamed returns the variant called name; it panics on a name not in
// Variants (a test's typo).
func VariantNamed(name string) Variant {
	for _, v := range Variants {
		if v.Name == name {
			return v
		}
	}
	panic("alloctest: no variant " + name)
}
