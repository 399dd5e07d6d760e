package cache

import (
	"bytes"
	"testing"
	"time"
)

// addrOf returns the block address of key k's entry, or 0.
func addrOf(c *Cache, k []byte) uint64 {
	h := c.hash(k)
	s := c.shardOf(h)
	s.mu.RLock()
	defer s.mu.RUnlock()
	addr, _ := s.find(h, k, 0)
	return addr
}

// A Set of a key whose block's size class holds the new entry rewrites
// the block in place (no Malloc, no Free), moves the entry to the ring's
// tail with no reads counted, and reads back right — also when the TTL
// field comes or goes and the key moves within the block. A value of
// another class takes a new block.
func TestSetRewritesInPlace(t *testing.T) {
	now := time.Unix(1000, 0)
	c, err := New(1<<20, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	k := []byte("the key")
	c.Set(k, bytes.Repeat([]byte{'a'}, 100))
	c.Set([]byte("other"), []byte("x"))
	first := addrOf(c, k)
	c.Get(nil, k) // one read counted
	live := c.a.Stats().LiveBlocks

	c.Set(k, bytes.Repeat([]byte{'b'}, 101))
	if got := addrOf(c, k); got != first {
		t.Fatalf("same class: the entry moved from %#x to %#x", first, got)
	}
	if got := c.a.Stats().LiveBlocks; got != live {
		t.Fatalf("live blocks %d, want %d", got, live)
	}
	if got := c.Get(nil, k); !bytes.Equal(got, bytes.Repeat([]byte{'b'}, 101)) {
		t.Fatalf("read %q", got)
	}
	s := c.shardOf(c.hash(k))
	e := hdrAt(first)
	if e.seq() != (s.tail-1)&seqMask || s.ring[int(s.tail-1)&(len(s.ring)-1)] == 0 {
		t.Fatalf("the rewritten entry is not at the ring's tail (seq %d, tail %d)", e.seq(), s.tail)
	}
	if e.meta&metaReads != 1 { // the Get above, after the rewrite reset them
		t.Fatalf("reads %d after one Get", e.meta&metaReads)
	}

	c.SetWithTTL(k, bytes.Repeat([]byte{'c'}, 96), time.Second) // +8 bytes of expiry, same class
	if got := addrOf(c, k); got != first {
		t.Fatalf("TTL added: the entry moved")
	}
	if got := c.Get(nil, k); !bytes.Equal(got, bytes.Repeat([]byte{'c'}, 96)) {
		t.Fatalf("read %q after adding a TTL", got)
	}
	now = now.Add(2 * time.Second)
	if c.Has(k) {
		t.Fatal("the rewritten entry's TTL is not kept")
	}
	c.Set(k, []byte("short"))
	if got := c.Get(nil, k); string(got) != "short" {
		t.Fatalf("read %q", got)
	}
	if st := c.Stats(); st.Entries != 2 || st.Bytes > st.MaxBytes {
		t.Fatalf("stats %+v", st)
	}
	if addrOf(c, k) == first && c.a.BlockSize(entryLen(len(k), 5, false)) != c.a.BlockSize(entryLen(len(k), 96, true)) {
		t.Fatal("another size class kept the old block")
	}
}
