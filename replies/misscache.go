package replies

import (
	"hash/maphash"
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

// missCache is a set of pair keys that matched nothing, with when (Unix
// nanoseconds). Keys are kept as 64-bit hashes, not strings, so a full
// cache costs about a megabyte; two pairs sharing a hash would only make
// one of them look like a miss for a minute, and cost a greylisting
// deferral at worst, never a pass.
type missCache struct {
	mu   sync.Mutex
	seed maphash.Seed
	seen map[uint64]int64
}

func (m *missCache) hash(key string) uint64 { return maphash.String(m.seed, key) }

// fresh reports whether key missed within missTTL of now.
func (m *missCache) fresh(key string, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen == nil {
		return false
	}
	at, ok := m.seen[m.hash(key)]
	age := now.UnixNano() - at
	return ok && age >= 0 && age < int64(missTTL)
}

// miss remembers that key matched nothing at now.
func (m *missCache) miss(key string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen == nil || len(m.seen) >= missMax {
		if m.seen == nil {
			m.seed = maphash.MakeSeed()
		}
		m.seen = make(map[uint64]int64)
	}
	m.seen[m.hash(key)] = now.UnixNano()
}

// forget drops key: its pair was just recorded.
func (m *missCache) forget(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen != nil {
		delete(m.seen, m.hash(key))
	}
}
