package spf

import "time"

// SetClock makes c's caches read the time from now.
func SetClock(c *Checker, now func() time.Time) {
	c.helos.now = now
	c.senders.now = now
	c.outcomes.now = now
}
