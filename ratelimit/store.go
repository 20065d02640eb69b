package ratelimit

import (
	"context"
	"math"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// Store keeps the counters. Every method takes its times from the caller's
// clock, never the database's, so several daemons with the same clock
// agree, and tests run on an injected one.
type Store interface {
	// Take charges each cell under GCRA and reports, per cell, whether it
	// was under its limit; a cell over its limit is not charged. It is
	// one statement on PostgreSQL, one transaction on SQLite, so
	// concurrent decisions on one key, on any number of hosts, never let
	// more through than the limit.
	Take(ctx context.Context, now time.Time, cells []Cell) ([]bool, error)
	// SeeNetwork records that key was seen from network now, for window,
	// and returns how many distinct networks the key was seen from within
	// its window, this one included, in the same statement.
	SeeNetwork(ctx context.Context, now time.Time, window time.Duration, rule, key, network string) (int, error)
	// Counters returns the live rows: rate cells whose TAT is ahead of
	// now, and networks not yet expired.
	Counters(ctx context.Context, now time.Time) ([]Counter, error)
	// Reset deletes the rows of one rule's key and returns how many.
	Reset(ctx context.Context, rule, key string) (int64, error)
	// GC deletes rows that no longer limit anything, in batches of batch
	// rows; with dryRun it only counts them.
	GC(ctx context.Context, now time.Time, batch int, dryRun bool) (GCStats, error)
}

// NewStore returns the Store for an open, migrated database.
func NewStore(d *db.DB) Store {
	return db.Dialect[Store](d.Kind(), &pgStore{d.PG}, &liteStore{d.SQL})
}

// Cell is one key's charge in one decision under a rate rule, in GCRA's
// terms (see conform): the increment this request adds to the key's
// theoretical arrival time, and the tolerance, the burst as time.
type Cell struct {
	Rule, Key string
	Inc       int64 // ns: cost × per / N
	Tau       int64 // ns: burst × per / N
}

// Counter is one live row, as Counters returns it.
type Counter struct {
	Rule, Key string
	// Rate rules: the TAT, and the tolerance it was last charged with.
	TAT time.Time
	Tau time.Duration
	// distinct_networks rules: one network and when the key was last seen
	// from it.
	Network  string
	LastSeen time.Time
}

// GCStats counts the rows GC removed (or would remove).
type GCStats struct {
	Cells    int64 // rate cells whose TAT has passed: a full burst again
	Networks int64 // networks past their rule's window
}

// conform is the generic cell rate algorithm in its "virtual scheduling"
// form (ITU-T Recommendation I.371, Annex A; the Wikipedia article
// "Generic cell rate algorithm" walks through it). Each key has a
// theoretical arrival time, TAT: when it would be back to rest had it
// sent at exactly the limit. A request costing inc conforms if, after
// adding inc, the key is at most tau ahead of now; tau = burst × per / N
// is how far ahead a burst may push it. A conforming request moves TAT;
// one over the limit leaves it, so refused retries cost nothing. With
// tat at or before now the key is at rest and the whole burst is free.
//
// A conforming request leaves TAT at most tau ahead of the clock that
// charged it, so a TAT further ahead of now means the clock has stepped
// back since (an NTP step, a resumed VM): it counts as tau ahead, a burst
// just spent, and a refusal stores that, so the key sends again one
// increment later instead of once the clock is back where it was.
//
// This is the reference the stores' SQL implements (pgTake, liteTake); the
// tests hold them to it. Times are nanoseconds since the Unix epoch.
func conform(tat, now int64, c Cell) (next int64, ok bool) {
	tat = min(tat, now+c.Tau)
	base := max(tat, now)
	if base+c.Inc-now > c.Tau {
		return tat, false
	}
	return base + c.Inc, true
}

// cell is a request's charge under rule r at a cost (1 for messages and
// recipients, the size for bytes). The emission interval per/N is kept in
// floating point and the product taken once to whole nanoseconds (at
// least 1), so a cost of many bytes carries no per-byte rounding error.
// The charge is rounded down: burst charges then never add up to more
// than tau, so a key at rest has its whole burst (7/1h is 514285714285.71
// ns a message, and rounded up, seven of them came to 2 ns past tau).
func (r *Rule) cell(key string, cost int64) Cell {
	per := float64(r.Limit.Per) / float64(r.Limit.N)
	inc := int64(math.Min(math.Floor(float64(cost)*per), math.MaxInt64/4))
	tau := int64(math.Min(math.Round(float64(r.burst())*per), math.MaxInt64/4))
	return Cell{Rule: r.Name, Key: key, Inc: max(inc, 1), Tau: tau}
}
