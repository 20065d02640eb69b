package clocktest

import (
	"sync"
	"testing"
	"time"
)

func TestMoves(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	c := New(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Fatalf("Now() = %v, want %v", got, t0)
	}
	c.Advance(90 * time.Second)
	if got := c.Now(); !got.Equal(t0.Add(90 * time.Second)) {
		t.Fatalf("after Advance: %v", got)
	}
	c.Set(t0.Add(-time.Hour))
	if got := c.Now(); !got.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("after Set: %v", got)
	}
}

// Readers and movers on other goroutines: -race reports any unguarded access.
func TestConcurrent(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	c := New(t0)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(2)
		go func() { defer wg.Done(); c.Advance(time.Second) }()
		go func() { defer wg.Done(); _ = c.Now() }()
	}
	wg.Wait()
	if got := c.Now(); !got.Equal(t0.Add(4 * time.Second)) {
		t.Fatalf("Now() = %v, want t0+4s", got)
	}
}
