package spf

import (
	"testing"
	"time"
)

// A put into a full cache makes room for a tenth of it, however few
// entries have expired: else, with one expiring per insert, every insert
// would walk the whole map under the lock every lookup takes.
func TestCacheSweepMakesRoom(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	now := t0
	const max = 1000
	c := newCache[int, int](time.Hour, max)
	c.now = func() time.Time { return now }
	for i := range max { // entry i expires at t0 + i+1 s
		c.putUntil(-1-i, i, t0.Add(time.Duration(i+1)*time.Second))
	}
	now = t0.Add(1500 * time.Millisecond) // one has expired
	c.put(1, 1)
	if n := len(c.m); n > max-max/10 {
		t.Errorf("after a sweep that found one entry expired: %d entries of %d, want room for a tenth", n, max)
	}
	// Overwriting a key needs no room.
	for i := range max - 1 {
		c.put(100+i, i)
	}
	full := len(c.m)
	c.put(100, 0)
	if len(c.m) != full {
		t.Errorf("overwriting a key swept the cache: %d entries, had %d", len(c.m), full)
	}
}
