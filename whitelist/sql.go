package whitelist

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// sqlDialect is one store kind's access to the whitelist tables, chosen once
// by NewStore (db.Dialect). Every value is a bind parameter; nothing is
// ever formatted into SQL text.
type sqlDialect interface {
	// inTx runs fn in one transaction, committed only if fn succeeds.
	inTx(ctx context.Context, fn func(execer) error) error
	// load reads the entries not expired at now; the zero now reads all.
	load(ctx context.Context, now time.Time) ([]Entry, error)
	version(ctx context.Context) (int64, error)
	// expired counts the entries purge would delete at now.
	expired(ctx context.Context, now time.Time) (int64, error)
}

// execer is a transaction of either dialect.
type execer interface {
	// insert adds e unless (kind, value) exists; it sets e.ID when added.
	insert(ctx context.Context, e *Entry) (bool, error)
	remove(ctx context.Context, k Kind, value string) (int64, error)
	// purge deletes the entries that expired at or before now.
	purge(ctx context.Context, now time.Time) (int64, error)
}

func newDialect(d *db.DB) sqlDialect {
	return db.Dialect[sqlDialect](d.Kind(), pgDialect{d.PG}, sqliteDialect{d.SQL})
}

// insertArgs are the insert statement's parameters 1 to 6, times bound by ts.
func insertArgs(e *Entry, ts func(time.Time) any) []any {
	return []any{string(e.Kind), e.Value, e.Comment, e.CreatedBy, ts(e.CreatedAt), ts(e.Expires)}
}

// inserted reads the insert's RETURNING id: no row (the driver's noRows)
// means the entry existed and nothing was added.
func inserted(err, noRows error) (bool, error) {
	if errors.Is(err, noRows) {
		return false, nil
	}
	return err == nil, err
}

// Statements both dialects run as written: their only parameter is the
// version row, which has none.
//
// onConflict ends both dialects' INSERT: an entry that exists but has
// expired (gc has not purged it yet; it matches nothing and is not
// listed) is replaced, as if it were gone; a live one is left, and no row
// is returned (ErrExists, or counted as already present by Import). The
// new row's created_at is the insert's now.
const onConflict = `ON CONFLICT (kind, value) DO UPDATE SET comment = excluded.comment,
		created_by = excluded.created_by, created_at = excluded.created_at, expires_at = excluded.expires_at
		WHERE whitelist.expires_at IS NOT NULL AND whitelist.expires_at <= excluded.created_at
		RETURNING id`

const (
	versionSQL = `SELECT version FROM whitelist_version`
	loadCols   = `SELECT id, kind, value, comment, created_by, created_at, expires_at FROM whitelist`
)

// pgDialect binds times as timestamptz, NULL for "never".
type pgDialect struct{ pool *pgxpool.Pool }

const (
	pgInsert = `INSERT INTO whitelist (kind, value, comment, created_by, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6) ` + onConflict
	pgRemove  = `DELETE FROM whitelist WHERE kind = $1 AND value = $2`
	pgPurge   = `DELETE FROM whitelist WHERE expires_at <= $1`
	pgExpired = `SELECT count(*) FROM whitelist WHERE expires_at <= $1`
	pgLoad    = loadCols + `
		WHERE $1::timestamptz IS NULL OR expires_at IS NULL OR expires_at > $1
		ORDER BY kind, value`
)

func pgTime(t time.Time) any {
	if t.IsZero() {
		return (*time.Time)(nil)
	}
	return t
}

func (p pgDialect) inTx(ctx context.Context, fn func(execer) error) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error { return fn(pgTx{tx}) })
}

func (p pgDialect) load(ctx context.Context, now time.Time) ([]Entry, error) {
	rows, err := p.pool.Query(ctx, pgLoad, pgTime(now))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) {
		var e Entry
		var exp *time.Time
		err := r.Scan(&e.ID, &e.Kind, &e.Value, &e.Comment, &e.CreatedBy, &e.CreatedAt, &exp)
		if exp != nil {
			e.Expires = *exp
		}
		e.Source = sourceDB
		return e, err
	})
}

func (p pgDialect) version(ctx context.Context) (int64, error) {
	var v int64
	err := p.pool.QueryRow(ctx, versionSQL).Scan(&v)
	return v, err
}

func (p pgDialect) expired(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := p.pool.QueryRow(ctx, pgExpired, now).Scan(&n)
	return n, err
}

type pgTx struct{ tx pgx.Tx }

func (t pgTx) insert(ctx context.Context, e *Entry) (bool, error) {
	return inserted(t.tx.QueryRow(ctx, pgInsert, insertArgs(e, pgTime)...).Scan(&e.ID), pgx.ErrNoRows)
}

func (t pgTx) remove(ctx context.Context, k Kind, value string) (int64, error) {
	tag, err := t.tx.Exec(ctx, pgRemove, string(k), value)
	return tag.RowsAffected(), err
}

func (t pgTx) purge(ctx context.Context, now time.Time) (int64, error) {
	tag, err := t.tx.Exec(ctx, pgPurge, now)
	return tag.RowsAffected(), err
}

// sqliteDialect binds times as Unix seconds, NULL for "never", as the
// 0002 migration's INTEGER columns hold them.
type sqliteDialect struct{ db *sql.DB }

const (
	sqliteInsert = `INSERT INTO whitelist (kind, value, comment, created_by, created_at, expires_at)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6) ` + onConflict
	sqliteRemove  = `DELETE FROM whitelist WHERE kind = ?1 AND value = ?2`
	sqlitePurge   = `DELETE FROM whitelist WHERE expires_at <= ?1`
	sqliteExpired = `SELECT count(*) FROM whitelist WHERE expires_at <= ?1`
	sqliteLoad    = loadCols + `
		WHERE ?1 IS NULL OR expires_at IS NULL OR expires_at > ?1
		ORDER BY kind, value`
)

func sqliteTime(t time.Time) any {
	return sql.NullInt64{Int64: t.Unix(), Valid: !t.IsZero()}
}

func (s sqliteDialect) inTx(ctx context.Context, fn func(execer) error) error {
	return db.InTx(ctx, s.db, func(tx *sql.Tx) error { return fn(sqliteTx{tx}) })
}

func (s sqliteDialect) load(ctx context.Context, now time.Time) ([]Entry, error) {
	rows, err := s.db.QueryContext(ctx, sqliteLoad, sqliteTime(now))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var created int64
		var exp sql.NullInt64
		if err := rows.Scan(&e.ID, &e.Kind, &e.Value, &e.Comment, &e.CreatedBy, &created, &exp); err != nil {
			return nil, err
		}
		e.CreatedAt = time.Unix(created, 0).UTC()
		if exp.Valid {
			e.Expires = time.Unix(exp.Int64, 0).UTC()
		}
		e.Source = sourceDB
		out = append(out, e)
	}
	return out, rows.Err()
}

func (s sqliteDialect) version(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, versionSQL).Scan(&v)
	return v, err
}

func (s sqliteDialect) expired(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, sqliteExpired, now.Unix()).Scan(&n)
	return n, err
}

type sqliteTx struct{ tx *sql.Tx }

func (t sqliteTx) insert(ctx context.Context, e *Entry) (bool, error) {
	return inserted(t.tx.QueryRowContext(ctx, sqliteInsert, insertArgs(e, sqliteTime)...).Scan(&e.ID), sql.ErrNoRows)
}

func (t sqliteTx) remove(ctx context.Context, k Kind, value string) (int64, error) {
	return rowsAffected(t.tx.ExecContext(ctx, sqliteRemove, string(k), value))
}

func (t sqliteTx) purge(ctx context.Context, now time.Time) (int64, error) {
	return rowsAffected(t.tx.ExecContext(ctx, sqlitePurge, now.Unix()))
}

func rowsAffected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
