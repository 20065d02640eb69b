package ratelimit

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// liteStore is the embedded Store, for one host. A decision is one
// transaction taken with BEGIN IMMEDIATE on the single connection
// (internal/db), so it is as atomic as PostgreSQL's one statement.
type liteStore struct{ db *sql.DB }

// liteTake is pgTake for one cell: ?1 now, ?2 rule, ?3 key, ?4 inc, ?5 tau
// (ns). SET expressions read the row as it was, as in PostgreSQL; the
// stored TAT counts as at most tau ahead (conform).
const liteTake = `
INSERT INTO ratelimit_gcra AS g (rule, key, tat, tau, allowed)
VALUES (?2, ?3, ?1 + ?4, ?5, 1)
ON CONFLICT (rule, key) DO UPDATE SET
	allowed = max(min(g.tat, ?1 + ?5), ?1) + ?4 - ?1 <= ?5,
	tat = CASE WHEN max(min(g.tat, ?1 + ?5), ?1) + ?4 - ?1 <= ?5 THEN max(min(g.tat, ?1 + ?5), ?1) + ?4
		ELSE min(g.tat, ?1 + ?5) END,
	tau = ?5
RETURNING allowed`

// Take implements Store.
func (s *liteStore) Take(ctx context.Context, now time.Time, cells []Cell) (out []bool, err error) {
	out = make([]bool, len(cells))
	err = db.InTx(ctx, s.db, func(tx *sql.Tx) error {
		for i, c := range cells {
			if c.Inc > c.Tau {
				continue // never conforms: not inserted, as in pgTake
			}
			if err := tx.QueryRowContext(ctx, liteTake, now.UnixNano(), c.Rule, c.Key, c.Inc, c.Tau).Scan(&out[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ratelimit: sqlite take: %w", err)
	}
	return out, nil
}

// SeeNetwork implements Store: the upsert and the count in one
// transaction, so the count sees this sighting and no other writer.
func (s *liteStore) SeeNetwork(ctx context.Context, now time.Time, window time.Duration, rule, key, network string) (n int, err error) {
	at := now.Unix()
	err = db.InTx(ctx, s.db, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO ratelimit_network (rule, key, network, last_seen, expires)
VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (rule, key, network) DO UPDATE SET last_seen = excluded.last_seen, expires = excluded.expires`,
			rule, key, network, at, now.Add(window).Unix())
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT count(*) FROM ratelimit_network WHERE rule = ?1 AND key = ?2 AND expires > ?3`,
			rule, key, at).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("ratelimit: sqlite networks: %w", err)
	}
	return n, nil
}

// Counters implements Store.
func (s *liteStore) Counters(ctx context.Context, now time.Time) ([]Counter, error) {
	var out []Counter
	rows, err := s.db.QueryContext(ctx, `SELECT rule, key, tat, tau FROM ratelimit_gcra WHERE tat > ?1`, now.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("ratelimit: sqlite counters: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c Counter
		var tat, tau int64
		if err := rows.Scan(&c.Rule, &c.Key, &tat, &tau); err != nil {
			return nil, fmt.Errorf("ratelimit: sqlite counters: %w", err)
		}
		c.TAT, c.Tau = time.Unix(0, tat), time.Duration(tau)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ratelimit: sqlite counters: %w", err)
	}
	rows, err = s.db.QueryContext(ctx, `SELECT rule, key, network, last_seen FROM ratelimit_network WHERE expires > ?1`, now.Unix())
	if err != nil {
		return nil, fmt.Errorf("ratelimit: sqlite counters: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c Counter
		var seen int64
		if err := rows.Scan(&c.Rule, &c.Key, &c.Network, &seen); err != nil {
			return nil, fmt.Errorf("ratelimit: sqlite counters: %w", err)
		}
		c.LastSeen = time.Unix(seen, 0)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ratelimit: sqlite counters: %w", err)
	}
	sortCounters(out)
	return out, nil
}

// Reset implements Store: both tables in one transaction.
func (s *liteStore) Reset(ctx context.Context, rule, key string) (n int64, err error) {
	err = db.InTx(ctx, s.db, func(tx *sql.Tx) error {
		for _, table := range []string{"ratelimit_gcra", "ratelimit_network"} {
			res, err := tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE rule = ?1 AND key = ?2", rule, key)
			if err != nil {
				return err
			}
			k, _ := res.RowsAffected()
			n += k
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ratelimit: sqlite reset: %w", err)
	}
	return n, nil
}

// GC implements Store, in batches of short transactions so decisions wait
// one batch at most, on the one connection or on the file's lock
// (db.SQLiteDeleteBatches).
func (s *liteStore) GC(ctx context.Context, now time.Time, batch int, dryRun bool) (GCStats, error) {
	var st GCStats
	for _, t := range gcTargets(&st) {
		arg := now.Unix()
		if t.nanos {
			arg = now.UnixNano()
		}
		cond := strings.ReplaceAll(t.where, "$", "?") // the shared condition, in SQLite's numbering
		where := "rowid IN (SELECT rowid FROM " + t.table + " WHERE " + cond + " LIMIT ?2)"
		var err error
		if dryRun {
			err = s.db.QueryRowContext(ctx, "SELECT count(*) FROM "+t.table+" WHERE "+cond, arg).Scan(t.count)
		} else {
			err = s.gcDelete(ctx, t, where, arg, batch)
		}
		if err != nil {
			return st, fmt.Errorf("ratelimit: sqlite gc %s: %w", t.table, err)
		}
	}
	return st, nil
}

func (s *liteStore) gcDelete(ctx context.Context, t gcTarget, where string, arg int64, batch int) error {
	// Table and condition are constants of this package, never user data.
	q := "DELETE FROM " + t.table + " WHERE " + where
	n, err := db.SQLiteDeleteBatches(ctx, int64(batch), func(ctx context.Context) (int64, error) {
		res, err := s.db.ExecContext(ctx, q, arg, batch)
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	})
	*t.count += n
	return err
}
