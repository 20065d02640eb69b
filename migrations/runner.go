package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"text/template"
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

// dialect is one store kind's way to run migrations, chosen by dialectFor
// (db.Dialect).
type dialect interface {
	// sqlFuncs are the calls the shared/ files make where the two kinds
	// write a thing differently; each returns constant SQL text.
	sqlFuncs() template.FuncMap
	// session makes sure schema_migrations exists and returns apply,
	// which runs one migration in its own transaction unless it is
	// recorded, and end. No other process applies a migration meanwhile.
	session(ctx context.Context, d *db.DB) (apply applyFunc, end func(), err error)
	// applied reads schema_migrations into out; a database never migrated
	// has none, which is not an error.
	applied(ctx context.Context, d *db.DB, out map[int]time.Time) error
}

// applyFunc runs m unless it is recorded, and reports whether it ran.
type applyFunc func(ctx context.Context, m Migration) (bool, error)

func dialectFor(kind string) dialect {
	return db.Dialect[dialect](kind, pgDialect{}, sqliteDialect{})
}

// apply runs the migrations ms lacks in one session, in order.
func apply(ctx context.Context, d *db.DB, ms []Migration) ([]string, error) {
	one, end, err := dialectFor(d.Kind()).session(ctx, d)
	if err != nil {
		return nil, err
	}
	defer end()
	var applied []string
	for _, m := range ms {
		did, err := one(ctx, m)
		if err != nil {
			return applied, fmt.Errorf("%s: %w", m.Name, err)
		}
		if did {
			applied = append(applied, m.Name)
		}
	}
	return applied, nil
}

// pgDialect: times are timestamptz and days dates, in UTC.
type pgDialect struct{}

func (pgDialect) sqlFuncs() template.FuncMap {
	return template.FuncMap{
		"day":        func(col string) string { return "(" + col + " AT TIME ZONE 'UTC')::date" },
		"utc":        func(col string) string { return col },
		"hourBefore": func(col string) string { return "(" + col + " - interval '1 hour')" },
		"client":     func(col string) string { return col },
		"createView": func() string { return "CREATE OR REPLACE VIEW" },
	}
}

// session holds a session advisory lock on a dedicated connection for the
// whole run: the other hosts wait, then find nothing left to do. Closing
// the connection releases the lock even if unlocking fails.
func (pgDialect) session(ctx context.Context, d *db.DB) (applyFunc, func(), error) {
	conn, err := pgx.ConnectConfig(ctx, d.PG.Config().ConnConfig.Copy())
	if err != nil {
		return nil, nil, err
	}
	end := func() {
		// Closing sends a Terminate message, bounded so a server that
		// stopped answering cannot hold the command (pgx.Conn.Close).
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		conn.Close(cctx)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", advisoryLockID); err != nil {
		end()
		return nil, nil, fmt.Errorf("advisory lock: %w", err)
	}
	if _, err := conn.Exec(ctx, createPG); err != nil {
		end()
		return nil, nil, err
	}
	return func(ctx context.Context, m Migration) (bool, error) { return applyOnePG(ctx, conn, m) }, end, nil
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

// sqliteDialect: times are Unix seconds, shown as UTC text.
type sqliteDialect struct{}

func (sqliteDialect) sqlFuncs() template.FuncMap {
	return template.FuncMap{
		"day":        func(col string) string { return "date(" + col + ", 'unixepoch')" },
		"utc":        func(col string) string { return "datetime(" + col + ", 'unixepoch')" },
		"hourBefore": func(col string) string { return "(" + col + " - 3600)" },
		"client":     func(col string) string { return "NULLIF(" + col + ", '')" },
		"createView": func() string { return "CREATE VIEW" },
	}
}

// session: each migration takes SQLite's write lock (BEGIN IMMEDIATE) and
// checks inside it, which is what the advisory lock does on PostgreSQL.
func (sqliteDialect) session(ctx context.Context, d *db.DB) (applyFunc, func(), error) {
	if _, err := d.SQL.ExecContext(ctx, createSQLite); err != nil {
		return nil, nil, err
	}
	return func(ctx context.Context, m Migration) (bool, error) { return applyOneSQLite(ctx, d.SQL, m) }, func() {}, nil
}

func applyOneSQLite(ctx context.Context, sdb *sql.DB, m Migration) (bool, error) {
	tx, err := beginSQLite(ctx, sdb)
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

// beginSQLite takes the write lock (BEGIN IMMEDIATE, the store's _txlock)
// for as long as ctx allows, not only the driver's busy timeout: another
// process may be inside a migration that rebuilds a large table (0007:
// about 5 s a million rows), and waiting for it is what the advisory lock
// does on PostgreSQL.
func beginSQLite(ctx context.Context, sdb *sql.DB) (*sql.Tx, error) {
	for {
		tx, err := sdb.BeginTx(ctx, nil)
		if err == nil || !db.IsSQLiteBusy(err) {
			return tx, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (pgDialect) applied(ctx context.Context, d *db.DB, out map[int]time.Time) error {
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

func (sqliteDialect) applied(ctx context.Context, d *db.DB, out map[int]time.Time) error {
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
