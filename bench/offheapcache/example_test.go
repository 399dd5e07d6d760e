package offheapcache_test

import (
	"fmt"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/offheapcache"
)

// A cache of at most 64 MiB whose values the garbage collector never sees.
func Example() {
	c, err := offheapcache.New(alloc.Config{Limit: 64 << 20})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	if err := c.Set([]byte("user:42"), []byte(`{"name":"Ada"}`)); err != nil {
		panic(err)
	}
	buf := make([]byte, 0, 256) // reused for every Get
	buf, ok := c.Get([]byte("user:42"), buf[:0])
	fmt.Println(ok, string(buf))

	c.Delete([]byte("user:42")) // frees the value
	_, ok = c.Get([]byte("user:42"), buf[:0])
	fmt.Println(ok, c.Len(), c.Allocator().Stats().LiveBlocks)
	// Output:
	// true {"name":"Ada"}
	// false 0 0
}
