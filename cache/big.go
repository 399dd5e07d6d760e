package cache

import (
	"encoding/binary"
)

// Big values. An entry whose block would be larger than chunkBlock is
// stored as chunks, as fastcache's SetBig does but behind the same Set and
// Get: the value is cut into pieces of chunkData bytes, each stored as an
// entry of its own under an internal key (the value's id and the piece's
// number, in the chunk namespace no caller's key can reach), spread over
// the shards by hash like any key; the caller's key holds a descriptor
// (the id and the length). Every id is new, so the chunks of a value are
// never overwritten: a Get that finds all of them has the whole value,
// one that misses any (evicted by its shard's hand) is a miss. Replacing
// or deleting a big value deletes its chunks; an evicted descriptor's
// chunks are no longer read and age out of their rings.
const (
	chunkBlock   = 16 << 10 // a chunk's block: a slab size class
	chunkKeyLen  = 16
	chunkData    = chunkBlock - headerSize - chunkKeyLen
	descriptorSz = 16
)

type descriptor struct {
	id   uint64
	size uint64
}

func (d *descriptor) decode(b []byte) {
	d.id = binary.LittleEndian.Uint64(b)
	d.size = binary.LittleEndian.Uint64(b[8:])
}

func (d descriptor) encode() [descriptorSz]byte {
	var b [descriptorSz]byte
	binary.LittleEndian.PutUint64(b[:], d.id)
	binary.LittleEndian.PutUint64(b[8:], d.size)
	return b
}

func (d descriptor) chunks() int { return int((d.size + chunkData - 1) / chunkData) }

func (d descriptor) key(i int) [chunkKeyLen]byte {
	var b [chunkKeyLen]byte
	binary.LittleEndian.PutUint64(b[:], d.id)
	binary.LittleEndian.PutUint64(b[8:], uint64(i))
	return b
}

// setBig stores v in chunks, then the descriptor under k.
func (c *Cache) setBig(k, v []byte, expire int64) {
	d := descriptor{id: c.bigID.Add(1), size: uint64(len(v))}
	for i := range d.chunks() {
		ck := d.key(i)
		off := i * chunkData
		c.store(ck[:], v[off:min(off+chunkData, len(v))], metaChunk, 0, false)
	}
	b := d.encode()
	c.store(k, b[:], metaBig, expire, false)
}

// getBig appends the chunks of d to dst; on a missing chunk it returns
// dst as it was, and false. s is the shard of the descriptor, which counts
// the hit or the miss.
func (c *Cache) getBig(dst []byte, s *shard, d descriptor) ([]byte, bool) {
	n := len(dst)
	for i := range d.chunks() {
		ck := d.key(i)
		h := c.hash(ck[:])
		cs := c.shardOf(h)
		cs.mu.RLock()
		addr, _ := cs.find(h, ck[:], metaChunk)
		if addr == 0 {
			cs.mu.RUnlock()
			s.misses.Add(1)
			return dst[:n], false
		}
		e := hdrAt(addr)
		touch(e)
		dst = append(dst, e.value()...)
		cs.mu.RUnlock()
	}
	if uint64(len(dst)-n) != d.size {
		s.misses.Add(1)
		return dst[:n], false
	}
	s.hits.Add(1)
	return dst, true
}

func (c *Cache) hasChunks(d descriptor) bool {
	for i := range d.chunks() {
		ck := d.key(i)
		h := c.hash(ck[:])
		cs := c.shardOf(h)
		cs.mu.RLock()
		addr, _ := cs.find(h, ck[:], metaChunk)
		if addr != 0 {
			touch(hdrAt(addr))
		}
		cs.mu.RUnlock()
		if addr == 0 {
			return false
		}
	}
	return true
}

// delChunks deletes the chunks of a replaced or deleted big value.
func (c *Cache) delChunks(d descriptor) {
	for i := range d.chunks() {
		ck := d.key(i)
		h := c.hash(ck[:])
		cs := c.shardOf(h)
		cs.mu.Lock()
		if addr, j := cs.find(h, ck[:], metaChunk); addr != 0 {
			cs.deleteAt(j)
			c.drop(cs, addr)
		}
		cs.mu.Unlock()
	}
}
