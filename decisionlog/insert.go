package decisionlog

import (
	"context"
	"database/sql"
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

// Insert writes rows in one batch: a binary COPY on PostgreSQL (the
// cheapest way in, and rows route to their daily partitions), one
// transaction of prepared inserts on SQLite. The batch is all or nothing.
func Insert(ctx context.Context, d *db.DB, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	var err error
	if d.IsPostgres() {
		err = insertPG(ctx, d, rows)
	} else {
		err = insertSQLite(ctx, d.SQL, rows)
	}
	if err != nil {
		return fmt.Errorf("decisionlog: insert %d rows: %w", len(rows), err)
	}
	return nil
}

func insertPG(ctx context.Context, d *db.DB, rows []Row) error {
	n, err := d.PG.CopyFrom(ctx, pgx.Identifier{"decisions"}, columns,
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

func insertSQLite(ctx context.Context, sdb *sql.DB, rows []Row) error {
	tx, err := sdb.BeginTx(ctx, nil)
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
