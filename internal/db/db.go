// Package db opens mxpolicyd's database: PostgreSQL through a pgx pool when
// the DSN names a server, or the embedded single-file SQLite store otherwise,
// so a fresh machine needs no database server (README, "Greylisting": Stores).
//
// Commands open it with Open (or OpenReadOnly) and fail at once when it
// cannot be reached. The daemon uses Start: it never waits for PostgreSQL,
// and a connector (connector.go) brings the store up when the server
// answers, so an outage at start-up fails open like one at run time.
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
	PG    *pgxpool.Pool // PostgreSQL
	SQL   *sql.DB       // SQLite
	stmts *Stmts        // SQLite: statements prepared on SQL, released by Close
	kind  string
	log   *slog.Logger
	conn  *connector   // Start on PostgreSQL: the readiness; nil is always ready
	clock *serverClock // Start on PostgreSQL: the server's clock offset (clock.go)
	stop  func()       // stops the connector (PostgreSQL) or the checkpoints (SQLite)
}

// Stmts keeps statements prepared on the SQLite database for the life of
// the DB (see Stmts); nil on PostgreSQL, where pgx caches them per
// connection.
func (d *DB) Stmts() *Stmts { return d.stmts }

// Kind is Postgres or SQLite.
func (d *DB) Kind() string { return d.kind }

// IsPostgres reports whether the store is PostgreSQL.
func (d *DB) IsPostgres() bool { return d.kind == Postgres }

// Ready returns nil when the store takes queries, or why not: an error
// matching ErrUnavailable whose text is safe to show (no host, no user).
// It does no I/O, so /readyz may call it on every probe.
func (d *DB) Ready() error {
	if d.conn == nil {
		return nil
	}
	return d.conn.ready()
}

// Open connects to dsn (see KindOf) and checks the connection, so a wrong
// password fails here rather than at the first mail. A SQLite file is
// created if missing.
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*DB, error) {
	return open(ctx, dsn, logger, false)
}

// OpenReadOnly is Open for "mxpolicyd check", which promises to write
// nothing: a SQLite file is opened read-only and must exist; a PostgreSQL
// session defaults to read-only transactions, so even a bug cannot write.
func OpenReadOnly(ctx context.Context, dsn string, logger *slog.Logger) (*DB, error) {
	return open(ctx, dsn, logger, true)
}

func open(ctx context.Context, dsn string, logger *slog.Logger, readOnly bool) (*DB, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	kind, err := KindOf(dsn)
	if err != nil {
		return nil, err
	}
	var d *DB
	if kind == Postgres {
		d, err = openPG(ctx, dsn, readOnly)
	} else {
		d, err = openSQLite(ctx, SQLitePath(dsn), readOnly)
	}
	if err != nil {
		return nil, err
	}
	d.log = logger
	logger.Debug("database open", "kind", d.kind, "dsn", Redact(dsn), "read_only", readOnly)
	return d, nil
}

// Pool sizing: each policy request holds a connection for one short
// statement, so a handful per core serves thousands of decisions a second
// while staying far below PostgreSQL's default max_connections=100 even
// with several MX hosts sharing the server.
//
// pgConnectTimeout is well under the greylist check's timeout (1.5 s by
// default): a connect to a frozen server gives up before the request
// does, so stuck connects never pile up behind the pool's MaxConns. A
// connect_timeout in the DSN wins. pgHealthCheck is how often the pool
// tops up MinConns and retires idle connections.
const (
	pgMaxConns        = 10
	pgMinConns        = 1
	pgMaxConnIdleTime = 5 * time.Minute
	pgHealthCheck     = 15 * time.Second
	pgConnectTimeout  = time.Second
)

// pgConfig parses dsn and applies the pool settings above.
func pgConfig(dsn string, readOnly bool, app string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(strings.TrimSpace(dsn))
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
	if readOnly {
		// PostgreSQL "Client Connection Defaults": every transaction of
		// the session is READ ONLY unless it says otherwise.
		cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	}
	// The query mode is pgx's default unless the DSN sets
	// default_query_exec_mode: cached prepared statements, so the greylist
	// upsert is parsed and planned once per connection, not once per
	// request. A transaction pool in between (PgBouncer's pool_mode =
	// transaction before 1.21, or without max_prepared_statements) does
	// not keep a session's prepared statements from one transaction to the
	// next; there the DSN says default_query_exec_mode=exec (README,
	// "Behind PgBouncer").
	nameSessions(cfg.ConnConfig.RuntimeParams, app)
	return cfg, nil
}

// nameSessions sets application_name, which names the sessions in
// pg_stat_activity, to app ("mxpolicyd serve", or "mxpolicyd" for a
// command) unless the DSN gives one. A DSN's fallback_application_name
// replaces app, as libpq's does ("Parameter Key Words"); pgx would send
// it to the server as a setting, which refuses it.
func nameSessions(params map[string]string, app string) {
	if fb, ok := params["fallback_application_name"]; ok {
		delete(params, "fallback_application_name")
		app = fb
	}
	if params["application_name"] == "" {
		params["application_name"] = app
	}
}

func openPG(ctx context.Context, dsn string, readOnly bool) (*DB, error) {
	cfg, err := pgConfig(dsn, readOnly, "mxpolicyd")
	if err != nil {
		return nil, err
	}
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

func openSQLite(ctx context.Context, path string, readOnly bool) (*DB, error) {
	if path == "" {
		return nil, errors.New("db: empty database DSN or SQLite path")
	}
	if readOnly {
		// mode=ro never creates the file (SQLite "URI Filenames").
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("db: SQLite database %s: %w", path, err)
		}
	} else if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("db: create directory for %s: %w", path, err)
		}
	}
	sdb, err := sql.Open("sqlite", sqliteDSN(path, readOnly))
	if err != nil {
		return nil, fmt.Errorf("db: open %s: %w", path, err)
	}
	// One connection: SQLite allows one writer at a time anyway, and
	// queueing in database/sql (which honours ctx) instead of in SQLite's
	// busy handler means concurrent upserts never fail with SQLITE_BUSY.
	sdb.SetMaxOpenConns(1)
	sdb.SetMaxIdleConns(1)
	sdb.SetConnMaxLifetime(0)
	if err := pingSQLite(ctx, sdb); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("db: open %s: %w", path, err)
	}
	stmts := NewStmts(sdb)
	if !readOnly {
		stmts = newFileStmts(sdb, path)
	}
	return &DB{SQL: sdb, stmts: stmts, kind: SQLite}, nil
}

// pingSQLite opens the first connection, which sets the DSN's pragmas,
// WAL mode among them. Processes opening one new file at once race to
// switch it to WAL, and SQLite answers the loser SQLITE_BUSY at once,
// without waiting in its busy handler, when waiting could deadlock
// (https://www.sqlite.org/c3ref/busy_handler.html). So a busy answer is
// tried again, for as long as the busy timeout would have waited.
func pingSQLite(ctx context.Context, sdb *sql.DB) error {
	deadline := time.Now().Add(sqliteBusyTimeout * time.Millisecond)
	for {
		err := sdb.PingContext(ctx)
		if err == nil || !IsSQLiteBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// sqliteDSN is the driver's name for the file at path, with the settings
// every connection gets. The name is an SQLite URI (sqlite.org/uri.html),
// which ends the path at '?' or '#' and decodes "%XX": those three are
// escaped, so "mx#1.db" opens that file and not "mx".
func sqliteDSN(path string, readOnly bool) string {
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(sqliteBusyTimeout))
	if readOnly {
		// query_only refuses writes even to a file we could write.
		q.Set("mode", "ro")
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_journal_mode", "WAL")   // readers never block the writer
		q.Set("_synchronous", "NORMAL") // safe with WAL; a crash loses at most the last commits
		q.Set("_txlock", "immediate")   // take the write lock at BEGIN, so no deadlock-on-upgrade BUSY
	}
	q.Set("_foreign_keys", "1")
	return "file:" + uriPath.Replace(path) + "?" + q.Encode()
}

var uriPath = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")

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

// Close stops the connector and releases every connection.
func (d *DB) Close() {
	if d.stop != nil {
		d.stop()
	}
	if d.PG != nil {
		d.PG.Close()
	}
	if d.SQL != nil {
		d.stmts.Close()
		if err := d.SQL.Close(); err != nil && d.log != nil {
			d.log.Warn("closing SQLite database", "err", err)
		}
	}
}
