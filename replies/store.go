package replies

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// Pair is one recorded correspondence: a local user wrote to an outside
// address. Every field is a key as stored: Local lowercased, Outside
// normalized (greylist.NormalizeMailbox), OutsideDomain its domain.
type Pair struct {
	Local         string
	Outside       string
	OutsideDomain string
}

// Store keeps the pairs (the replies table, migration 0006). Times come
// from the caller's clock, never the database's, and are stored to the
// second.
type Store interface {
	// Record adds the pair, or moves its last_seen to now: one atomic
	// upsert, so concurrent sends of the same pair on many hosts never
	// conflict.
	Record(ctx context.Context, now time.Time, p Pair) error
	// Match reports whether the pair was last seen at or after since:
	// by p.Outside, or with byDomain by p.OutsideDomain.
	Match(ctx context.Context, since time.Time, p Pair, byDomain bool) (bool, error)
	// GC deletes the pairs last seen before cutoff, batch rows per
	// statement; with dryRun it only counts them.
	GC(ctx context.Context, cutoff time.Time, batch int, dryRun bool) (int64, error)
}

// NewStore returns the Store for an open, migrated database.
func NewStore(d *db.DB) Store {
	return db.Dialect[Store](d.Kind(), pgStore{d.PG}, liteStore{d.SQL})
}

// pgStore binds times as timestamptz.
type pgStore struct{ pool *pgxpool.Pool }

// The upsert writes only when last_seen moves, so a user sending many
// messages to one address within a second costs one row version.
const (
	pgRecord = `INSERT INTO replies AS r (local_addr, outside_addr, outside_domain, first_seen, last_seen)
	VALUES ($1, $2, $3, $4, $4)
	ON CONFLICT (local_addr, outside_addr) DO UPDATE SET last_seen = EXCLUDED.last_seen
	WHERE r.last_seen < EXCLUDED.last_seen`
	pgMatchAddress = `SELECT EXISTS (SELECT FROM replies
	WHERE local_addr = $1 AND outside_addr = $2 AND last_seen >= $3)`
	pgMatchDomain = `SELECT EXISTS (SELECT FROM replies
	WHERE local_addr = $1 AND outside_domain = $2 AND last_seen >= $3)`
	pgCount = `SELECT count(*) FROM replies WHERE last_seen < $1`
	// One short statement per batch, its rows locked with SKIP LOCKED, so
	// gc on several hosts splits the work (as greylist's gc does,
	// greylist/pgstore.go).
	pgDelete = `WITH d AS (SELECT ctid FROM replies WHERE last_seen < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
	DELETE FROM replies WHERE ctid = ANY (ARRAY(SELECT ctid FROM d))`
)

func (s pgStore) Record(ctx context.Context, now time.Time, p Pair) error {
	_, err := s.pool.Exec(ctx, pgRecord, p.Local, p.Outside, p.OutsideDomain, now.Truncate(time.Second))
	return wrap("postgres record", err)
}

func (s pgStore) Match(ctx context.Context, since time.Time, p Pair, byDomain bool) (bool, error) {
	q, key := matchQuery(pgMatchAddress, pgMatchDomain, p, byDomain)
	if !db.Storable(p.Local, key) {
		return false, nil // what the text type cannot hold was never recorded
	}
	var hit bool
	err := s.pool.QueryRow(ctx, q, p.Local, key, since.Truncate(time.Second)).Scan(&hit)
	return hit, wrap("postgres match", err)
}

func (s pgStore) GC(ctx context.Context, cutoff time.Time, batch int, dryRun bool) (int64, error) {
	// Whole seconds, as Match's since: a pair Match still honours is kept.
	cutoff = cutoff.Truncate(time.Second)
	var n int64
	if dryRun {
		err := s.pool.QueryRow(ctx, pgCount, cutoff).Scan(&n)
		return n, wrap("postgres gc", err)
	}
	for {
		tag, err := s.pool.Exec(ctx, pgDelete, cutoff, batch)
		if err != nil {
			return n, wrap("postgres gc", err)
		}
		n += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return n, nil
		}
	}
}

// liteStore binds times as Unix seconds; parameters are numbered like the
// PostgreSQL ones.
type liteStore struct{ db *sql.DB }

const (
	liteRecord = `INSERT INTO replies AS r (local_addr, outside_addr, outside_domain, first_seen, last_seen)
	VALUES (?1, ?2, ?3, ?4, ?4)
	ON CONFLICT (local_addr, outside_addr) DO UPDATE SET last_seen = excluded.last_seen
	WHERE r.last_seen < excluded.last_seen`
	liteMatchAddress = `SELECT EXISTS (SELECT 1 FROM replies
	WHERE local_addr = ?1 AND outside_addr = ?2 AND last_seen >= ?3)`
	liteMatchDomain = `SELECT EXISTS (SELECT 1 FROM replies
	WHERE local_addr = ?1 AND outside_domain = ?2 AND last_seen >= ?3)`
	liteCount = `SELECT count(*) FROM replies WHERE last_seen < ?1`
	// Short batches, with a pause between them (db.SQLiteDeleteBatches):
	// the daemon's decisions share the one connection, or the file's lock.
	liteDelete = `DELETE FROM replies WHERE rowid IN (SELECT rowid FROM replies WHERE last_seen < ?1 LIMIT ?2)`
)

func (s liteStore) Record(ctx context.Context, now time.Time, p Pair) error {
	_, err := s.db.ExecContext(ctx, liteRecord, p.Local, p.Outside, p.OutsideDomain, now.Unix())
	return wrap("sqlite record", err)
}

func (s liteStore) Match(ctx context.Context, since time.Time, p Pair, byDomain bool) (bool, error) {
	q, key := matchQuery(liteMatchAddress, liteMatchDomain, p, byDomain)
	var hit bool
	err := s.db.QueryRowContext(ctx, q, p.Local, key, since.Unix()).Scan(&hit)
	return hit, wrap("sqlite match", err)
}

func (s liteStore) GC(ctx context.Context, cutoff time.Time, batch int, dryRun bool) (int64, error) {
	var n int64
	if dryRun {
		err := s.db.QueryRowContext(ctx, liteCount, cutoff.Unix()).Scan(&n)
		return n, wrap("sqlite gc", err)
	}
	n, err := db.SQLiteDeleteBatches(ctx, int64(batch), func(ctx context.Context) (int64, error) {
		res, err := s.db.ExecContext(ctx, liteDelete, cutoff.Unix(), batch)
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	})
	return n, wrap("sqlite gc", err)
}

// matchQuery picks a dialect's statement and its key for the match mode.
func matchQuery(byAddress, byDomainQ string, p Pair, byDomain bool) (string, string) {
	q := byAddress
	if byDomain {
		q = byDomainQ
	}
	return q, matchKey(p, byDomain)
}

// matchKey is what a lookup of p compares with the stored pairs: the
// outside address, or its domain.
func matchKey(p Pair, byDomain bool) string {
	if byDomain {
		return p.OutsideDomain
	}
	return p.Outside
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("replies: %s: %w", op, err)
}
