package whitelist

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// queries holds one dialect's statements. Every value is a bind parameter;
// nothing is ever formatted into SQL text.
type queries struct {
	insert, remove, purge, load, version string
}

var pgQueries = queries{
	insert: `INSERT INTO whitelist (kind, value, comment, created_by, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (kind, value) DO NOTHING RETURNING id`,
	remove: `DELETE FROM whitelist WHERE kind = $1 AND value = $2`,
	purge:  `DELETE FROM whitelist WHERE expires_at <= $1`,
	load: `SELECT id, kind, value, comment, created_by, created_at, expires_at FROM whitelist
		WHERE $1::timestamptz IS NULL OR expires_at IS NULL OR expires_at > $1
		ORDER BY kind, value`,
	version: `SELECT version FROM whitelist_version`,
}

var sqliteQueries = queries{
	insert: `INSERT INTO whitelist (kind, value, comment, created_by, created_at, expires_at)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6)
		ON CONFLICT (kind, value) DO NOTHING RETURNING id`,
	remove: `DELETE FROM whitelist WHERE kind = ?1 AND value = ?2`,
	purge:  `DELETE FROM whitelist WHERE expires_at <= ?1`,
	load: `SELECT id, kind, value, comment, created_by, created_at, expires_at FROM whitelist
		WHERE ?1 IS NULL OR expires_at IS NULL OR expires_at > ?1
		ORDER BY kind, value`,
	version: `SELECT version FROM whitelist_version`,
}

func (s *Store) q() *queries {
	if s.db.IsPostgres() {
		return &pgQueries
	}
	return &sqliteQueries
}

// execer is a transaction of either dialect.
type execer interface {
	exec(ctx context.Context, query string, args ...any) (int64, error)
	// insert adds e unless (kind, value) exists; it sets e.ID when added.
	insert(ctx context.Context, e *Entry) (bool, error)
}

// inTx runs fn in one transaction, committed only if fn succeeds.
func (s *Store) inTx(ctx context.Context, fn func(execer) error) error {
	var err error
	if s.db.IsPostgres() {
		err = pgx.BeginFunc(ctx, s.db.PG, func(tx pgx.Tx) error { return fn(pgTx{tx, s}) })
	} else {
		err = s.sqliteTx(ctx, fn)
	}
	if err != nil {
		return fmt.Errorf("whitelist: %w", err)
	}
	return nil
}

func (s *Store) sqliteTx(ctx context.Context, fn func(execer) error) error {
	tx, err := s.db.SQL.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(sqlTx{tx, s}); err != nil {
		_ = tx.Rollback() // the error that made us roll back is the one to report
		return err
	}
	return tx.Commit()
}

type pgTx struct {
	tx pgx.Tx
	s  *Store
}

func (t pgTx) exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (t pgTx) insert(ctx context.Context, e *Entry) (bool, error) {
	err := t.tx.QueryRow(ctx, pgQueries.insert, insertArgs(t.s, e)...).Scan(&e.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

type sqlTx struct {
	tx *sql.Tx
	s  *Store
}

func (t sqlTx) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := t.tx.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t sqlTx) insert(ctx context.Context, e *Entry) (bool, error) {
	err := t.tx.QueryRowContext(ctx, sqliteQueries.insert, insertArgs(t.s, e)...).Scan(&e.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func insertArgs(s *Store, e *Entry) []any {
	return []any{string(e.Kind), e.Value, e.Comment, e.CreatedBy, s.ts(e.CreatedAt), s.ts(e.Expires)}
}
