package spf

import (
	"net/netip"
	"sync"
	"time"
)

// heloTTL is how long a HELO identity's result is reused: longer than an
// SMTP session usually lasts, shorter than the TTL of most SPF records.
const heloTTL = 5 * time.Minute

// heloMax bounds the cache; when full, expired entries go, and if none
// had expired, all do (a burst of distinct clients only costs lookups).
const heloMax = 4096

type heloKey struct {
	ip   netip.Addr
	helo string
}

type heloEntry struct {
	e       *evaluation
	expires time.Time
}

// heloCache keeps HELO evaluations by client address and HELO name.
// Safe for concurrent use.
type heloCache struct {
	mu  sync.Mutex
	m   map[heloKey]heloEntry
	now func() time.Time
}

func newHeloCache() *heloCache {
	return &heloCache{m: map[heloKey]heloEntry{}, now: time.Now}
}

func (h *heloCache) get(ip netip.Addr, helo string) (*evaluation, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ent, ok := h.m[heloKey{ip, helo}]
	if !ok || h.now().After(ent.expires) {
		return nil, false
	}
	return ent.e, true
}

func (h *heloCache) put(ip netip.Addr, helo string, e *evaluation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if len(h.m) >= heloMax {
		for k, ent := range h.m {
			if now.After(ent.expires) {
				delete(h.m, k)
			}
		}
		if len(h.m) >= heloMax {
			clear(h.m)
		}
	}
	h.m[heloKey{ip, helo}] = heloEntry{e, now.Add(heloTTL)}
}
