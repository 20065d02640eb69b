package greylist

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
	"github.com/mxpolicyd/mxpolicyd/internal/panics"
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

	// Set by FollowChanges: the administrative changes that empty the
	// cache, and the generation of them it last saw.
	changes *Changes
	seen    int64
}

func newPassCache(size int) *passCache {
	if size <= 0 {
		return nil
	}
	return &passCache{max: (size + 1) / 2, cur: map[string]time.Time{}}
}

// passes reports whether key is known to pass at now. The lookups
// convert key without copying it (the Go compiler's map[string] index by
// string(b)); only a hit copied forward from the old map stores a copy.
func (c *passCache) passes(key []byte, now time.Time) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sync()
	until, ok := c.cur[string(key)]
	if !ok {
		if until, ok = c.old[string(key)]; ok && now.Before(until) {
			c.store(string(key), until)
		}
	}
	return ok && now.Before(until)
}

// generation is the count of administrative changes seen so far: read
// before a decision asks the store, and handed to put with its pass.
func (c *passCache) generation() int64 {
	if c == nil || c.changes == nil {
		return 0
	}
	return c.changes.gen.Load()
}

// put records that key passes until until, unless a change was seen
// since gen (generation, read before the store was asked): the store may
// have read the row before the change, so the pass may predate it. A
// count, not a time: the decision's time is the database server's
// (policy.Options.ClockOffset), the change's would be this host's.
func (c *passCache) put(key []byte, until time.Time, gen int64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sync(); c.changes != nil && gen != c.seen {
		return
	}
	c.store(string(key), until)
}

func (c *passCache) store(key string, until time.Time) {
	if len(c.cur) >= c.max {
		c.old, c.cur = c.cur, make(map[string]time.Time, c.max)
	}
	c.cur[key] = until
}

// sync empties the cache when an administrative change happened since it
// last looked. Called with mu held.
func (c *passCache) sync() {
	if c.changes == nil {
		return
	}
	if g := c.changes.gen.Load(); g != c.seen {
		c.seen, c.cur, c.old = g, make(map[string]time.Time, c.max), nil
	}
}

// FollowChanges has the check's pass cache emptied whenever ch sees an
// administrative change (`mxpolicyd greylist release|forget`), so a
// forgotten triplet is not answered from memory for up to CacheRefresh.
// Call it before the check serves.
func (g *Checker) FollowChanges(ch *Changes) {
	if g.cache == nil || ch == nil {
		return
	}
	g.cache.mu.Lock()
	defer g.cache.mu.Unlock()
	g.cache.changes, g.cache.seen = ch, ch.gen.Load()
}

// Changes watches greylist_version, the counter release and forget bump
// in their transaction (migration 0005), the way the whitelist polls
// whitelist_version (whitelist.Checker.Run). A poll is one tiny primary-key
// read a second; LISTEN/NOTIFY would need a held connection on PostgreSQL
// and a poll on SQLite anyway, so both stores poll. The daemon runs one
// Changes and every greylist check it builds follows it (FollowChanges);
// the caches empty lazily, on their next use.
type Changes struct {
	version func(context.Context) (int64, error)
	log     *slog.Logger
	gen     atomic.Int64 // bumped per change seen
	last    int64        // the version last read; -1 before the first
	failing bool
}

// NewChanges watches the version that a's Release and Forget bump.
func NewChanges(a *Admin, logger *slog.Logger) *Changes {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Changes{version: a.Version, log: logger, last: -1}
}

// Run polls every interval until ctx ends. The first successful read
// counts as a change too: whatever happened before it (while the database
// was down, or before migration 0005) is then covered.
func (ch *Changes) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		ch.Poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pollTimeout bounds one read of the counter, so a connection that hangs
// (a server frozen, not down) delays the next poll, never stops them.
const pollTimeout = 2 * time.Second

// Poll reads the version once and records a change if it moved. While the
// counter cannot be read, admin changes do not reach this daemon's caches:
// that is logged once when it starts and once when it ends.
func (ch *Changes) Poll(ctx context.Context) {
	var v int64
	err := panics.Call(func() (err error) {
		pctx, cancel := context.WithTimeout(ctx, pollTimeout)
		defer cancel()
		v, err = ch.version(pctx)
		return err
	})
	switch {
	case err != nil && ctx.Err() != nil:
		return // shutting down
	case errors.Is(err, db.ErrUnavailable):
		// The connector logs the outage; no admin command runs either.
		ch.log.Debug("greylist: change counter not read: database not ready", "err", err)
		return
	case err != nil:
		if !ch.failing {
			ch.log.Warn("greylist: reading the change counter failed; greylist release and forget do not reach this daemon's cache until it works", "err", err)
		}
		ch.failing = true
		return
	case ch.failing:
		ch.log.Info("greylist: the change counter is read again")
		ch.failing = false
	}
	if v != ch.last {
		ch.last = v
		ch.gen.Add(1)
	}
}
