package spf

import (
	"net/netip"
	"sync"
	"time"
)

// cache keeps what an evaluation found for a while under a key. It is
// bounded: when full, expired entries go, and if fewer than a tenth of it
// had expired, all do (a burst of distinct clients only costs lookups), so
// a sweep always frees room for many inserts. Safe for concurrent use.
type cache[K comparable, V any] struct {
	mu  sync.Mutex
	m   map[K]cached[V]
	ttl time.Duration
	max int
	now func() time.Time
}

type cached[V any] struct {
	v       V
	expires time.Time
}

func newCache[K comparable, V any](ttl time.Duration, max int) *cache[K, V] {
	return &cache[K, V]{m: map[K]cached[V]{}, ttl: ttl, max: max, now: time.Now}
}

func (c *cache[K, V]) get(k K) (V, bool) {
	v, _, ok := c.getUntil(k)
	return v, ok
}

// getUntil is get, with when the entry expires.
func (c *cache[K, V]) getUntil(k K) (V, time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ent, ok := c.m[k]
	if !ok || c.now().After(ent.expires) {
		var zero V
		return zero, time.Time{}, false
	}
	return ent.v, ent.expires, true
}

func (c *cache[K, V]) put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.putLocked(k, v, now, now.Add(c.ttl))
}

// putUntil keeps v until expires, which may be sooner than the TTL.
func (c *cache[K, V]) putUntil(k K, v V, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if limit := now.Add(c.ttl); limit.Before(expires) {
		expires = limit
	}
	c.putLocked(k, v, now, expires)
}

// putLocked stores v until expires, first making room when the cache is
// full; c.mu is held.
func (c *cache[K, V]) putLocked(k K, v V, now, expires time.Time) {
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for k, ent := range c.m {
			if now.After(ent.expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) > c.max-c.max/10 {
			clear(c.m)
		}
	}
	c.m[k] = cached[V]{v, expires}
}

// heloTTL is how long a HELO identity's result is reused: longer than an
// SMTP session usually lasts, shorter than the TTL of most SPF records.
const heloTTL = 5 * time.Minute

// heloKey is what a HELO identity's result depends on (heloCheck).
type heloKey struct {
	ip   netip.Addr
	helo string
}

// senderTTL is how long a MAIL FROM verdict is reused. go/spf's resolver
// seam has net.Resolver's shape and carries no TTLs, so this is a fixed
// bound, short against the TTL of nearly every SPF record and of the
// names it lists: a caching resolver (the local unbound of a deployment)
// would give the same answers for as long (RFC 1035 §3.2.1: a record
// "may be cached" for its TTL). A record published with a shorter TTL
// is at most this much out of date.
const senderTTL = 30 * time.Second

// senderKey is what a MAIL FROM evaluation depends on: the client (%{i},
// and every address matched), the HELO name (%{h}), the sender domain
// (%{o}, %{d}), and the sender itself only when a record the evaluation
// read expands %{s} or %{l} (usesSender; RFC 7208 §7.3). The other
// letters, %{p}, %{v}, %{c}, %{r} and %{t}, follow from the client, are
// ours, or appear in explanations only, which are expanded per message.
type senderKey struct {
	ip     netip.Addr
	helo   string
	domain string
	sender string // "" when no record read expands the sender
}

// verdict is a complete MAIL FROM evaluation kept for later messages:
// its result, whether it vouches for the client (passesAnyone), and the
// DNS answers it read, from which a fail's exp= is expanded again for
// each message (the text may name the sender or the time).
type verdict struct {
	result  Result
	vouches bool
	dns     *memoResolver
}

// memoKey is what a message's outcome built from cached evaluations
// depends on (cachedOutcome): the client, the HELO name and the sender as
// Postfix sent them, which the HELO and MAIL FROM identities, the action
// and the headers are made from.
type memoKey struct {
	ip           netip.Addr
	helo, sender string
}

// cacheMax bounds each cache.
const cacheMax = 4096
