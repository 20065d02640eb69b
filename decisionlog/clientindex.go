package decisionlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// On PostgreSQL the per-client index, (client, time), is built for a
// daily partition once its day is over, by gc, not kept up row by row
// while the day is written. Kept row by row it was about 40% of the
// server's cost of storing a decision (docs/PERFORMANCE.md): each row
// descends a B-tree of random keys, one inet comparison per level and
// item, where building it once is a sort. Today's rows are found by the
// BRIN index on time and a scan of today's partition; every closed day
// keeps its index (docs/reporting.md).

// clientIndexLockID lets one host at a time build the indexes
// ("mxpolidx"); the others skip, since the holder is doing the work.
const clientIndexLockID int64 = 0x6d78706f6c696478

const clientIndexSuffix = "_client_idx"

// IndexClosedDays gives each daily partition whose day ended by now its
// (client, time) index, and returns the partitions it indexed; with
// dryRun it only lists them. An index
// left invalid by a build that failed (a cancelled gc, a lost
// connection) is dropped and built again. The builds are CREATE INDEX
// CONCURRENTLY, which never blocks the writers ("Building Indexes
// Concurrently", PostgreSQL documentation, CREATE INDEX). While another
// host builds them it returns nothing. A no-op on SQLite, whose one
// table keeps its index row by row.
func IndexClosedDays(ctx context.Context, d *db.DB, now time.Time, dryRun bool) ([]string, error) {
	done, err := dialectOf(d).indexClosedDays(ctx, now, dryRun)
	if err != nil {
		return done, fmt.Errorf("decisionlog: index closed days: %w", err)
	}
	return done, nil
}

func (sqliteLog) indexClosedDays(context.Context, time.Time, bool) ([]string, error) {
	return nil, nil
}

func (p pgLog) indexClosedDays(ctx context.Context, now time.Time, dryRun bool) (done []string, err error) {
	conn, err := p.d.PG.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	if dryRun {
		todo, err := unindexedDays(ctx, conn, now)
		for _, t := range todo {
			done = append(done, t.partition)
		}
		return done, err
	}
	// A session lock, not a transaction's: CREATE INDEX CONCURRENTLY
	// cannot run inside a transaction block.
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", clientIndexLockID).Scan(&locked); err != nil || !locked {
		return nil, err
	}
	defer unlockSession(ctx, conn, clientIndexLockID)
	todo, err := unindexedDays(ctx, conn, now)
	if err != nil {
		return nil, err
	}
	for _, t := range todo {
		built, err := buildClientIndex(ctx, conn, t)
		if err != nil {
			return done, fmt.Errorf("%s: %w", t.partition, err)
		}
		if built {
			done = append(done, t.partition)
		}
	}
	return done, nil
}

// dayIndex is a closed day's partition whose client index is missing,
// or invalid (invalid true).
type dayIndex struct {
	partition string
	invalid   bool
}

// unindexedDays lists, oldest first, the daily partitions whose day
// ended by now and which lack a valid client index.
func unindexedDays(ctx context.Context, conn *pgxpool.Conn, now time.Time) ([]dayIndex, error) {
	rows, err := conn.Query(ctx, `SELECT c.relname, x.indisvalid
		FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid
		LEFT JOIN pg_class ic ON ic.relnamespace = c.relnamespace AND ic.relname = c.relname || $1
		LEFT JOIN pg_index x ON x.indexrelid = ic.oid
		WHERE i.inhparent = 'decisions'::regclass
		ORDER BY c.relname`, clientIndexSuffix)
	if err != nil {
		return nil, err
	}
	var todo []dayIndex
	var name string
	var valid *bool
	_, err = pgx.ForEachRow(rows, []any{&name, &valid}, func() error {
		if valid != nil && *valid {
			return nil
		}
		if day, ok := partitionDay(name); ok && !day.AddDate(0, 0, 1).After(now) {
			todo = append(todo, dayIndex{partition: name, invalid: valid != nil})
		}
		return nil
	})
	return todo, err
}

// buildClientIndex builds one partition's client index, first dropping
// an invalid one, and says whether it did. A partition that another
// host's gc dropped since the list was made (its clock a little ahead,
// at the retention's edge) is no error: there is nothing left to index.
// DDL takes no parameters: the names come from the catalog and match
// partitionName, and are quoted as identifiers.
func buildClientIndex(ctx context.Context, conn *pgxpool.Conn, t dayIndex) (bool, error) {
	index := pgx.Identifier{t.partition + clientIndexSuffix}.Sanitize()
	if t.invalid {
		if _, err := conn.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+index); err != nil {
			return false, err
		}
	}
	_, err := conn.Exec(ctx, "CREATE INDEX CONCURRENTLY IF NOT EXISTS "+index+
		" ON "+pgx.Identifier{t.partition}.Sanitize()+" (client, time)")
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == undefinedTable {
		return false, nil
	}
	return err == nil, err
}

// undefinedTable is PostgreSQL's SQLSTATE for a relation that does not
// exist (PostgreSQL documentation, Appendix A, "PostgreSQL Error Codes").
const undefinedTable = "42P01"

// unlockSession releases a session advisory lock. When that fails (ctx
// ended, the connection broke) the connection is closed instead, which
// releases every lock it held, so the pool never hands out a connection
// that still holds one. A connection pgx gave up because ctx ended is
// closed already, after a cancel request that ends the statement it was
// running on the server (asyncClose in pgconn/pgconn.go).
func unlockSession(ctx context.Context, conn *pgxpool.Conn, id int64) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", id); err != nil {
		conn.Conn().Close(uctx) //nolint:errcheck // closing is the fallback
	}
}
