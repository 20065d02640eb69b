package report

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// DailyRow is one day of report_daily.
type DailyRow struct {
	Day                string // YYYY-MM-DD, UTC
	Requests           int64
	Deferred           int64
	PassedAfterDelay   int64
	Whitelisted        int64
	RejectedDNSBL      int64
	RejectedSPF        int64
	RejectedOther      int64
	ObserveWouldReject int64
	ObserveWouldDefer  int64
	CheckErrors        int64
}

// NeverRetriedRow is one triplet of report_never_retried.
type NeverRetriedRow struct {
	Client, ClientName, Helo, Sender, Recipient string
	FirstDeferred, LastDeferred                 time.Time
	Deferrals                                   int64
}

// RetryDelayRow is one day of report_retry_delay; delays in seconds.
type RetryDelayRow struct {
	Day                          string
	Passes                       int64
	Min, P50, P90, P99, Max, Avg int64
}

// sqliteTime is how the SQLite views print times (datetime()).
const sqliteTime = "2006-01-02 15:04:05"

// dialect is one store kind's reading of the reporting views, chosen per
// call by dialectOf (db.Dialect). The views have the same names and
// columns on both stores (migrations/shared/report_views.sql); days and
// times come back as the store types them.
type dialect interface {
	daily(ctx context.Context, since time.Time) ([]DailyRow, error)
	neverRetried(ctx context.Context, since time.Time, limit int) ([]NeverRetriedRow, error)
	retryDelay(ctx context.Context, since time.Time) ([]RetryDelayRow, error)
}

func dialectOf(d *db.DB) dialect {
	return db.Dialect[dialect](d.Kind(), pgViews{d}, sqliteViews{d})
}

// Daily returns report_daily from since's day on, oldest first.
func Daily(ctx context.Context, d *db.DB, since time.Time) ([]DailyRow, error) {
	return dialectOf(d).daily(ctx, since)
}

// NeverRetried returns the triplets of report_never_retried last deferred
// at or after since, most recent first, at most limit of them (0: all).
func NeverRetried(ctx context.Context, d *db.DB, since time.Time, limit int) ([]NeverRetriedRow, error) {
	return dialectOf(d).neverRetried(ctx, since, limit)
}

// RetryDelay returns report_retry_delay from since's day on, oldest first.
func RetryDelay(ctx context.Context, d *db.DB, since time.Time) ([]RetryDelayRow, error) {
	return dialectOf(d).retryDelay(ctx, since)
}

// The columns each report reads after day, and where they are scanned.
const (
	dailyCols = `requests, deferred, passed_after_delay, whitelisted, rejected_dnsbl,
		rejected_spf, rejected_other, observe_would_reject, observe_would_defer, check_errors`
	retryCols = `passes, min_seconds, p50_seconds, p90_seconds, p99_seconds, max_seconds, avg_seconds`
)

func dailyDest(r *DailyRow) []any {
	return []any{&r.Day, &r.Requests, &r.Deferred, &r.PassedAfterDelay, &r.Whitelisted,
		&r.RejectedDNSBL, &r.RejectedSPF, &r.RejectedOther, &r.ObserveWouldReject,
		&r.ObserveWouldDefer, &r.CheckErrors}
}

func retryDest(r *RetryDelayRow) []any {
	return []any{&r.Day, &r.Passes, &r.Min, &r.P50, &r.P90, &r.P99, &r.Max, &r.Avg}
}

// neverDest scans a report_never_retried row; at wraps its two times.
func neverDest(at func(*time.Time) any) func(*NeverRetriedRow) []any {
	return func(r *NeverRetriedRow) []any {
		return []any{&r.Client, &r.ClientName, &r.Helo, &r.Sender, &r.Recipient,
			at(&r.FirstDeferred), at(&r.LastDeferred), &r.Deferrals}
	}
}

// pgViews reads the views of PostgreSQL: day is a date, times are
// timestamptz and client an inet (NULL when Postfix sent none).
type pgViews struct{ d *db.DB }

// pgDays selects a daily view from since's day on. The day is printed
// by to_char, not ::text, whose format is the server's DateStyle
// ("01.03.2026" under German): the report's days are YYYY-MM-DD.
func pgDays(view, cols string) string {
	return "SELECT " + pgDay("day") + ", " + cols + " FROM " + view + " WHERE day >= $1::date ORDER BY day"
}

// pgDay prints the date expression e as YYYY-MM-DD whatever DateStyle.
func pgDay(e string) string { return "to_char(" + e + ", 'YYYY-MM-DD')" }

func (v pgViews) daily(ctx context.Context, since time.Time) ([]DailyRow, error) {
	return queryPG(ctx, v.d, dailyDest, pgDays("report_daily", dailyCols), dayOf(since))
}

func (v pgViews) retryDelay(ctx context.Context, since time.Time) ([]RetryDelayRow, error) {
	return queryPG(ctx, v.d, retryDest, pgDays("report_retry_delay", retryCols), dayOf(since))
}

func (v pgViews) neverRetried(ctx context.Context, since time.Time, limit int) ([]NeverRetriedRow, error) {
	var lim *int // NULL: no limit
	if limit > 0 {
		lim = &limit
	}
	return queryPG(ctx, v.d, neverDest(func(t *time.Time) any { return t }),
		`SELECT coalesce(host(client), ''), client_name, helo, sender, recipient,
			first_deferred, last_deferred, deferrals
			FROM report_never_retried WHERE last_deferred >= $1
			ORDER BY last_deferred DESC, coalesce(host(client), '') COLLATE "C", sender COLLATE "C",
				recipient COLLATE "C" LIMIT $2`, since, lim)
}

// sqliteViews reads the views of SQLite: day is 'YYYY-MM-DD' text, times
// are datetime() text in UTC and client is ” when Postfix sent none.
type sqliteViews struct{ d *db.DB }

// sqliteDays selects a daily view from since's day on.
func sqliteDays(view, cols string) string {
	return "SELECT day, " + cols + " FROM " + view + " WHERE day >= ? ORDER BY day"
}

func (v sqliteViews) daily(ctx context.Context, since time.Time) ([]DailyRow, error) {
	return querySQLite(ctx, v.d.SQL, dailyDest, sqliteDays("report_daily", dailyCols), dayOf(since))
}

func (v sqliteViews) retryDelay(ctx context.Context, since time.Time) ([]RetryDelayRow, error) {
	return querySQLite(ctx, v.d.SQL, retryDest, sqliteDays("report_retry_delay", retryCols), dayOf(since))
}

func (v sqliteViews) neverRetried(ctx context.Context, since time.Time, limit int) ([]NeverRetriedRow, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	return querySQLite(ctx, v.d.SQL, neverDest(func(t *time.Time) any { return textTime{t} }),
		`SELECT client, client_name, helo, sender, recipient, first_deferred, last_deferred, deferrals
			FROM report_never_retried WHERE last_deferred >= ?
			ORDER BY last_deferred DESC, client, sender, recipient LIMIT ?`,
		since.UTC().Format(sqliteTime), limit)
}

// textTime scans the SQLite views' datetime() text into a time.Time.
type textTime struct{ t *time.Time }

func (tt textTime) Scan(src any) error {
	var s string
	switch v := src.(type) {
	case string:
		s = v
	case []byte:
		s = string(v)
	default:
		return fmt.Errorf("time column holds %T, want text", src)
	}
	t, err := time.Parse(sqliteTime, s)
	*tt.t = t
	return err
}

// dayOf is since's UTC day, the unit of the daily views.
func dayOf(since time.Time) string { return since.UTC().Format(time.DateOnly) }

func queryPG[T any](ctx context.Context, d *db.DB, scan func(*T) []any, q string, args ...any) ([]T, error) {
	rows, err := d.PG.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (T, error) {
		var r T
		err := row.Scan(scan(&r)...)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return out, nil
}

// querySQLite collects every row, scanned into the pointers scan returns.
func querySQLite[T any](ctx context.Context, sdb *sql.DB, scan func(*T) []any, q string, args ...any) ([]T, error) {
	rows, err := sdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var r T
		if err := rows.Scan(scan(&r)...); err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return out, nil
}
