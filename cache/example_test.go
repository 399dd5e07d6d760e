package cache_test

import (
	"fmt"
	"time"

	"github.com/brkmap/alloc/cache"
)

func Example() {
	c, err := cache.New(64 << 20) // 64 MiB of entries and index
	if err != nil {
		panic(err)
	}
	defer c.Close()

	c.Set([]byte("user:42"), []byte(`{"name":"Ada"}`))
	buf := c.Get(nil, []byte("user:42")) // appends to the buffer given
	fmt.Printf("%s\n", buf)

	buf, ok := c.HasGet(buf[:0], []byte("user:43"))
	fmt.Println(len(buf), ok)
	// Output:
	// {"name":"Ada"}
	// 0 false
}

func ExampleCache_SetWithTTL() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c, err := cache.New(1<<20, cache.WithClock(func() time.Time { return now }))
	if err != nil {
		panic(err)
	}
	defer c.Close()

	c.SetWithTTL([]byte("session"), []byte("token"), time.Minute)
	fmt.Println(c.Has([]byte("session")))
	now = now.Add(time.Minute)
	fmt.Println(c.Has([]byte("session")))
	// Output:
	// true
	// false
}

func ExampleCache_GetOrSet() {
	c, err := cache.New(1 << 20)
	if err != nil {
		panic(err)
	}
	defer c.Close()

	v, found := c.GetOrSet(nil, []byte("k"), []byte("first"))
	fmt.Printf("%s %v\n", v, found)
	v, found = c.GetOrSet(v[:0], []byte("k"), []byte("second"))
	fmt.Printf("%s %v\n", v, found)
	// Output:
	// first false
	// first true
}

func ExampleCache_Set_big() {
	c, err := cache.New(64 << 20)
	if err != nil {
		panic(err)
	}
	defer c.Close()

	big := make([]byte, 5<<20) // stored in chunks, read back whole
	big[len(big)-1] = 7
	c.Set([]byte("blob"), big)
	got := c.Get(nil, []byte("blob"))
	fmt.Println(len(got), got[len(got)-1])
	// Output:
	// 5242880 7
}

func ExampleCache_Stats() {
	c, err := cache.New(1 << 20)
	if err != nil {
		panic(err)
	}
	defer c.Close()

	c.Set([]byte("a"), []byte("1"))
	c.Get(nil, []byte("a"))
	c.Get(nil, []byte("b"))
	st := c.Stats()
	fmt.Println(st.Entries, st.Hits, st.Misses, st.Bytes <= st.MaxBytes)
	// Output:
	// 1 1 1 true
}
