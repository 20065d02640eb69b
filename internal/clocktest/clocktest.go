// Package clocktest is a clock for tests to move by hand. The checks and
// stores take their time from an injected func() time.Time
// (policy.Options.Now, dnsbl.Options.Now, whitelist.NewStore); a test
// passes Clock.Now there and advances the clock to stand for time passing,
// so TTLs, budgets and rate limits are asserted without sleeping and
// without depending on the machine's speed. It is for tests only.
package clocktest

import (
	"sync"
	"time"
)

// Clock is a settable time. Safe for concurrent use: the code under test
// may read it from its own goroutines while the test moves it.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock reading start until it is moved.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time; pass the method value as the seam.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock d on.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set moves the clock to t, which may be earlier.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
