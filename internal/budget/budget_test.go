package budget

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestBudget(t *testing.T) {
	type step struct {
		take, give uintptr
		ok         bool
		used       uint64
	}
	tests := []struct {
		name  string
		limit uint64
		steps []step
	}{
		{"unlimited", 0, []step{{take: 1 << 40, ok: true, used: 1 << 40}, {take: 1 << 40, ok: true, used: 2 << 40}, {give: 1 << 40, used: 1 << 40}}},
		{"up to the limit", 100, []step{{take: 60, ok: true, used: 60}, {take: 41, ok: false, used: 60}, {take: 40, ok: true, used: 100}, {take: 1, ok: false, used: 100}}},
		{"give makes room", 100, []step{{take: 100, ok: true, used: 100}, {give: 30, used: 70}, {take: 30, ok: true, used: 100}}},
		{"a take of zero always fits", 10, []step{{take: 10, ok: true, used: 10}, {take: 0, ok: true, used: 10}}},
		{"overflow is refused", ^uint64(0), []step{{take: 10, ok: true, used: 10}, {take: ^uintptr(0), ok: false, used: 10}, {take: ^uintptr(0) - 10, ok: true, used: ^uint64(0)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.limit)
			assert.Equal(t, tt.limit, b.Limit())
			for i, s := range tt.steps {
				if s.give > 0 {
					b.Give(s.give)
				} else {
					assert.Equal(t, s.ok, b.Take(s.take), "step %d", i)
				}
				assert.Equal(t, s.used, b.Used(), "step %d", i)
			}
		})
	}
}

func TestBudgetConcurrentTakeNeverPassesTheLimit(t *testing.T) {
	const limit, piece = 10007, 7
	b := New(limit)
	var taken atomic.Uint64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 400 {
				if b.Take(piece) {
					taken.Add(piece)
					if i%3 == 0 { // some give back and take again
						b.Give(piece)
						taken.Add(^uint64(piece - 1))
					}
				}
				assert.LessOrEqual(t, b.Used(), uint64(limit))
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, taken.Load(), b.Used())
	assert.LessOrEqual(t, b.Used(), uint64(limit))
	for b.Take(piece) {
	}
	assert.LessOrEqual(t, b.Used(), uint64(limit))
	assert.Greater(t, b.Used()+piece, uint64(limit), "the budget fills as far as pieces fit")
}
