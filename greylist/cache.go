package greylist

import (
	"sync"
	"time"
)

// passCache remembers what is known to pass (a triplet, a client network,
// a pair) until an instant no later than its database row's last_seen +
// max age, so answering from it can never outlive the truth in the
// database. Entries live CacheRefresh at most: after that the next request
// goes to the database, which refreshes last_seen, at most once an hour
// per key like postgrey.
//
// Memory is bounded by two generations: when the current map is full it
// becomes the old one and a new map starts; a hit in the old map is copied
// forward. Busy keys stay, idle ones are dropped wholesale.
type passCache struct {
	mu       sync.Mutex
	max      int
	cur, old map[string]time.Time
}

func newPassCache(size int) *passCache {
	if size <= 0 {
		return nil
	}
	return &passCache{max: (size + 1) / 2, cur: map[string]time.Time{}}
}

// passes reports whether key is known to pass at now.
func (c *passCache) passes(key string, now time.Time) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.cur[key]
	if !ok {
		if until, ok = c.old[key]; ok && now.Before(until) {
			c.store(key, until)
		}
	}
	return ok && now.Before(until)
}

// put records that key passes until until.
func (c *passCache) put(key string, until time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.store(key, until)
}

func (c *passCache) store(key string, until time.Time) {
	if len(c.cur) >= c.max {
		c.old, c.cur = c.cur, make(map[string]time.Time, c.max)
	}
	c.cur[key] = until
}
