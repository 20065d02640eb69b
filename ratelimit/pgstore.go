package ratelimit

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgStore is the PostgreSQL Store, shared by every daemon on the database.
type pgStore struct{ pool *pgxpool.Pool }

// pgTake charges every cell of a decision in one statement. Each cell is
// an upsert under its row's lock, and ON CONFLICT DO UPDATE evaluates the
// SET against the row as the lock leaves it (INSERT, "ON CONFLICT
// Clause", in the PostgreSQL documentation), so of N concurrent requests
// on one key exactly as many conform as the limit allows: no read before
// the write. EXCLUDED carries the cell's increment (its tat minus now,
// $1) and tau; the stored TAT counts as at most tau ahead of now. conform
// in store.go is the same rule in Go.
//
// A new cell whose increment exceeds its tolerance (a message bigger than
// a bytes rule's burst) never conforms and is not inserted: it comes back
// without a row. Cells are locked in (rule, key) order, so two decisions
// charging the same keys cannot deadlock. synchronous_commit off for this
// statement only, as for greylisting (greylist/pgstore.go): a crash may
// forget the last fraction of a second of charges.
const pgTake = `
INSERT INTO ratelimit_gcra AS g (rule, key, tat, tau, allowed)
SELECT c.rule, c.key, $1::bigint + c.inc, c.tau, true
FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[]) AS c(rule, key, inc, tau)
CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS sc
WHERE c.inc <= c.tau
ORDER BY c.rule, c.key
ON CONFLICT (rule, key) DO UPDATE SET
	allowed = greatest(least(g.tat, $1 + EXCLUDED.tau), $1) + (EXCLUDED.tat - $1) - $1 <= EXCLUDED.tau,
	tat = CASE WHEN greatest(least(g.tat, $1 + EXCLUDED.tau), $1) + (EXCLUDED.tat - $1) - $1 <= EXCLUDED.tau
		THEN greatest(least(g.tat, $1 + EXCLUDED.tau), $1) + (EXCLUDED.tat - $1)
		ELSE least(g.tat, $1 + EXCLUDED.tau) END,
	tau = EXCLUDED.tau
RETURNING g.rule, g.key, g.allowed`

// Take implements Store.
func (s *pgStore) Take(ctx context.Context, now time.Time, cells []Cell) ([]bool, error) {
	n := len(cells)
	rules, keys, incs, taus := make([]string, n), make([]string, n), make([]int64, n), make([]int64, n)
	for i, c := range cells {
		rules[i], keys[i], incs[i], taus[i] = c.Rule, c.Key, c.Inc, c.Tau
	}
	rows, err := s.pool.Query(ctx, pgTake, now.UnixNano(), rules, keys, incs, taus)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: postgres take: %w", err)
	}
	ok := map[[2]string]bool{}
	var rule, key string
	var allowed bool
	_, err = pgx.ForEachRow(rows, []any{&rule, &key, &allowed}, func() error {
		ok[[2]string{rule, key}] = allowed
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ratelimit: postgres take: %w", err)
	}
	out := make([]bool, n)
	for i, c := range cells {
		out[i] = ok[[2]string{c.Rule, c.Key}]
	}
	return out, nil
}

// pgSeeNetwork records the sighting and counts the key's live networks in
// one statement. The count reads the table as it was before the upsert
// (a statement sees one snapshot: "WITH Queries", "Data-Modifying
// Statements in WITH"), so it counts the other networks and adds this
// one. Two first sightings from two networks at the same instant may
// each miss the other; the next request counts both.
const pgSeeNetwork = `
WITH seen AS (
	INSERT INTO ratelimit_network (rule, key, network, last_seen, expires)
	VALUES ($1, $2, $3, $4, $5)
	ON CONFLICT (rule, key, network) DO UPDATE SET last_seen = EXCLUDED.last_seen, expires = EXCLUDED.expires
)
SELECT 1 + count(*) FROM ratelimit_network
WHERE rule = $1 AND key = $2 AND network <> $3 AND expires > $4`

// SeeNetwork implements Store.
func (s *pgStore) SeeNetwork(ctx context.Context, now time.Time, window time.Duration, rule, key, network string) (int, error) {
	now = now.Truncate(time.Second)
	var n int
	err := s.pool.QueryRow(ctx, pgSeeNetwork, rule, key, network, now, now.Add(window)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("ratelimit: postgres networks: %w", err)
	}
	return n, nil
}

// Counters implements Store.
func (s *pgStore) Counters(ctx context.Context, now time.Time) ([]Counter, error) {
	var out []Counter
	rows, err := s.pool.Query(ctx, `SELECT rule, key, tat, tau FROM ratelimit_gcra WHERE tat > $1`, now.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("ratelimit: postgres counters: %w", err)
	}
	var c Counter
	var tat, tau int64
	_, err = pgx.ForEachRow(rows, []any{&c.Rule, &c.Key, &tat, &tau}, func() error {
		out = append(out, Counter{Rule: c.Rule, Key: c.Key, TAT: time.Unix(0, tat), Tau: time.Duration(tau)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ratelimit: postgres counters: %w", err)
	}
	rows, err = s.pool.Query(ctx, `SELECT rule, key, network, last_seen FROM ratelimit_network WHERE expires > $1`, now)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: postgres counters: %w", err)
	}
	_, err = pgx.ForEachRow(rows, []any{&c.Rule, &c.Key, &c.Network, &c.LastSeen}, func() error {
		out = append(out, Counter{Rule: c.Rule, Key: c.Key, Network: c.Network, LastSeen: c.LastSeen})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ratelimit: postgres counters: %w", err)
	}
	sortCounters(out)
	return out, nil
}

// Reset implements Store: both tables in one statement.
func (s *pgStore) Reset(ctx context.Context, rule, key string) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `
WITH a AS (DELETE FROM ratelimit_gcra WHERE rule = $1 AND key = $2 RETURNING 1),
     b AS (DELETE FROM ratelimit_network WHERE rule = $1 AND key = $2 RETURNING 1)
SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM b)`, rule, key).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("ratelimit: postgres reset: %w", err)
	}
	return n, nil
}

// gcTargets are the tables gc cleans and the condition of an expired row;
// $1 is now (ns for cells, a time for networks).
func gcTargets(st *GCStats) []gcTarget {
	return []gcTarget{
		{"ratelimit_gcra", "tat <= $1", true, &st.Cells},
		{"ratelimit_network", "expires <= $1", false, &st.Networks},
	}
}

type gcTarget struct {
	table, where string
	nanos        bool // $1 in ns since the epoch, else a time
	count        *int64
}

// GC implements Store: batches of one short statement each, locking with
// SKIP LOCKED so gc on several hosts splits the work (greylist's way).
func (s *pgStore) GC(ctx context.Context, now time.Time, batch int, dryRun bool) (GCStats, error) {
	var st GCStats
	for _, t := range gcTargets(&st) {
		var arg any = now
		if t.nanos {
			arg = now.UnixNano()
		}
		var err error
		if dryRun {
			err = s.pool.QueryRow(ctx, "SELECT count(*) FROM "+t.table+" WHERE "+t.where, arg).Scan(t.count)
		} else {
			err = s.gcDelete(ctx, t, arg, batch)
		}
		if err != nil {
			return st, fmt.Errorf("ratelimit: postgres gc %s: %w", t.table, err)
		}
	}
	return st, nil
}

func (s *pgStore) gcDelete(ctx context.Context, t gcTarget, arg any, batch int) error {
	// Table and condition are constants of this file, never user data.
	q := "WITH d AS (SELECT ctid FROM " + t.table + " WHERE " + t.where + " LIMIT $2 FOR UPDATE SKIP LOCKED) " +
		"DELETE FROM " + t.table + " WHERE ctid = ANY (ARRAY(SELECT ctid FROM d))"
	for {
		tag, err := s.pool.Exec(ctx, q, arg, batch)
		if err != nil {
			return err
		}
		*t.count += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return nil
		}
	}
}

// sortCounters orders rows by rule, key, then network, for stable output.
func sortCounters(cs []Counter) {
	slices.SortFunc(cs, func(a, b Counter) int {
		if c := strings.Compare(a.Rule, b.Rule); c != 0 {
			return c
		}
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return strings.Compare(a.Network, b.Network)
	})
}
