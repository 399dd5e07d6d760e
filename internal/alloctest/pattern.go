package alloctest

import "unsafe"

// Fill writes a block's own pattern, eight bytes at a time: every word
// depends on the block's seed (through a 64-bit key) and its offset, so a
// write through any other block (an overlap, a use after free, a stray
// write past an end) shows in Intact.
func Fill(b []byte, seed uint32) {
	k := key(seed)
	i := 0
	for ; i+8 <= len(b); i += 8 {
		*(*uint64)(unsafe.Pointer(&b[i])) = k ^ uint64(i)
	}
	for ; i < len(b); i++ {
		b[i] = patternByte(k, i)
	}
}

// Pattern is the byte Fill writes at offset i of a block seeded seed.
func Pattern(seed uint32, i int) byte { return patternByte(key(seed), i) }

// Intact returns the first offset of b whose byte is not the pattern
// Fill(b, seed) wrote, or -1 if every byte is.
func Intact(b []byte, seed uint32) int {
	k := key(seed)
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if *(*uint64)(unsafe.Pointer(&b[i])) != k^uint64(i) {
			break
		}
	}
	for ; i < len(b); i++ {
		if b[i] != patternByte(k, i) {
			return i
		}
	}
	return -1
}

// key spreads a seed over 64 bits (Fibonacci hashing).
func key(seed uint32) uint64 { return uint64(seed) * 0x9e3779b97f4a7c15 }

// patternByte is byte i of the pattern: byte i%8 of the (little-endian)
// word at i&^7, so a prefix of a block checks the same bytes the words
// wrote.
func patternByte(k uint64, i int) byte { return byte((k ^ uint64(i&^7)) >> (8 * (i & 7))) }
