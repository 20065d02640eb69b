package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// advisoryLockID is an arbitrary constant that names "mxpolicyd schema
// migration" among the advisory locks of a shared PostgreSQL server.
const advisoryLockID int64 = 0x6d78706f6c6d6967 // "mxpolmig"

const createPG = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

const createSQLite = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_at INTEGER NOT NULL -- Unix seconds
)`

// applyPG holds a session advisory lock on a dedicated connection for the
// whole run: the other hosts wait, then find nothing left to do. Closing
// the connection releases the lock even if unlocking fails.
func applyPG(ctx context.Context, d *db.DB, ms []Migration) ([]string, error) {
	conn, err := pgx.ConnectConfig(ctx, d.PG.Config().ConnConfig.Copy())
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", advisoryLockID); err != nil {
		return nil, fmt.Errorf("advisory lock: %w", err)
	}
	if _, err := conn.Exec(ctx, createPG); err != nil {
		return nil, err
	}
	var applied []string
	for _, m := range ms {
		did, err := applyOnePG(ctx, conn, m)
		if err != nil {
			return applied, fmt.Errorf("%s: %w", m.Name, err)
		}
		if did {
			applied = append(applied, m.Name)
		}
	}
	return applied, nil
}

func applyOnePG(ctx context.Context, conn *pgx.Conn, m Migration) (bool, error) {
	var done bool
	err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)",
		m.Version).Scan(&done)
	if err != nil || done {
		return false, err
	}
	return true, pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// No arguments: pgx uses the simple protocol, which runs a file of
		// several statements.
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
			m.Version, m.Name)
		return err
	})
}

// applySQLite takes SQLite's write lock (BEGIN IMMEDIATE) per migration
// and checks inside it, which is what the advisory lock does on PostgreSQL.
func applySQLite(ctx context.Context, d *db.DB, ms []Migration) ([]string, error) {
	if _, err := d.SQL.ExecContext(ctx, createSQLite); err != nil {
		return nil, err
	}
	var applied []string
	for _, m := range ms {
		did, err := applyOneSQLite(ctx, d.SQL, m)
		if err != nil {
			return applied, fmt.Errorf("%s: %w", m.Name, err)
		}
		if did {
			applied = append(applied, m.Name)
		}
	}
	return applied, nil
}

func applyOneSQLite(ctx context.Context, sdb *sql.DB, m Migration) (bool, error) {
	tx, err := sdb.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations WHERE version = ?",
		m.Version).Scan(&n); err != nil || n > 0 {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
		m.Version, m.Name, time.Now().Unix()); err != nil {
		return false, err
	}
	return true, tx.Commit()
}

// appliedVersions reads schema_migrations; a database never migrated has
// none, which is not an error.
func appliedVersions(ctx context.Context, d *db.DB) (map[int]time.Time, error) {
	out := map[int]time.Time{}
	if d.IsPostgres() {
		return out, appliedPG(ctx, d, out)
	}
	return out, appliedSQLite(ctx, d, out)
}

func appliedPG(ctx context.Context, d *db.DB, out map[int]time.Time) error {
	var exists bool
	if err := d.PG.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil || !exists {
		return err
	}
	rows, err := d.PG.Query(ctx, "SELECT version, applied_at FROM schema_migrations")
	if err != nil {
		return err
	}
	var (
		v  int
		at time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&v, &at}, func() error { out[v] = at; return nil })
	return err
}

func appliedSQLite(ctx context.Context, d *db.DB, out map[int]time.Time) error {
	rows, err := d.SQL.QueryContext(ctx, "SELECT version, applied_at FROM schema_migrations")
	if err != nil {
		var n int
		// No table yet: nothing applied.
		if e := d.SQL.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE name = 'schema_migrations'").Scan(&n); e == nil && n == 0 {
			return nil
		}
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var v int
		var at int64
		if err := rows.Scan(&v, &at); err != nil {
			return err
		}
		out[v] = time.Unix(at, 0).UTC()
	}
	return errors.Join(rows.Err())
}
