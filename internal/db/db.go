// Package db opens mxpolicyd's database: PostgreSQL through a pgx pool when
// the DSN names a server, or the embedded single-file SQLite store otherwise,
// so a fresh machine needs no database server (issue 3, "Stores").
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// The two kinds of store Kind reports.
const (
	Postgres = "postgres"
	SQLite   = "sqlite"
)

// DB is an open store. Exactly one of PG and SQL is set, as Kind says.
type DB struct {
	PG   *pgxpool.Pool // PostgreSQL
	SQL  *sql.DB       // SQLite
	kind string
	log  *slog.Logger
}

// Kind is Postgres or SQLite.
func (d *DB) Kind() string { return d.kind }

// IsPostgres reports whether the store is PostgreSQL.
func (d *DB) IsPostgres() bool { return d.kind == Postgres }

// Open connects to dsn. A postgres:// or postgresql:// URL or a libpq
// key=value string ("host=... dbname=...") selects PostgreSQL; anything
// else is the path of the SQLite file, created if missing. Open checks the
// connection, so a wrong password fails here rather than at the first mail.
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*DB, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var (
		d   *DB
		err error
	)
	if IsPostgresDSN(dsn) {
		d, err = openPG(ctx, dsn)
	} else {
		d, err = openSQLite(ctx, dsn)
	}
	if err != nil {
		return nil, err
	}
	d.log = logger
	logger.Debug("database open", "kind", d.kind, "dsn", Redact(dsn))
	return d, nil
}

// IsPostgresDSN reports whether dsn names a PostgreSQL server rather than
// a SQLite file.
func IsPostgresDSN(dsn string) bool {
	s := strings.TrimSpace(dsn)
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		return true
	}
	// libpq key=value form: a file name never has "word=" as its first field
	// in practice, and requiring a known keyword keeps "a=b.db" a file.
	first, _, _ := strings.Cut(s, " ")
	k, _, ok := strings.Cut(first, "=")
	return ok && pgKeywords[strings.ToLower(k)]
}

var pgKeywords = map[string]bool{
	"host": true, "hostaddr": true, "port": true, "dbname": true, "user": true,
	"password": true, "sslmode": true, "service": true, "connect_timeout": true,
	"application_name": true, "options": true, "passfile": true,
}

// Pool sizing: each policy request holds a connection for one short
// statement, so a handful per core serves thousands of decisions a second
// while staying far below PostgreSQL's default max_connections=100 even
// with several MX hosts sharing the server.
const (
	pgMaxConns        = 10
	pgMinConns        = 1
	pgMaxConnIdleTime = 5 * time.Minute
	pgHealthCheck     = 30 * time.Second
	pgConnectTimeout  = 5 * time.Second
)

func openPG(ctx context.Context, dsn string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse error may quote the DSN, password included.
		return nil, fmt.Errorf("db: cannot parse PostgreSQL DSN %s", Redact(dsn))
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = pgMaxConns
	}
	if !strings.Contains(dsn, "pool_min_conns") {
		cfg.MinConns = pgMinConns
	}
	cfg.MaxConnIdleTime = pgMaxConnIdleTime
	cfg.HealthCheckPeriod = pgHealthCheck
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = pgConnectTimeout
	}
	// Cached prepared statements: the greylist upsert is parsed and planned
	// once per connection, not once per request.
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("db: connect %s: %w", Redact(dsn), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("db: connect %s: %w", Redact(dsn), err)
	}
	return &DB{PG: pool, kind: Postgres}, nil
}

// sqliteBusyTimeout is how long a writer waits for another process (an
// admin command next to the daemon) to release the file lock before
// SQLITE_BUSY; within one process the single connection serializes writes.
const sqliteBusyTimeout = 5000 // milliseconds

func openSQLite(ctx context.Context, path string) (*DB, error) {
	path = strings.TrimPrefix(strings.TrimSpace(path), "file:")
	if path == "" {
		return nil, errors.New("db: empty database DSN or SQLite path")
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("db: create directory for %s: %w", path, err)
		}
	}
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(sqliteBusyTimeout))
	q.Set("_journal_mode", "WAL")   // readers never block the writer
	q.Set("_synchronous", "NORMAL") // safe with WAL; a crash loses at most the last commits
	q.Set("_txlock", "immediate")   // take the write lock at BEGIN, so no deadlock-on-upgrade BUSY
	q.Set("_foreign_keys", "1")
	sdb, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("db: open %s: %w", path, err)
	}
	// One connection: SQLite allows one writer at a time anyway, and
	// queueing in database/sql (which honours ctx) instead of in SQLite's
	// busy handler means concurrent upserts never fail with SQLITE_BUSY.
	sdb.SetMaxOpenConns(1)
	sdb.SetMaxIdleConns(1)
	sdb.SetConnMaxLifetime(0)
	if err := sdb.PingContext(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("db: open %s: %w", path, err)
	}
	return &DB{SQL: sdb, kind: SQLite}, nil
}

// Ping checks that the store answers.
func (d *DB) Ping(ctx context.Context) error {
	var err error
	if d.PG != nil {
		err = d.PG.Ping(ctx)
	} else {
		err = d.SQL.PingContext(ctx)
	}
	if err != nil {
		return fmt.Errorf("db: ping %s: %w", d.kind, err)
	}
	return nil
}

// Close releases every connection.
func (d *DB) Close() {
	if d.PG != nil {
		d.PG.Close()
	}
	if d.SQL != nil {
		if err := d.SQL.Close(); err != nil && d.log != nil {
			d.log.Warn("closing SQLite database", "err", err)
		}
	}
}
