package alloctest

// Fill writes a block's own pattern: every byte depends on the block's
// seed and its offset, so a write through any other block (an overlap, a
// use after free, a stray write past an end) shows in Intact.
func Fill(b []byte, seed uint32) {
	for i := range b {
		b[i] = Pattern(seed, i)
	}
}

// Pattern is the byte Fill writes at offset i of a block seeded seed.
func Pattern(seed uint32, i int) byte { return byte(seed*0x9e3779b1>>24) ^ byte(i) ^ byte(i>>8) }

// Intact returns the first offset of b whose byte is not the pattern
// Fill(b, seed) wrote, or -1 if every byte is.
func Intact(b []byte, seed uint32) int {
	for i := range b {
		if b[i] != Pattern(seed, i) {
			return i
		}
	}
	return -1
}
