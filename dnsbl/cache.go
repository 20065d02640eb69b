package dnsbl

import (
	"net/netip"
	"strings"
	"sync"
	"time"
)

// answer is what one query name returned: the A records (none means not
// listed) or, for TXT queries, the joined text.
type answer struct {
	addrs   []netip.Addr
	txt     string
	expires time.Time
}

// cache holds answers, positive and negative, until their TTL runs out.
// Its size is bounded: when full, expired entries go first, then arbitrary
// ones (Go's map order), which is cheap and good enough for a cache whose
// misses cost one DNS round trip.
type cache struct {
	mu  sync.Mutex
	max int
	m   map[string]answer
}

func newCache(max int) *cache {
	return &cache{max: max, m: make(map[string]answer)}
}

func (c *cache) get(key string, now time.Time) (answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.m[key]
	if !ok || !now.Before(a.expires) {
		return answer{}, false
	}
	return a, true
}

func (c *cache) put(key string, a answer, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		c.evict(now)
	}
	c.m[key] = a
}

// evict drops expired entries and, if that freed less than a tenth of the
// cache, others until it has: every sweep, a walk of the whole map, frees
// room for a tenth of it, so its cost is spread over that many inserts
// however few entries expire each second.
func (c *cache) evict(now time.Time) {
	before := len(c.m)
	for k, a := range c.m {
		if !now.Before(a.expires) {
			delete(c.m, k)
		}
	}
	for k := range c.m {
		if before-len(c.m) > before/10 {
			return
		}
		delete(c.m, k)
	}
}

// dropZone forgets every answer (A and TXT) from zone: answers a list gave
// while it failed its self-check may be listings of everyone.
func (c *cache) dropZone(zone string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if strings.HasSuffix(k, "."+zone) {
			delete(c.m, k)
		}
	}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
