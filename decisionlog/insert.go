package decisionlog

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// columns is the insert order of Row's fields, shared by both stores.
var columns = []string{
	"time", "host", "client", "client_name", "helo", "sender", "recipient",
	"instance", "queue_id", "check_name", "action", "would_action", "verb",
	"reason", "delay_seconds", "duration_us", "observe", "whitelist", "errors",
}

// dialect is one store kind's way to keep the decisions table, chosen per
// call by dialectOf (db.Dialect).
type dialect interface {
	insert(ctx context.Context, rows []Row) error
	// ensurePartitions creates the missing daily partitions of days.
	ensurePartitions(ctx context.Context, days []time.Time) ([]string, error)
	prune(ctx context.Context, res *PruneResult, dryRun bool) error
}

func dialectOf(d *db.DB) dialect {
	return db.Dialect[dialect](d.Kind(), pgLog{d}, sqliteLog{d})
}

// pgLog is the PostgreSQL decision log: a table partitioned by day.
type pgLog struct{ d *db.DB }

// sqliteLog is the SQLite decision log: one table.
type sqliteLog struct{ d *db.DB }

// Insert writes rows in one batch: a binary COPY on PostgreSQL (the
// cheapest way in, and rows route to their daily partitions), one
// transaction of prepared inserts on SQLite. The batch is all or nothing.
func Insert(ctx context.Context, d *db.DB, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	if err := dialectOf(d).insert(ctx, rows); err != nil {
		return fmt.Errorf("decisionlog: insert %d rows: %w", len(rows), err)
	}
	return nil
}

func (p pgLog) insert(ctx context.Context, rows []Row) error {
	n, err := p.d.PG.CopyFrom(ctx, pgx.Identifier{"decisions"}, columns,
		pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) { return pgValues(&rows[i]), nil }))
	if err == nil && n != int64(len(rows)) {
		err = fmt.Errorf("copied %d rows of %d", n, len(rows))
	}
	return err
}

func pgValues(r *Row) []any {
	var client any // NULL when Postfix sent no address
	if r.Client.IsValid() {
		client = r.Client
	}
	return []any{
		r.Time, r.Host, client, r.ClientName, r.Helo, r.Sender, r.Recipient,
		r.Instance, r.QueueID, r.Check, r.Action, r.WouldAction, r.Verb,
		r.Reason, seconds(r), micros(r), r.Observe, r.Whitelist, r.Errors,
	}
}

const insertSQLiteStmt = `INSERT INTO decisions (time, host, client, client_name, helo, sender,
	recipient, instance, queue_id, check_name, action, would_action, verb, reason,
	delay_seconds, duration_us, observe, whitelist, errors)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

func (l sqliteLog) insert(ctx context.Context, rows []Row) error {
	tx, err := l.d.SQL.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	st, err := tx.PrepareContext(ctx, insertSQLiteStmt)
	if err != nil {
		return err
	}
	defer st.Close()
	for i := range rows {
		if _, err := st.ExecContext(ctx, sqliteValues(&rows[i])...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func sqliteValues(r *Row) []any {
	client := ""
	if r.Client.IsValid() {
		client = r.Client.String()
	}
	return []any{
		r.Time.Unix(), r.Host, client, r.ClientName, r.Helo, r.Sender, r.Recipient,
		r.Instance, r.QueueID, r.Check, r.Action, r.WouldAction, r.Verb,
		r.Reason, seconds(r), micros(r), r.Observe, r.Whitelist, r.Errors,
	}
}

// seconds rounds the greylisting delay to whole seconds, as the
// X-Greylist header states it; a delay under half a second is still a
// delay, so it counts as 1.
func seconds(r *Row) int32 {
	if r.Delay <= 0 {
		return 0
	}
	return int32(min(max(1, r.Delay.Round(time.Second)/time.Second), 1<<31-1))
}

func micros(r *Row) int32 {
	return int32(min(r.Duration.Microseconds(), 1<<31-1))
}
