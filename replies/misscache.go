package replies

import (
	"sync"
	"time"
)

// Negative caching: most inbound mail is not a reply, and the same
// correspondents write again and again, so without it every recipient
// of every message would cost a query that finds nothing. A miss is
// remembered for missTTL. A pair this daemon records is forgotten at
// once; one recorded by another daemon sharing the database is seen when
// the entry expires, so at worst a reply within missTTL of an earlier
// non-reply from the same address is greylisted, as it would be without
// this check. Hits are not cached: they are rare, and a pair's expiry
// (max age) must be exact.
const (
	missTTL = time.Minute
	missMax = 1 << 16 // entries; past it the cache starts over
)

// missCache is a set of pair keys that matched nothing, with when.
type missCache struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// fresh reports whether key missed within missTTL of now.
func (m *missCache) fresh(key string, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.seen[key]
	return ok && !now.Before(at) && now.Sub(at) < missTTL
}

// miss remembers that key matched nothing at now.
func (m *missCache) miss(key string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen == nil || len(m.seen) >= missMax {
		m.seen = make(map[string]time.Time)
	}
	m.seen[key] = now
}

// forget drops key: its pair was just recorded.
func (m *missCache) forget(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.seen, key)
}
