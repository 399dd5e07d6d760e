package harness

import (
	"bytes"
	"encoding/binary"
)

// Tag is the 8-byte pattern that fills block id: distinct for every id
// (an odd multiplier is a bijection), so a block overwritten by another
// one fails its check.
func Tag(id int32) uint64 { return (uint64(id) + 1) * 0x9e3779b97f4a7c15 }

// Fill writes b[from:] with the repeated tag, each byte at its place in
// the pattern as if the whole block had been filled from its start.
func Fill(b []byte, tg uint64, from int) {
	i := from
	for ; i < len(b) && i%8 != 0; i++ {
		b[i] = byte(tg >> (8 * (i % 8)))
	}
	start, end := i, min(len(b), i+64)
	for ; i+8 <= end; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], tg)
	}
	for ; i < end; i++ {
		b[i] = byte(tg >> (8 * (i % 8)))
	}
	for i < len(b) { // double what is filled: memmove speed
		i += copy(b[i:], b[start:i])
	}
}

// Check reports whether b holds the repeated tag from its start: the first
// 64 bytes word by word, then the rest against the block shifted by 64
// bytes (one memcmp, so a large block checks at memory speed).
func Check(b []byte, tg uint64) bool {
	i := 0
	for ; i+8 <= len(b) && i < 64; i += 8 {
		if binary.LittleEndian.Uint64(b[i:]) != tg {
			return false
		}
	}
	if len(b) < 64 {
		for ; i < len(b); i++ {
			if b[i] != byte(tg>>(8*(i%8))) {
				return false
			}
		}
		return true
	}
	return bytes.Equal(b[64:], b[:len(b)-64])
}
