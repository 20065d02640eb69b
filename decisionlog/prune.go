package decisionlog

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// pruneBatch is how many rows one DELETE removes. Each statement holds the
// SQLite store's single connection (and its write lock) for a few
// milliseconds, so greylisting decisions slip in between batches.
const pruneBatch = 5000

// PruneResult is what Prune removed, or would remove in a dry run.
type PruneResult struct {
	Cutoff     time.Time // rows older than this went
	Partitions []string  // PostgreSQL daily partitions dropped whole
	Rows       int64     // rows removed, those of the dropped partitions included
}

// Prune removes decisions older than now minus retention. On PostgreSQL it
// drops whole daily partitions (cheap, no bloat) and deletes stray rows from
// the default partition in batches; on SQLite it deletes in batches. With
// dryRun it only counts. Safe to run on several hosts at once.
func Prune(ctx context.Context, d *db.DB, now time.Time, retention time.Duration, dryRun bool) (PruneResult, error) {
	res := PruneResult{Cutoff: now.Add(-retention).UTC()}
	if err := dialectOf(d).prune(ctx, &res, dryRun); err != nil {
		return res, fmt.Errorf("decisionlog: prune: %w", err)
	}
	return res, nil
}

func (p pgLog) prune(ctx context.Context, res *PruneResult, dryRun bool) error {
	d := p.d
	names, err := partitions(ctx, d)
	if err != nil {
		return err
	}
	for _, name := range expired(names, res.Cutoff) {
		n, err := dropPartition(ctx, d, name, dryRun)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		res.Partitions = append(res.Partitions, name)
		res.Rows += n
	}
	n, err := deleteBatches(ctx, dryRun,
		func(ctx context.Context) (int64, error) {
			var n int64
			err := d.PG.QueryRow(ctx, `SELECT count(*) FROM decisions_default WHERE time < $1`,
				res.Cutoff).Scan(&n)
			return n, err
		},
		func(ctx context.Context) (int64, error) {
			tag, err := d.PG.Exec(ctx, `DELETE FROM decisions_default WHERE ctid = ANY (ARRAY(
				SELECT ctid FROM decisions_default WHERE time < $1 LIMIT $2))`, res.Cutoff, pruneBatch)
			return tag.RowsAffected(), err
		})
	res.Rows += n
	return err
}

// expired returns the partitions whose whole day lies before cutoff, oldest
// first; today's partition survives any retention.
func expired(names map[string]bool, cutoff time.Time) []string {
	var out []string
	for name := range names {
		day, ok := partitionDay(name)
		if ok && !day.AddDate(0, 0, 1).After(cutoff) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// dropPartition counts a partition's rows and drops it.
func dropPartition(ctx context.Context, d *db.DB, name string, dryRun bool) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, d.PG, func(tx pgx.Tx) error {
		if err := lockDDL(ctx, tx); err != nil {
			return err
		}
		ident := pgx.Identifier{name}.Sanitize()
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil || !exists {
			return err // another host dropped it meanwhile
		}
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+ident).Scan(&n); err != nil || dryRun {
			return err
		}
		_, err := tx.Exec(ctx, "DROP TABLE "+ident)
		return err
	})
	return n, err
}

// prune deletes the expired rows in batches, with a pause between them
// (db.SQLiteDeleteBatches): a gc command beside the daemon shares the
// file's write lock with its decisions.
func (l sqliteLog) prune(ctx context.Context, res *PruneResult, dryRun bool) error {
	d := l.d
	cutoff := res.Cutoff.Unix()
	if dryRun {
		return d.SQL.QueryRowContext(ctx, `SELECT count(*) FROM decisions WHERE time < ?`, cutoff).Scan(&res.Rows)
	}
	var err error
	res.Rows, err = db.SQLiteDeleteBatches(ctx, pruneBatch, func(ctx context.Context) (int64, error) {
		r, err := d.SQL.ExecContext(ctx, `DELETE FROM decisions WHERE rowid IN (
			SELECT rowid FROM decisions WHERE time < ? LIMIT ?)`, cutoff, pruneBatch)
		if err != nil {
			return 0, err
		}
		return r.RowsAffected()
	})
	return err
}

// deleteBatches counts (dry run) or deletes batch after batch until a
// batch comes back short. Each batch is its own statement and transaction;
// PostgreSQL's row locks let the daemon's writes run beside it.
func deleteBatches(ctx context.Context, dryRun bool,
	count, del func(context.Context) (int64, error)) (int64, error) {
	if dryRun {
		return count(ctx)
	}
	var total int64
	for {
		n, err := del(ctx)
		total += n
		if err != nil || n < pruneBatch {
			return total, err
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}
